"""The Bitbucket Cloud stand-in answers in the shapes of Bitbucket's official OpenAPI (Swagger 2.0).

Every endpoint the stand-in serves is driven over real HTTP and each answer is validated against the
matching definition of ``../shared/contracts/bitbucket-cloud-2.0.swagger.json`` (the definition the
swagger's own ``paths`` name for that response). The file does not validate as a whole, so each
answer is checked against one definition with a Draft 4 validator that resolves ``#/definitions/...``
inside the file; ``date-time`` and ``uri`` formats are checked too.

Where the swagger is plainly wrong about what Bitbucket sends (see ``../shared/docs/bitbucket-api.md``)
the test follows the real service; each such loosening is in ``NULLABLE``, ``_loosen`` and
``load_definitions`` below, with why. On top of the swagger, which requires little more than ``type``,
the promises of bitbucket-api.md are asserted: ``type`` on every object that has a self link, that
link absolute and into the stand-in,
12-character hashes in a pull request's commits against 40 in branch targets and commits, and ISO
8601 timestamps with a zone.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests

from sandbox.bitbucket import BitbucketCloud
from sandbox.bitbucket.routes_hooks import EVENTS
from sandbox.faults import Faults
from sandbox.server import ServiceServer

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SWAGGER_PATH = SHARED / "contracts" / "bitbucket-cloud-2.0.swagger.json"

pytestmark = pytest.mark.skipif(
    not SWAGGER_PATH.is_file(),
    reason=f"Bitbucket's swagger is not at {SWAGGER_PATH} (../shared is absent beside the repository)",
)

WS, REPO = "whisper", "claims"
R = f"/2.0/repositories/{WS}/{REPO}"
FILES = {"app.py": b"print('hello')\n", "Procfile": b"web: python app.py\n"}
# Webhook payloads have no definition of their own; their parts do.
PAYLOAD_PARTS = {
    "pullrequest": "pullrequest",
    "comment": "pullrequest_comment",
    "commit_status": "commitstatus",
}
HASH = re.compile(r"^(?:[0-9a-f]{12}|[0-9a-f]{40})$")
TIMESTAMP_KEYS = frozenset({"created_on", "updated_on", "date", "participated_on", "created_at"})

Json = dict[str, Any]

# -- the contract -------------------------------------------------------------------------------

# Swagger 2.0 cannot say "or null", but Bitbucket sends null for a value that is not set. Each pair
# is (definition, property). bitbucket-api.md: a pull request's ``merge_commit{hash}|null`` and
# ``closed_by`` (null while open); a participant's ``state "approved"|"changes_requested"|null``
# (the swagger's own enum lists null, but its ``type: string`` rejects it) and ``participated_on``
# (null until the participant acts). Bitbucket also sends ``parent: null`` for a repository that is
# not a fork, ``has_2fa_enabled: null`` on ``/user``, and ``refname``/``name: null`` on a build
# status posted without them (the swagger: "legitimate for this field to not be set").
NULLABLE = {
    ("pullrequest", "merge_commit"),
    ("pullrequest", "closed_by"),
    ("participant", "state"),
    ("participant", "participated_on"),
    ("repository", "parent"),
    ("user", "has_2fa_enabled"),
    ("commitstatus", "refname"),
    ("commitstatus", "name"),
}


def _link_schema() -> Json:
    return {"$ref": "#/definitions/link"}


def _loosen(node: Any) -> None:
    """Where the swagger is wrong about what Bitbucket sends, applied everywhere in the definitions:

    - ``links`` objects are closed (``additionalProperties: false``), but Bitbucket sends more links
      than the swagger lists: bitbucket-api.md names a pull request's ``links.statuses``; a
      repository has ``branches``, ``tags`` and ``source``, its project a ``self``; a pull request
      ``request-changes``. Extra links are allowed, and each must still be a Link (``href`` a URI).
    - rendered markup (``summary``, ``content``, ``rendered.*``: ``{raw, markup, html}``) is closed,
      but Bitbucket adds ``"type": "rendered"`` (bitbucket-api.md: ``type`` on every object).
    - a pull request's commits (``source.commit``, ``destination.commit``, ``merge_commit``) are
      closed ``{hash}``, but Bitbucket sends them as commit objects: ``type: "commit"``, ``hash``
      and ``links`` (atlassian-python-api checks ``type`` and follows ``links.self``).

    The swagger's own examples (the description of ``GET .../pullrequests/{id}/activity``) show both
    ``"type": "rendered"`` content and ``{type, hash, links}`` pull request commits.
    """
    if isinstance(node, list):
        for item in node:
            _loosen(item)
        return
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if isinstance(props, dict) and node.get("additionalProperties") is False:
        if set(props) == {"html", "markup", "raw"}:
            props["type"] = {"type": "string", "enum": ["rendered"]}
        elif set(props) == {"hash"}:
            props["type"] = {"type": "string", "enum": ["commit"]}
            props["links"] = {"type": "object", "additionalProperties": _link_schema()}
    if isinstance(props, dict):
        links = props.get("links")
        if isinstance(links, dict) and links.get("additionalProperties") is False:
            links["additionalProperties"] = _link_schema()
    for value in node.values():
        _loosen(value)


def _own_properties(definition: Json) -> Json:
    """The properties a definition declares itself (its last allOf part, or itself)."""
    parts = definition.get("allOf", [definition])
    props: Json = parts[-1]["properties"]
    return props


def load_definitions(path: Path) -> Json:
    defs: Json = json.loads(path.read_text())["definitions"]
    _loosen(defs)
    for name, prop in NULLABLE:
        props = _own_properties(defs[name])
        props[prop] = {"anyOf": [props[prop], {"type": "null"}]}
    # bitbucket-api.md: the error body is {"type":"error","error":{"message","detail","fields","id"}};
    # the swagger closes ``error`` to message/detail/data. ``fields`` maps a field to its messages.
    error_props = defs["error"]["properties"]["error"]["properties"]
    error_props["fields"] = {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    }
    error_props["id"] = {"type": "string"}
    return defs


FORMATS = jsonschema.FormatChecker([])


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if parts.scheme and parts.netloc:
        return True
    # Bitbucket's ssh clone link is scp-style, not a URI: git@bitbucket.org:{workspace}/{repo}.git
    return value.startswith("git@") and ":" in value


class Contract:
    """One Draft 4 validator per definition, resolving ``#/definitions/...`` inside the file."""

    def __init__(self, path: Path) -> None:
        self.definitions = load_definitions(path)
        self._validators: dict[str, jsonschema.Draft4Validator] = {}

    def validator(self, name: str) -> jsonschema.Draft4Validator:
        if name not in self._validators:
            assert name in self.definitions, f"no definition {name!r} in Bitbucket's swagger"
            schema = {"definitions": self.definitions, "$ref": f"#/definitions/{name}"}
            self._validators[name] = jsonschema.Draft4Validator(schema, format_checker=FORMATS)
        return self._validators[name]

    def errors(self, name: str, instance: Any) -> list[str]:
        found = sorted(self.validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in found]

    def check(self, name: str, instance: Any) -> None:
        errors = self.errors(name, instance)
        assert not errors, f"not a valid {name}:\n" + "\n".join(errors)


