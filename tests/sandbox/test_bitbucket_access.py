"""What the Bitbucket stand-in refuses, as the real service does: credentials, scopes and their
headers, the bots access tokens act as, repository permissions, ``PUT`` without a title,
reviewers, and merges that answer 202 (a task to poll), 409 (one is pending) or 555 (timed out)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.bitbucket import BitbucketCloud
from sandbox.bitbucket.scopes import LACKING
from sandbox.bitbucket.users import ACCESS_TOKEN_SCOPES, USER_SCOPES
from sandbox.faults import Faults
from sandbox.server import ServiceServer

WS, REPO = "whisper", "claims"
R = f"/2.0/repositories/{WS}/{REPO}"
FILES = {"app.py": b"print('hello')\n", "Procfile": b"web: python app.py\n"}
TOKEN_REFUSED = "Token is invalid, expired, or not supported for this endpoint."


@dataclass
class Stand:
    api: ServiceServer
    web: ServiceServer
    bb: BitbucketCloud

    def headers(self, who: str) -> dict[str, str]:
        """A person by username (Basic e-mail:API token) or an access token by key (Bearer)."""
        access = self.bb.access_tokens()
        if who in access:
            return {"Authorization": f"Bearer {access[who]}"}
        raw = f"{self.bb.emails()[who]}:{self.bb.tokens()[who]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def call(self, method: str, path: str, who: str | None = "dev", **kwargs: Any) -> requests.Response:
        headers = {**(self.headers(who) if who else {}), **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.api.url}{path}", headers=headers, timeout=10, **kwargs)

    def commit(self, branch: str, name: str, who: str = "dev") -> str:
        r = self.call("POST", f"{R}/src", who, data={"branch": branch, "message": name, name: name})
        assert r.status_code == 201, r.text
        return r.headers["Location"].rsplit("/", 1)[1]

    def pull_request(self, branch: str, who: str = "dev", **body: Any) -> dict[str, Any]:
        self.commit(branch, f"{branch.replace('/', '-')}.txt", who)
        payload = {"title": branch, "source": {"branch": {"name": branch}}, **body}
        r = self.call("POST", f"{R}/pullrequests", who, json=payload)
        assert r.status_code == 201, r.text
        pr: dict[str, Any] = r.json()
        return pr

    def uuid(self, user: str) -> str:
        return str(self.bb.store.users[user]["uuid"])


def start(tmp_path: Path, **options: Any) -> Stand:
    faults = Faults()
    api, web = ServiceServer("bitbucket", faults), ServiceServer("bitbucket-web", faults)
    bb = BitbucketCloud(tmp_path / "bitbucket", api.url, web_url=web.url, **options)
    api.start(bb.wsgi_app, bb.fault_response)
    web.start(bb.web_wsgi_app, bb.fault_response)
    bb.seed(dict(FILES), workspace=WS, repository=REPO)
    return Stand(api, web, bb)


@pytest.fixture
def stand(tmp_path: Path) -> Iterator[Stand]:
    s = start(tmp_path, merge_delay=0.3)
    try:
        yield s
    finally:
        s.api.stop()
        s.web.stop()
        s.bb.close()


@pytest.fixture
def async_stand(tmp_path: Path) -> Iterator[Stand]:
    s = start(tmp_path, merge_mode="async", merge_delay=0.3)
    try:
        yield s
    finally:
        s.api.stop()
        s.web.stop()
        s.bb.close()


# -- credentials ------------------------------------------------------------------------------


def test_people_authenticate_with_their_email_and_api_token(stand: Stand) -> None:
    ok = stand.call("GET", R, "dev")
    assert ok.status_code == 200
    assert ok.headers["x-oauth-scopes"] == ", ".join(USER_SCOPES)
    assert ok.headers["x-accepted-oauth-scopes"] == "repository"
    assert "x-credential-type" not in ok.headers

    token = stand.bb.tokens()["dev"]
    by_username = requests.get(f"{stand.api.url}{R}", auth=("dev", token), timeout=10)
    assert by_username.status_code == 401 and by_username.json()["type"] == "error"
    as_bearer = stand.call("GET", R, None, headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    assert as_bearer.json() == {"type": "error", "error": {"message": TOKEN_REFUSED}}
    wrong = requests.get(f"{stand.api.url}{R}", auth=("dev@whisper.example", "nope"), timeout=10)
    assert wrong.status_code == 401
    anonymous = stand.call("GET", R, None)
    assert anonymous.status_code == 401 and "x-oauth-scopes" not in anonymous.headers


@pytest.mark.parametrize(
    ("key", "credential_type"), [("repository", "repo_access_token"), ("workspace", "workspace_access_token")]
)
def test_access_tokens_are_bearer_only_and_say_what_they_are(
    stand: Stand, key: str, credential_type: str
) -> None:
    ok = stand.call("GET", f"{R}/pullrequests", key)
    assert ok.status_code == 200
    assert ok.headers["x-oauth-scopes"] == ", ".join(ACCESS_TOKEN_SCOPES)
    assert ok.headers["x-accepted-oauth-scopes"] == "pullrequest"
    assert ok.headers["x-credential-type"] == credential_type
    token = stand.bb.access_tokens()[key]
    for user in ("x-token-auth", "dev@whisper.example", "dev"):
        assert requests.get(f"{stand.api.url}{R}", auth=(user, token), timeout=10).status_code == 401


def test_access_tokens_have_no_account_scope(stand: Stand) -> None:
    for path, required in (
        ("/2.0/user", ["account"]),
        (f"/2.0/workspaces/{WS}/members", ["account"]),
        ("/2.0/user/permissions/repositories", ["account", "repository"]),
    ):
        r = stand.call("GET", path, "workspace")
        assert r.status_code == 403, path
        assert r.json() == {
            "type": "error",
            "error": {
                "message": LACKING,
                "detail": {"granted": list(ACCESS_TOKEN_SCOPES), "required": required},
            },
        }
        assert r.headers["x-accepted-oauth-scopes"] == ", ".join(required)
        assert r.headers["x-credential-type"] == "workspace_access_token"
    assert stand.call("GET", f"/2.0/workspaces/{WS}", "workspace").status_code == 200  # no scope asked
    assert stand.call("GET", "/2.0/user", "dev").status_code == 200


def test_a_credential_lacking_a_scope_is_refused_naming_both_lists(stand: Stand) -> None:
    scopes = ["repository", "repository:write", "pullrequest", "webhook"]
    stand.bb.issue_access_token(
        "no-pr-write", "repository", "Read-only PR bot", scopes, workspace=WS, repository=REPO
    )
    stand.commit("feature/scoped", "scoped.txt")
    body = {"title": "t", "source": {"branch": {"name": "feature/scoped"}}}
    refused = stand.call("POST", f"{R}/pullrequests", "no-pr-write", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "message": LACKING,
        "detail": {"granted": scopes, "required": ["pullrequest:write"]},
    }
    assert refused.headers["x-accepted-oauth-scopes"] == "pullrequest:write"
    assert stand.call("GET", f"{R}/pullrequests", "no-pr-write").status_code == 200
    assert (
        stand.call(
            "POST", f"{R}/refs/branches", "no-pr-write", json={"name": "x", "target": {"hash": "main"}}
        ).status_code
        == 201
    )

    # a person's API token is checked in granular names
    stand.bb.store.users["ops"]["scopes"] = [s for s in USER_SCOPES if s != "write:pullrequest:bitbucket"]
    ops = stand.call("POST", f"{R}/pullrequests", "ops", json=body)
    assert ops.status_code == 403
    assert ops.json()["error"]["detail"]["required"] == ["write:pullrequest:bitbucket"]
    assert stand.call("GET", f"{R}/pullrequests", "ops").status_code == 200  # write holds read
    hooks = stand.call("GET", f"{R}/hooks", "controller")
    assert hooks.status_code == 200 and hooks.headers["x-accepted-oauth-scopes"] == "webhook"
    # webhooks are an admin's: a writer is refused them whatever its scopes
    assert stand.call("GET", f"{R}/hooks", "dev").status_code == 403


def test_actions_with_an_access_token_appear_under_its_bot(stand: Stand) -> None:
    bot = stand.bb.store.bots["bot:repository"]
    pr = stand.pull_request("feature/bot", "repository")
    author = pr["author"]
    assert author == {
        "display_name": bot["display_name"],
        "links": author["links"],
        "type": "app_user",
        "uuid": bot["uuid"],
        "account_id": bot["account_id"],
    }
    assert "nickname" not in author and author["display_name"] == "Claims release token"
    P = f"{R}/pullrequests/{pr['id']}"
    commit = stand.call("GET", f"{R}/commit/{pr['source']['commit']['hash']}", "dev").json()
    assert commit["author"]["user"]["uuid"] == bot["uuid"]  # the branch push, by the bot
    comment = stand.call("POST", f"{P}/comments", "repository", json={"content": {"raw": "by a bot"}})
    assert comment.json()["user"]["type"] == "app_user"
    status = {"key": "ci", "state": "SUCCESSFUL", "url": "https://ci.example/1"}
    assert stand.call("POST", f"{R}/commit/{commit['hash']}/statuses/build", "repository", json=status).ok
    merged = stand.call("POST", f"{P}/merge", "repository", json={}).json()
    assert merged["closed_by"]["uuid"] == bot["uuid"] and merged["state"] == "MERGED"
    activity = stand.call("GET", f"{P}/activity", "dev").json()["values"]
    assert activity[0]["update"]["author"]["type"] == "app_user"
    found = stand.call("GET", f"/2.0/users/{bot['uuid']}", "dev").json()
    assert found["type"] == "app_user" and found["account_id"] == bot["account_id"]


def test_a_repository_token_sees_only_its_repository(stand: Stand) -> None:
    stand.bb.seed(dict(FILES), workspace=WS, repository="other")
    other = f"/2.0/repositories/{WS}/other"
    assert stand.call("GET", other, "repository").status_code == 404
    assert stand.call("GET", other, "workspace").status_code == 200
    assert stand.call("GET", other, "dev").status_code == 200
    listed = stand.call("GET", f"/2.0/repositories/{WS}", "repository").json()["values"]
    assert [r["slug"] for r in listed] == [REPO]


def test_repository_permissions_of_people(stand: Stand) -> None:
    path = "/2.0/user/permissions/repositories"
    for user, expected in (("readonly", "read"), ("dev", "write"), ("controller", "admin")):
        page = stand.call("GET", path, user, params={"q": f'repository.full_name="{WS}/{REPO}"'}).json()
        [value] = page["values"]
        assert (value["type"], value["permission"]) == ("repository_permission", expected), user
        assert value["repository"]["full_name"] == f"{WS}/{REPO}" and value["user"]["nickname"] == user
        assert page["pagelen"] == 10 and page["page"] == 1
    none = stand.call("GET", path, "dev", params={"q": 'repository.full_name="whisper/none"'}).json()
    assert none["values"] == []


# -- pull requests ----------------------------------------------------------------------------


def test_put_without_a_title_is_refused_even_for_the_description_alone(stand: Stand) -> None:
    pr = stand.pull_request("feature/put")
    P = f"{R}/pullrequests/{pr['id']}"
    r = stand.call("PUT", P, json={"description": "only this"})
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {"message": "title is required", "fields": {"title": ["This field is required."]}},
    }
    assert stand.call("GET", P).json()["description"] == ""
    ok = stand.call("PUT", P, json={"title": pr["title"], "description": "with the title"})
    assert ok.status_code == 200 and ok.json()["description"] == "with the title"


def test_reviewers_by_uuid_or_account_id(stand: Stand) -> None:
    po, ops = stand.bb.store.users["po"], stand.bb.store.users["ops"]
    pr = stand.pull_request(
        "feature/review", reviewers=[{"uuid": po["uuid"]}, {"account_id": ops["account_id"]}]
    )
    assert [r["uuid"] for r in pr["reviewers"]] == [po["uuid"], ops["uuid"]]
    assert [
        (p["user"]["nickname"], p["role"], p["approved"], p["state"], p["participated_on"])
        for p in pr["participants"]
    ] == [
        ("po", "REVIEWER", False, None, None),
        ("ops", "REVIEWER", False, None, None),
    ]
    P = f"{R}/pullrequests/{pr['id']}"
    approval = stand.call("POST", f"{P}/approve", "po").json()
    assert (approval["role"], approval["approved"], approval["state"]) == ("REVIEWER", True, "approved")
    changed = stand.call("PUT", P, json={"title": pr["title"], "reviewers": [{"uuid": ops["uuid"]}]}).json()
    assert [r["nickname"] for r in changed["reviewers"]] == ["ops"]
    roles = {p["user"]["nickname"]: p["role"] for p in changed["participants"]}
    assert roles == {"po": "PARTICIPANT", "ops": "REVIEWER"}  # po approved, so stays a participant


def test_the_author_or_an_unknown_account_cannot_be_a_reviewer(stand: Stand) -> None:
    stand.commit("feature/self", "self.txt")
    body: dict[str, Any] = {"title": "Self", "source": {"branch": {"name": "feature/self"}}}
    itself = stand.call(
        "POST", f"{R}/pullrequests", json={**body, "reviewers": [{"uuid": stand.uuid("dev")}]}
    )
    message = "Dana Developer is the author and cannot be included as a reviewer."
    assert itself.status_code == 400
    assert itself.json()["error"] == {"message": message, "fields": {"reviewers": [message]}}
    for ref in (
        {"uuid": "{00000000-0000-0000-0000-000000000000}"},
        {"account_id": "nope"},
        {"username": "po"},
    ):
        r = stand.call("POST", f"{R}/pullrequests", json={**body, "reviewers": [ref]})
        assert r.status_code == 400 and "reviewers" in r.json()["error"]["fields"], ref
    by_bot = stand.call(
        "POST", f"{R}/pullrequests", "repository", json={**body, "reviewers": [{"uuid": stand.uuid("po")}]}
    )
    assert by_bot.status_code == 201 and by_bot.json()["reviewers"][0]["nickname"] == "po"


# -- merges -----------------------------------------------------------------------------------


def test_an_async_merge_is_a_task_to_poll(async_stand: Stand) -> None:
    s = async_stand
    pr = s.pull_request("feature/async")
    other = s.pull_request("feature/other")
    P = f"{R}/pullrequests/{pr['id']}"
    queued = s.call("POST", f"{P}/merge", json={"merge_strategy": "merge_commit"})
    assert queued.status_code == 202
    location = queued.headers["Location"]
    assert location.startswith(f"{s.api.url}{P}/merge/task-status/")
    task_path = location.removeprefix(s.api.url)
    assert s.call("GET", P).json()["state"] == "OPEN"

    again = s.call("POST", f"{P}/merge", json={})
    assert again.status_code == 409
    assert again.json() == {
        "type": "error",
        "error": {"message": "There is already a merge in progress for this pull request."},
    }
    assert s.call("GET", task_path, "po").status_code == 403  # not the one who queued it
    elsewhere = task_path.replace(f"/pullrequests/{pr['id']}/", f"/pullrequests/{other['id']}/")
    assert s.call("GET", elsewhere).status_code == 400

    assert s.bb.merger.wait_idle(10)
    assert s.call("GET", P).json()["state"] == "MERGED"  # merged in the background
    first = s.call("GET", task_path).json()
    assert first == {"task_status": "PENDING", "links": {"self": {"href": location}}}  # the first poll
    done = s.call("GET", task_path).json()
    assert done["task_status"] == "SUCCESS" and done["links"] == first["links"]
    assert done["merge_result"]["state"] == "MERGED" and done["merge_result"]["id"] == pr["id"]
    assert s.call("POST", f"{P}/merge", json={}).status_code == 400  # merged already


def test_a_sync_stand_in_queues_on_request_and_reports_a_failed_merge(stand: Stand) -> None:
    pr = stand.pull_request("feature/ff")
    stand.commit("main", "moved.txt")  # so that fast-forward is impossible
    P = f"{R}/pullrequests/{pr['id']}"
    body = {"merge_strategy": "fast_forward"}
    queued = stand.call("POST", f"{P}/merge", params={"async": "true"}, json={**body})
    assert queued.status_code == 202
    task_path = queued.headers["Location"].removeprefix(stand.api.url)
    assert stand.bb.merger.wait_idle(10)
    assert stand.call("GET", task_path).json()["task_status"] == "PENDING"
    failed = stand.call("GET", task_path)
    assert failed.status_code == 400 and "fast-forward" in failed.json()["error"]["message"]
    assert stand.call("GET", P).json()["state"] == "OPEN"


def test_a_merge_timeout_fault_answers_555_and_merges_later(stand: Stand) -> None:
    pr = stand.pull_request("feature/slow")
    P = f"{R}/pullrequests/{pr['id']}"
    stand.api.faults.add(kind="merge_timeout")
    timed_out = stand.call("POST", f"{P}/merge", json={})
    assert timed_out.status_code == 555 and timed_out.json()["type"] == "error"
    retry = stand.call("POST", f"{P}/merge", json={})
    assert retry.status_code == 409  # the merge goes on in the background
    assert stand.bb.merger.wait_idle(10)
    assert stand.call("GET", P).json()["state"] == "MERGED"
    assert stand.call("POST", f"{P}/merge", json={}).status_code == 400  # a later retry: merged

    other = stand.pull_request("feature/admin-fault")
    admin = f"{stand.api.url}/_sandbox/faults"
    added = requests.post(admin, json={"kind": "merge_timeout"}, timeout=10)
    assert added.status_code == 201 and added.json()["path"] == "/2.0/repositories/*/pullrequests/*/merge"
    assert stand.call("GET", f"{R}/pullrequests").status_code == 200  # only merges are matched
    assert stand.call("POST", f"{R}/pullrequests/{other['id']}/merge", json={}).status_code == 555
    bad = requests.post(admin, json={"kind": "merge_timeout", "service": "heroku"}, timeout=10)
    assert bad.status_code == 400 and "service" in bad.json()["error"]