# -- what bitbucket-api.md promises beyond the swagger -------------------------------------------


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def check_promises(body: Any, base_url: str) -> None:
    """``type`` on every object with a self link, which is absolute and into the stand-in; ISO
    timestamps with a zone."""
    for path, node in walk(body):
        if not isinstance(node, dict):
            continue
        links = node.get("links")
        if isinstance(links, dict) and "self" in links and path.rsplit("/", 1)[-1] != "links":
            # an object that locates itself says what it is (atlassian-python-api checks both)
            assert isinstance(node.get("type"), str), f"{path or '<root>'} has links.self but no type"
            href = links["self"]["href"]
            assert href.startswith(f"{base_url}/2.0/"), f"{path}/links/self is {href}"
        if node.get("type") == "commit":
            assert HASH.match(node["hash"]), f"{path}/hash {node['hash']!r} is neither 12 nor 40 hex digits"
        for key in TIMESTAMP_KEYS & set(node):
            value = node[key]
            if value is not None:
                stamp = datetime.fromisoformat(value)
                assert stamp.tzinfo is not None, f"{path}/{key} {value!r} has no time zone"


def check_pr_hashes(pr: Json) -> None:
    """A pull request's commits carry 12-character hashes."""
    for end in ("source", "destination"):
        assert len(pr[end]["commit"]["hash"]) == 12, f"{end}.commit.hash {pr[end]['commit']['hash']!r}"
    if pr["merge_commit"] is not None:
        assert len(pr["merge_commit"]["hash"]) == 12


# -- the stand-in -------------------------------------------------------------------------------


@dataclass
class Sandbox:
    url: str
    bb: BitbucketCloud
    tokens: dict[str, str]
    contract: Contract

    def call(self, method: str, path: str, user: str | None = "dev", **kwargs: Any) -> requests.Response:
        """As ``user``: a person (Basic e-mail and API token) or ``bot:<key>`` (Bearer access token)."""
        headers = kwargs.pop("headers", {})
        if user is not None and user.startswith("bot:"):
            headers["Authorization"] = f"Bearer {self.bb.access_tokens()[user.removeprefix('bot:')]}"
        elif user is not None:
            kwargs["auth"] = (self.bb.emails()[user], self.tokens[user])
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def answer(
        self, definition: str, method: str, path: str, user: str | None = "dev", status: int = 200, **kw: Any
    ) -> Any:
        """Call, expect ``status``, validate the JSON against ``definition`` and the promises."""
        r = self.call(method, path, user, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:500]}"
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        self.contract.check(definition, body)
        check_promises(body, self.url)
        return body

    def page(self, definition: str, path: str, user: str = "dev", **kw: Any) -> list[Json]:
        page = self.answer(definition, "GET", path, user, **kw)
        assert 1 <= page["pagelen"] <= 100 and isinstance(page["values"], list)
        values: list[Json] = page["values"]
        return values

    def commit(self, branch: str, files: dict[str, str], message: str) -> str:
        r = self.call("POST", f"{R}/src", data={"branch": branch, "message": message, **files})
        assert r.status_code == 201, r.text
        location: str = r.headers["Location"]
        return location.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    contract = Contract(SWAGGER_PATH)
    server, web = ServiceServer("bitbucket", Faults()), ServiceServer("bitbucket-web", Faults())
    bb = BitbucketCloud(
        tmp_path_factory.mktemp("bitbucket"),
        server.url,
        web_url=web.url,
        webhook_timeout=1.0,
        webhook_retry_delay=0.01,
        merge_delay=0.05,
    )
    server.start(bb.wsgi_app, bb.fault_response)
    web.start(bb.web_wsgi_app, bb.fault_response)
    try:
        bb.seed(dict(FILES), workspace=WS, repository=REPO)
        yield Sandbox(server.url, bb, bb.tokens(), contract)
    finally:
        server.stop()
        web.stop()
        bb.close()


# -- the tests ----------------------------------------------------------------------------------


def test_the_validator_is_not_vacuous(sb: Sandbox) -> None:
    pr_fields = {"type": "pullrequest", "id": 1, "state": "OPEN", "source": {"branch": {"name": "x"}}}
    assert sb.contract.errors("pullrequest", pr_fields) == []
    assert sb.contract.errors("pullrequest", {**pr_fields, "state": "CLOSED"})
    assert sb.contract.errors("pullrequest", {**pr_fields, "id": "1"})
    assert sb.contract.errors("repository", {"name": "claims"})  # no type
    assert sb.contract.errors("repository", {"type": "repository", "links": {"x": {"href": "/rel"}}})
    assert sb.contract.errors("participant", {"type": "participant", "role": "OWNER"})
    assert sb.contract.errors("participant", {"type": "participant", "approved": None})
    assert sb.contract.errors("error", {"type": "error", "error": {"detail": "no message"}})
    assert sb.contract.errors("paginated_branches", {"values": [], "pagelen": 10, "extra": 1})
    assert sb.contract.errors("commitstatus", {"type": "build", "created_on": "yesterday"})
    with pytest.raises(AssertionError, match=r"has links\.self but no type"):
        check_promises({"values": [{"links": {"self": {"href": f"{sb.url}/2.0/x"}}}]}, sb.url)


def test_accounts(sb: Sandbox) -> None:
    me = sb.answer("account", "GET", "/2.0/user", "po")
    sb.contract.check("user", me)
    assert me["type"] == "user" and me["nickname"] == "po"
    for selector in (me["uuid"], me["account_id"], "ops"):
        other = sb.answer("account", "GET", f"/2.0/users/{selector}", "dev")
        sb.contract.check("user", other)
        assert other["type"] == "user"
    q = f'repository.full_name="{WS}/{REPO}"'
    [permission] = sb.page("paginated_repository_permissions", f"/2.0/user/permissions/repositories?q={q}")
    assert (permission["permission"], permission["user"]["nickname"]) == ("write", "dev")
    sb.contract.check("repository_permission", permission)


# Where the pull requests of the tests below go, so that main and develop stay as the others expect.
TARGET = {"branch": {"name": "contract-target"}}


@pytest.fixture
def target(sb: Sandbox) -> None:
    if sb.call("GET", f"{R}/refs/branches/contract-target").status_code == 404:
        body = {"name": "contract-target", "target": {"hash": "main"}}
        assert sb.call("POST", f"{R}/refs/branches", json=body).status_code == 201


@pytest.mark.usefixtures("target")
def test_bot_accounts_are_app_users(sb: Sandbox) -> None:
    sb.commit("feature/bot", {"bot.txt": "1"}, "For the bot")
    body = {"title": "By a bot", "source": {"branch": {"name": "feature/bot"}}, "destination": TARGET}
    pr = sb.answer("pullrequest", "POST", f"{R}/pullrequests", "bot:repository", 201, json=body)
    author = pr["author"]
    sb.contract.check("app_user", author)
    assert author["type"] == "app_user" and "nickname" not in author
    again = sb.answer("app_user", "GET", f"/2.0/users/{author['uuid']}", "dev")
    assert again["uuid"] == author["uuid"] and again["display_name"] == author["display_name"]


@pytest.mark.usefixtures("target")
def test_merge_task_status(sb: Sandbox) -> None:
    sb.commit("feature/task", {"task.txt": "1"}, "For a merge task")
    body = {"title": "As a task", "source": {"branch": {"name": "feature/task"}}, "destination": TARGET}
    pr = sb.answer("pullrequest", "POST", f"{R}/pullrequests", status=201, json=body)
    queued = sb.call("POST", f"{R}/pullrequests/{pr['id']}/merge?async=true", json={})
    assert queued.status_code == 202
    task = queued.headers["Location"].removeprefix(sb.url)
    # The swagger gives the task no schema; its own example has no "type" (not an object of the API).
    pending = sb.call("GET", task).json()
    assert pending == {"task_status": "PENDING", "links": {"self": {"href": f"{sb.url}{task}"}}}
    assert sb.bb.merger.wait_idle(10)
    done = sb.call("GET", task).json()
    assert done["task_status"] == "SUCCESS" and done["links"] == pending["links"]
    sb.contract.check("pullrequest", done["merge_result"])
    check_promises(done["merge_result"], sb.url)
    check_pr_hashes(done["merge_result"])


def test_repositories_and_branches(sb: Sandbox) -> None:
    workspace = sb.answer("workspace", "GET", f"/2.0/workspaces/{WS}")
    assert workspace["slug"] == WS
    members = sb.page("paginated_workspace_memberships", f"/2.0/workspaces/{WS}/members")
    assert {m["user"]["nickname"] for m in members} >= {"dev", "po", "ops", "controller", "readonly"}
    for member in members:
        sb.contract.check("workspace_membership", member)
    [listed] = sb.page("paginated_repositories", f"/2.0/repositories/{WS}")
    repo = sb.answer("repository", "GET", R)
    assert listed == repo and repo["full_name"] == f"{WS}/{REPO}"
    sb.contract.check("branch", repo["mainbranch"])

    main = sb.answer("branch", "GET", f"{R}/refs/branches/main")
    assert main["type"] == "branch" and len(main["target"]["hash"]) == 40
    assert all(len(p["hash"]) == 40 for p in main["target"]["parents"])
    created = sb.answer(
        "branch",
        "POST",
        f"{R}/refs/branches",
        status=201,
        json={"name": "release/contract", "target": {"hash": main["target"]["hash"]}},
    )
    assert created["target"]["hash"] == main["target"]["hash"]

    branches = sb.page("paginated_branches", f"{R}/refs/branches")
    assert {"main", "develop", "release/contract"} <= {b["name"] for b in branches}
    assert all(len(b["target"]["hash"]) == 40 for b in branches)
    middle = sb.answer("paginated_branches", "GET", f"{R}/refs/branches?pagelen=1&page=2")
    assert "next" in middle and "previous" in middle


def test_commits_and_statuses(sb: Sandbox) -> None:
    first = sb.commit("feature/commits", {"a.txt": "1"}, "First")
    second = sb.commit("feature/commits", {"a.txt": "2"}, "Second")
    commits = sb.page("paginated_changeset", f"{R}/commits/feature/commits")
    assert [c["hash"] for c in commits[:2]] == [second, first]
    for c in commits:
        sb.contract.check("commit", c)
        assert len(c["hash"]) == 40 and c["type"] == "commit"
    sb.page("paginated_changeset", f"{R}/commits?include={second}&exclude=main")
    one = sb.answer("commit", "GET", f"{R}/commit/{second[:12]}")
    assert one["hash"] == second and [p["hash"] for p in one["parents"]] == [first]
    sb.contract.check("author", one["author"])

    full = {
        "key": "ci",
        "state": "INPROGRESS",
        "url": "https://ci.example/1",
        "name": "CI #1",
        "description": "tests",
        "refname": "feature/commits",
    }
    posted = sb.answer(
        "commitstatus", "POST", f"{R}/commit/{second}/statuses/build", "controller", 201, json=full
    )
    assert posted["type"] == "build" and posted["commit"]["hash"] == second
    minimal = {"key": "lint", "state": "SUCCESSFUL", "url": "https://ci.example/lint"}
    sb.answer("commitstatus", "POST", f"{R}/commit/{second}/statuses/build", "controller", 201, json=minimal)
    statuses = sb.page("paginated_commitstatuses", f"{R}/commit/{second}/statuses")
    assert sorted(s["key"] for s in statuses) == ["ci", "lint"]
    got = sb.answer("commitstatus", "GET", f"{R}/commit/{second}/statuses/build/ci")
    assert got["uuid"] == posted["uuid"]
    put = sb.answer(
        "commitstatus",
        "PUT",
        f"{R}/commit/{second}/statuses/build/ci",
        "controller",
        json={"state": "FAILED"},
    )
    assert put["state"] == "FAILED" and put["created_on"] == posted["created_on"]


def test_pull_request_lifecycle(sb: Sandbox) -> None:
    head = sb.commit("feature/pr", {"pr.txt": "1"}, "Add pr.txt")
    po = sb.call("GET", "/2.0/user", "po").json()
    body = {
        "title": "Contract",
        "description": "Checks shapes",
        "source": {"branch": {"name": "feature/pr"}},
        "destination": {"branch": {"name": "develop"}},
        "reviewers": [{"uuid": po["uuid"]}],
    }
    pr = sb.answer("pullrequest", "POST", f"{R}/pullrequests", status=201, json=body)
    check_pr_hashes(pr)
    assert pr["source"]["commit"]["hash"] == head[:12] and pr["merge_commit"] is None
    n = pr["id"]
    P = f"{R}/pullrequests/{n}"

    listed = sb.page("paginated_pullrequests", f"{R}/pullrequests?state=OPEN")
    assert n in [p["id"] for p in listed]
    for p in listed:
        check_pr_hashes(p)
    sb.page(
        "paginated_pullrequests", f'{R}/pullrequests?q=destination.branch.name="develop"&sort=-updated_on'
    )
    got = sb.answer("pullrequest", "GET", P)
    assert got["reviewers"][0]["uuid"] == po["uuid"]
    updated = sb.answer("pullrequest", "PUT", P, json={"title": "Contract, renamed"})
    assert updated["title"] == "Contract, renamed"

    approval = sb.answer("participant", "POST", f"{P}/approve", "po")
    assert (approval["approved"], approval["state"], approval["role"]) == (True, "approved", "REVIEWER")
    changes = sb.answer("participant", "POST", f"{P}/request-changes", "ops")
    assert (changes["state"], changes["role"]) == ("changes_requested", "PARTICIPANT")
    assert sb.call("DELETE", f"{P}/request-changes", "ops").status_code == 204

    comment = sb.answer(
        "pullrequest_comment", "POST", f"{P}/comments", status=201, json={"content": {"raw": "Looks right"}}
    )
    sb.contract.check("comment", comment)
    [listed_comment] = sb.page("paginated_pullrequest_comments", f"{P}/comments")
    assert listed_comment["id"] == comment["id"]
    one = sb.answer("pullrequest_comment", "GET", f"{P}/comments/{comment['id']}")
    assert one["content"]["raw"] == "Looks right"

    # The swagger gives PR commits no schema: Bitbucket pages them like /commits.
    [pr_commit] = sb.page("paginated_changeset", f"{P}/commits")
    sb.contract.check("commit", pr_commit)
    assert pr_commit["hash"] == head
    sb.call(
        "POST",
        f"{R}/commit/{head}/statuses/build",
        "controller",
        json={"key": "ci", "state": "SUCCESSFUL", "url": "https://ci.example/pr"},
    )
    [pr_status] = sb.page("paginated_commitstatuses", f"{P}/statuses")
    assert pr_status["commit"]["hash"] == head

    got = sb.answer("pullrequest", "GET", P)
    states = {p["user"]["nickname"]: p["state"] for p in got["participants"]}
    assert states == {"po": "approved", "ops": None, "dev": None}
    merged = sb.answer("pullrequest", "POST", f"{P}/merge", json={"merge_strategy": "merge_commit"})
    check_pr_hashes(merged)
    assert merged["state"] == "MERGED" and merged["closed_by"]["nickname"] == "dev"
    sb.contract.check("account", merged["closed_by"])

    check_activity(sb, P)

    sb.commit("feature/declined", {"d.txt": "1"}, "To decline")
    body = {"title": "No", "source": {"branch": {"name": "feature/declined"}}}
    other = sb.answer("pullrequest", "POST", f"{R}/pullrequests", status=201, json=body)
    declined = sb.answer("pullrequest", "POST", f"{R}/pullrequests/{other['id']}/decline")
    assert declined["state"] == "DECLINED"
    check_pr_hashes(declined)
    sb.page("paginated_pullrequests", f"{R}/pullrequests?state=MERGED&state=DECLINED")


def check_activity(sb: Sandbox, pr_path: str) -> None:
    """The swagger gives activity no schema: the page, and each entry's parts, are checked."""
    page = sb.call("GET", f"{pr_path}/activity").json()
    check_promises(page, sb.url)
    page_schema = copy.deepcopy(sb.contract.definitions["paginated_pullrequests"])
    page_schema["properties"]["values"]["items"] = {"type": "object"}
    assert not list(jsonschema.Draft4Validator(page_schema).iter_errors(page))
    kinds: set[str] = set()
    for entry in page["values"]:
        sb.contract.check("pullrequest", entry["pull_request"])
        (kind,) = set(entry) - {"pull_request"}
        kinds.add(kind)
        part = entry[kind]
        if kind == "update":
            sb.contract.check("account", part["author"])
            for end in ("source", "destination"):
                sb.contract.check("pullrequest_endpoint", part[end])
                assert len(part[end]["commit"]["hash"]) == 12
        elif kind == "comment":
            sb.contract.check("pullrequest_comment", part)
        else:
            sb.contract.check("account", part["user"])
    assert kinds == {"update", "approval", "changes_requested", "comment"}


def test_webhooks_and_their_payloads(sb: Sandbox) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": sorted(EVENTS), "secret": "s"}
    admin = "controller"  # webhooks are an admin's to see and manage
    hook = sb.answer("webhook_subscription", "POST", f"{R}/hooks", admin, status=201, json=body)
    assert hook["secret_set"] is True and "secret" not in hook
    assert hook in sb.page("paginated_webhook_subscriptions", f"{R}/hooks", admin)
    assert sb.answer("webhook_subscription", "GET", f"{R}/hooks/{hook['uuid']}", admin) == hook

    # What the hook hears: a push, a build status, a pull request's whole life.
    head = sb.commit("feature/hooked", {"h.txt": "1"}, "Hooked")
    status = {"key": "ci", "state": "INPROGRESS", "url": "https://ci.example/h"}
    sb.call("POST", f"{R}/commit/{head}/statuses/build", "controller", json=status)
    sb.call("PUT", f"{R}/commit/{head}/statuses/build/ci", "controller", json={"state": "SUCCESSFUL"})
    pr = sb.call(
        "POST", f"{R}/pullrequests", json={"title": "H", "source": {"branch": {"name": "feature/hooked"}}}
    )
    P = f"{R}/pullrequests/{pr.json()['id']}"
    for method, path, user in [
        ("POST", f"{P}/approve", "po"),
        ("DELETE", f"{P}/approve", "po"),
        ("POST", f"{P}/request-changes", "ops"),
        ("POST", f"{P}/merge", "dev"),
    ]:
        assert sb.call(method, path, user).status_code < 300, (method, path)
    sb.call("POST", f"{P}/comments", json={"content": {"raw": "after the merge"}})
    sb.commit("feature/unhooked", {"u.txt": "1"}, "Declined")
    other = sb.call(
        "POST", f"{R}/pullrequests", json={"title": "U", "source": {"branch": {"name": "feature/unhooked"}}}
    )
    sb.call("POST", f"{R}/pullrequests/{other.json()['id']}/decline")

    seen: set[str] = set()
    for delivery in sb.bb.deliveries(hook["uuid"]):
        event, payload = delivery["event"], delivery["payload"]
        seen.add(event)
        check_promises(payload, sb.url)
        sb.contract.check("account", payload["actor"])
        sb.contract.check("repository", payload["repository"])
        for part, definition in PAYLOAD_PARTS.items():
            if part in payload:
                sb.contract.check(definition, payload[part])
        if "pullrequest" in payload:
            check_pr_hashes(payload["pullrequest"])
        for change in payload.get("push", {}).get("changes", []):
            for end in ("old", "new"):
                if change[end] is not None:
                    sb.contract.check("branch", change[end])
                    assert len(change[end]["target"]["hash"]) == 40
            for commit in change["commits"]:
                sb.contract.check("commit", commit)
        for part in ("approval", "changes_request"):
            if part in payload:
                sb.contract.check("account", payload[part]["user"])
    assert {
        "repo:push",
        "repo:commit_status_created",
        "repo:commit_status_updated",
        "pullrequest:created",
        "pullrequest:approved",
        "pullrequest:unapproved",
        "pullrequest:changes_request_created",
        "pullrequest:fulfilled",
        "pullrequest:comment_created",
        "pullrequest:rejected",
    } <= seen

    put = sb.answer("webhook_subscription", "PUT", f"{R}/hooks/{hook['uuid']}", admin, json={"active": False})
    assert put["active"] is False and put["uuid"] == hook["uuid"]
    assert sb.call("DELETE", f"{R}/hooks/{hook['uuid']}", admin).status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "user", "status", "kw"),
    [
        ("GET", f"/2.0/repositories/{WS}/nope", "dev", 404, {}),
        ("GET", f"{R}/refs/branches/nope", "dev", 404, {}),
        ("GET", f"{R}/pullrequests/999", "dev", 404, {}),
        ("GET", "/2.0/no/such/api", "dev", 404, {}),
        ("POST", f"{R}/pullrequests", "dev", 400, {"json": {"source": {"branch": {"name": "develop"}}}}),
        (
            "POST",
            f"{R}/pullrequests",
            "dev",
            400,
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", f"{R}/refs/branches", "readonly", 403, {"json": {"name": "x", "target": {"hash": "main"}}}),
        ("GET", R, None, 401, {}),
        ("DELETE", f"{R}/pullrequests", "dev", 405, {}),
    ],
)
def test_errors(sb: Sandbox, method: str, path: str, user: str | None, status: int, kw: Json) -> None:
    error = sb.answer("error", method, path, user, status, **kw)
    assert error["type"] == "error" and error["error"]["message"]
