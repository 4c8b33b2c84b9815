"""The Bitbucket Cloud stand-in over real HTTP: atlassian-python-api's ``Cloud`` unchanged, plus
plain ``requests`` for what the client does not wrap (``POST /src``, archives, webhooks, errors).

People authenticate as on Bitbucket: ``Basic email:api_token`` on the API. Credentials, scopes,
the website host, merges as tasks and reviewers have their own tests in ``test_bitbucket_access.py``
and ``test_bitbucket_website.py``."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from atlassian.bitbucket import Cloud
from requests import HTTPError

from sandbox.bitbucket import BitbucketCloud
from sandbox.bitbucket.webhooks import signature
from sandbox.faults import Faults
from sandbox.server import ServiceServer

WS, REPO = "whisper", "claims"
FILES = {"app.py": b"print('hello')\n", "Procfile": b"web: python app.py\n", "lib/util.py": b"X = 1\n"}


@dataclass
class Env:
    server: ServiceServer
    bb: BitbucketCloud
    tokens: dict[str, str]
    state_dir: Path
    web: ServiceServer | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def web_url(self) -> str:
        assert self.web is not None
        return self.web.url

    def auth(self, user: str) -> tuple[str, str]:
        """Basic credentials of a person: the Atlassian account e-mail and the API token."""
        return (self.bb.emails()[user], self.tokens[user])

    def cloud(self, user: str = "dev") -> Cloud:
        email, token = self.auth(user)
        return Cloud(url=self.url, username=email, password=token)

    def call(self, method: str, path: str, user: str | None = "dev", **kwargs: Any) -> requests.Response:
        if user is not None and "auth" not in kwargs and "Authorization" not in kwargs.get("headers", {}):
            kwargs["auth"] = self.auth(user)
        return requests.request(method, f"{self.url}{path}", timeout=10, **kwargs)

    def commit(self, branch: str, files: dict[str, str], message: str = "change", user: str = "dev") -> str:
        r = self.call(
            "POST",
            f"/2.0/repositories/{WS}/{REPO}/src",
            user,
            data={"branch": branch, "message": message, **files},
        )
        assert r.status_code == 201, r.text
        return r.headers["Location"].rsplit("/", 1)[1]


def start(state_dir: Path, **options: Any) -> tuple[ServiceServer, BitbucketCloud, ServiceServer]:
    """The API and website servers of a seeded stand-in; ``options`` go to ``BitbucketCloud``."""
    faults = Faults()
    server, web = ServiceServer("bitbucket", faults), ServiceServer("bitbucket-web", faults)
    options = {"webhook_retry_delay": 0.05, "webhook_timeout": 3.0, **options}
    bb = BitbucketCloud(state_dir, server.url, web_url=web.url, **options)
    server.start(bb.wsgi_app, bb.fault_response)
    web.start(bb.web_wsgi_app, bb.fault_response)
    bb.seed(dict(FILES), workspace=WS, repository=REPO)
    return server, bb, web


def stop(server: ServiceServer, bb: BitbucketCloud, web: ServiceServer) -> None:
    server.stop()
    web.stop()
    bb.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    server, bb, web = start(tmp_path / "bitbucket")
    try:
        yield Env(server, bb, bb.tokens(), tmp_path / "bitbucket", web)
    finally:
        stop(server, bb, web)


R = f"/2.0/repositories/{WS}/{REPO}"


# -- the client library ----------------------------------------------------------------------


def test_repository_and_branches_through_the_client(env: Env) -> None:
    repo = env.cloud().repositories.get(WS, REPO)
    assert (repo.name, repo.slug, repo.is_private) == (REPO, REPO, True)
    assert repo.url == f"{env.url}{R}"
    assert repo.get_data("mainbranch") == {"name": "main", "type": "branch"}
    names = {b.name: b.hash for b in repo.branches.each()}
    assert (
        set(names) == {"main", "develop"} and len(names["main"]) == 40 and names["main"] == names["develop"]
    )
    created = repo.branches.create("release/1", names["main"])
    assert (created.name, created.hash) == ("release/1", names["main"])
    assert repo.branches.get("release/1").hash == names["main"]
    target = repo.branches.get("main").get_data("target")
    assert target["author"]["user"]["nickname"] == "ops" and target["parents"] == []
    page = env.call("GET", f"/2.0/repositories/{WS}").json()
    assert [v["slug"] for v in page["values"]] == [REPO]


def test_commits_each_with_include_exclude_and_get(env: Env) -> None:
    base = env.call("GET", f"{R}/refs/branches/main").json()["target"]["hash"]
    first = env.commit("feature/a", {"a.txt": "1"}, "first")
    second = env.commit("feature/a", {"a.txt": "2"}, "second")
    commits = env.cloud().repositories.get(WS, REPO).commits
    assert [c.hash for c in commits.each("feature/a")] == [second, first, base]
    assert [c.hash for c in commits.each(include="feature/a", exclude="main")] == [second, first]
    got = commits.get(first[:12])
    assert (got.hash, got.message, [p.hash for p in got.parents()]) == (first, "first\n", [base])
    assert got.author.nickname == "dev"
    assert got.date is not None
    form = env.call("POST", f"{R}/commits", data={"include": second, "exclude": first}).json()
    assert [c["hash"] for c in form["values"]] == [second]


def test_build_statuses_through_the_client(env: Env) -> None:
    repo = env.cloud("controller").repositories.get(WS, REPO)
    commit = repo.commits.get(repo.branches.get("main").hash)
    first = commit.add_build("ci", url="https://ci.example/1", description="tests", state="INPROGRESS")
    assert (first["type"], first["state"], first["commit"]["hash"]) == ("build", "INPROGRESS", commit.hash)
    again = commit.add_build("ci", url="https://ci.example/2", state="SUCCESSFUL", refname="main")
    assert again["uuid"] == first["uuid"] and again["created_on"] == first["created_on"]
    builds = list(commit.builds())
    assert len(builds) == 1 and builds[0].successful and builds[0].website == "https://ci.example/2"
    build = commit.get_build("ci")
    assert (build.key, build.refname, build.commit) == ("ci", "main", commit.hash)
    build.update(state="FAILED", url="https://ci.example/3")
    assert commit.get_build("ci").failed
    bad = env.call(
        "POST", f"{R}/commit/{commit.hash}/statuses/build", json={"key": "x", "url": "u", "state": "DONE"}
    )
    assert bad.status_code == 400 and "state" in bad.json()["error"]["fields"]
    missing = env.call(
        "POST", f"{R}/commit/{commit.hash}/statuses/build", json={"key": "x", "state": "FAILED"}
    )
    assert missing.status_code == 400 and missing.json()["error"]["fields"] == {
        "url": ["This field is required."]
    }


def test_pull_request_review_cycle_and_merge_commit(env: Env) -> None:
    head = env.commit("feature/login", {"login.py": "ok = True\n"}, "Add login")
    po_uuid = env.call("GET", "/2.0/user", "po").json()["uuid"]
    dev = env.cloud("dev").repositories.get(WS, REPO)
    pr = dev.pullrequests.create(
        "Login", "feature/login", "develop", description="Adds login", reviewers=[po_uuid]
    )
    assert (pr.is_open, pr.source_branch, pr.destination_branch) == (True, "feature/login", "develop")
    assert pr.source_commit == head[:12] and len(pr.destination_commit) == 12
    assert pr.get_data("merge_commit") is None and pr.get_data("closed_by") is None
    assert [r.nickname for r in pr.reviewers()] == ["po"]
    [reviewer] = list(pr.participants())
    assert (reviewer.is_reviewer, reviewer.has_approved, reviewer.user.nickname) == (True, False, "po")

    assert pr.approve()["approved"] is True  # the author may approve on Bitbucket Cloud
    po_pr = env.cloud("po").repositories.get(WS, REPO).pullrequests.get(pr.id)
    assert po_pr.request_changes()["state"] == "changes_requested"
    po_pr.unrequest_changes()
    participant = po_pr.approve()
    assert (participant["type"], participant["role"], participant["state"]) == (
        "participant",
        "REVIEWER",
        "approved",
    )
    states = {
        p.user.nickname: (p.is_reviewer, p.has_approved) for p in dev.pullrequests.get(pr.id).participants()
    }
    assert states == {"dev": (False, True), "po": (True, True)}
    pr.unapprove()
    states = {p.user.nickname: p.has_approved for p in dev.pullrequests.get(pr.id).participants()}
    assert states == {"dev": False, "po": True}

    posted = pr.comment("Looks good")
    assert [c.raw for c in dev.pullrequests.get(pr.id).comments()] == ["Looks good"]
    one = env.call("GET", f"{R}/pullrequests/{pr.id}/comments/{posted['id']}").json()
    assert (one["type"], one["content"]["raw"], one["user"]["nickname"]) == (
        "pullrequest_comment",
        "Looks good",
        "dev",
    )
    assert dev.pullrequests.get(pr.id).comment_count == 1

    develop_before = dev.branches.get("develop").hash
    merged = dev.pullrequests.get(pr.id).merge(merge_strategy="merge_commit")
    assert merged["state"] == "MERGED" and merged["closed_by"]["nickname"] == "dev"
    merge_commit = dev.commits.get(merged["merge_commit"]["hash"])
    assert [p.hash for p in merge_commit.parents()] == [develop_before, head]
    assert dev.branches.get("develop").hash == merge_commit.hash
    assert [c.hash for c in dev.pullrequests.get(pr.id).commits] == [head]

    activity = env.call("GET", f"{R}/pullrequests/{pr.id}/activity").json()["values"]
    kinds = [next(k for k in a if k != "pull_request") for a in activity]
    assert kinds[0] == "update" and activity[0]["update"]["state"] == "MERGED"
    assert "approval" in kinds and "comment" in kinds and "changes_requested" in kinds
    late = env.call("POST", f"{R}/pullrequests/{pr.id}/approve", "po")
    assert late.status_code == 400 and late.json()["type"] == "error"


def test_pull_request_listing_filters_and_decline(env: Env) -> None:
    env.commit("feature/one", {"one.txt": "1"})
    env.commit("feature/two", {"two.txt": "2"})
    prs = env.cloud().repositories.get(WS, REPO).pullrequests
    one = prs.create("One", "feature/one", "develop")
    two = prs.create("Two", "feature/two", "main")
    prs.get(two.id).decline()
    assert prs.get(two.id).is_declined
    listed = env.call("GET", f"{R}/pullrequests").json()
    assert [v["id"] for v in listed["values"]] == [one.id] and listed["pagelen"] == 10
    both = env.call(
        "GET", f"{R}/pullrequests", params=[("state", "OPEN"), ("state", "DECLINED"), ("sort", "-id")]
    )
    assert [v["id"] for v in both.json()["values"]] == [two.id, one.id]
    q = 'destination.branch.name="main" AND state="DECLINED"'
    assert [v["id"] for v in env.call("GET", f"{R}/pullrequests", params={"q": q}).json()["values"]] == [
        two.id
    ]
    q = 'source.branch.name = "feature/one"'
    assert [pr.id for pr in prs.each(q=q)] == [one.id]
    broken = env.call("GET", f"{R}/pullrequests", params={"q": 'state=="OPEN"'})
    assert broken.status_code == 400 and broken.json()["error"]["message"] == "Invalid query"
    unknown = env.call("GET", f"{R}/pullrequests", params={"q": 'colour="red"'})
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]["message"]
    assert env.call("GET", f"{R}/pullrequests", params={"sort": "colour"}).status_code == 400

    po_uuid = env.call("GET", "/2.0/user", "po").json()["uuid"]
    update = {
        "title": "One, renamed",
        "destination": {"branch": {"name": "main"}},
        "reviewers": [{"uuid": po_uuid}],
    }
    updated = env.call("PUT", f"{R}/pullrequests/{one.id}", json=update).json()
    assert (updated["title"], updated["destination"]["branch"]["name"]) == ("One, renamed", "main")
    assert [p["role"] for p in updated["participants"]] == ["REVIEWER"]
    closed = env.call("PUT", f"{R}/pullrequests/{two.id}", json={"title": "x"})
    assert closed.status_code == 400


def test_concurrent_commits_to_one_branch_all_land(env: Env) -> None:
    results: list[str] = []

    def worker(i: int) -> None:
        results.append(env.commit("develop", {f"c{i}.txt": str(i)}, f"c{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = env.call("GET", f"{R}/commits/develop", params={"pagelen": 20}).json()["values"]
    assert {c["hash"] for c in history} >= set(results) and len(results) == 6
    tip = env.call("GET", f"{R}/refs/branches/develop").json()["target"]["hash"]
    assert env.call("GET", f"{R}/src/{tip}/c0.txt").content == b"0"


def test_pull_request_create_errors_name_the_field(env: Env) -> None:
    env.commit("feature/e", {"e.txt": "e"})
    missing_title = env.call("POST", f"{R}/pullrequests", json={"source": {"branch": {"name": "feature/e"}}})
    assert missing_title.status_code == 400
    assert missing_title.json()["error"]["fields"] == {"title": ["This field is required."]}
    missing_source = env.call("POST", f"{R}/pullrequests", json={"title": "t"})
    assert missing_source.json()["error"]["fields"] == {"source": ["This field is required."]}
    no_branch = env.call(
        "POST", f"{R}/pullrequests", json={"title": "t", "source": {"branch": {"name": "nope"}}}
    )
    assert no_branch.status_code == 400 and "source" in no_branch.json()["error"]["fields"]
    nothing = env.call(
        "POST", f"{R}/pullrequests", json={"title": "t", "source": {"branch": {"name": "develop"}}}
    )
    assert (
        nothing.status_code == 400
        and nothing.json()["error"]["message"] == "There are no changes to be pulled"
    )


def test_fast_forward_squash_and_close_source_branch(env: Env) -> None:
    head = env.commit("feature/ff", {"ff.txt": "ff"})
    prs = env.cloud().repositories.get(WS, REPO).pullrequests
    pr = prs.create("FF", "feature/ff", "develop", close_source_branch=True)
    assert pr.merge(merge_strategy="fast_forward")["merge_commit"]["hash"] == head[:12]
    assert env.call("GET", f"{R}/refs/branches/develop").json()["target"]["hash"] == head
    assert env.call("GET", f"{R}/refs/branches/feature/ff").status_code == 404  # closed

    env.commit("feature/late", {"late.txt": "1"})
    env.commit("main", {"main.txt": "moved"})
    late = prs.create("Late", "feature/late", "main")
    refused = env.call("POST", f"{R}/pullrequests/{late.id}/merge", json={"merge_strategy": "fast_forward"})
    assert refused.status_code == 400 and "fast-forward" in refused.json()["error"]["message"]
    squashed = env.call("POST", f"{R}/pullrequests/{late.id}/merge", json={"merge_strategy": "squash"}).json()
    commit = env.call("GET", f"{R}/commit/{squashed['merge_commit']['hash']}").json()
    assert len(commit["parents"]) == 1 and squashed["state"] == "MERGED"
    tree = env.call("GET", f"{R}/src/main/late.txt")
    assert tree.status_code == 200 and tree.content == b"1"


# -- plain HTTP ------------------------------------------------------------------------------


def test_post_src_makes_a_commit_on_the_branch(env: Env) -> None:
    before = env.call("GET", f"{R}/refs/branches/develop").json()["target"]["hash"]
    r = env.call(
        "POST",
        f"{R}/src",
        "dev",
        data={
            "message": "Tweak",
            "branch": "develop",
            "author": "Dana D <dana@elsewhere.example>",
            "files": "lib/util.py",
        },
        files={"app.py": ("app.py", b"print('bye')\n")},
    )
    assert r.status_code == 201 and r.text == ""
    sha = r.headers["Location"].rsplit("/", 1)[1]
    branch = env.call("GET", f"{R}/refs/branches/develop").json()
    assert branch["target"]["hash"] == sha and branch["target"]["parents"][0]["hash"] == before
    assert branch["target"]["author"] == {"type": "author", "raw": "Dana D <dana@elsewhere.example>"}
    assert env.call("GET", f"{R}/src/{sha}/app.py").content == b"print('bye')\n"
    assert env.call("GET", f"{R}/src/{sha}/lib/util.py").status_code == 404
    stale = env.call("POST", f"{R}/src", data={"branch": "develop", "parents": before, "x.txt": "x"})
    assert stale.status_code == 409
    as_json = env.call("POST", f"{R}/src", json={"message": "m"})
    assert as_json.status_code == 400


def test_archive_download(env: Env) -> None:
    sha = env.commit("develop", {"new.txt": "fresh\n"})
    archive = f"{env.web_url}/{WS}/{REPO}/get/develop.tar.gz"
    r = requests.get(archive, auth=env.auth("dev"), timeout=10)
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        top = f"{WS}-{REPO}-{sha[:12]}"
        assert {f"{top}/new.txt", f"{top}/app.py", f"{top}/lib/util.py"} <= names
        member = tar.extractfile(f"{top}/new.txt")
        assert member is not None and member.read() == b"fresh\n"
    data, full = env.bb.archive(WS, REPO, "develop")
    assert (data, full) == (r.content, sha)
    assert requests.get(archive, timeout=10).status_code == 401
    nope = f"{env.web_url}/{WS}/{REPO}/get/nope.tar.gz"
    assert requests.get(nope, auth=env.auth("dev"), timeout=10).status_code == 404
    # the archive is not on the API host any more, as bitbucket.org is not api.bitbucket.org
    assert env.call("GET", f"/{WS}/{REPO}/get/develop.tar.gz").status_code == 404


def test_auth_and_error_bodies(env: Env) -> None:
    anonymous = env.call("GET", R, None)
    assert anonymous.status_code == 401 and anonymous.json()["type"] == "error"
    wrong = env.call("GET", R, None, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"]
    by_email = requests.get(f"{env.url}/2.0/user", auth=("po@whisper.example", env.tokens["po"]), timeout=5)
    assert by_email.status_code == 200 and by_email.json()["nickname"] == "po"
    assert (
        requests.get(f"{env.url}{R}", auth=("po@whisper.example", env.tokens["dev"]), timeout=5).status_code
        == 401
    )
    me = env.call("GET", "/2.0/user", "readonly").json()
    assert me["type"] == "user" and me["nickname"] == "readonly" and me["uuid"].startswith("{")

    forbidden = env.call(
        "POST", f"{R}/refs/branches", "readonly", json={"name": "x", "target": {"hash": "main"}}
    )
    assert forbidden.status_code == 403 and forbidden.json()["type"] == "error"
    assert env.call("GET", f"{R}/refs/branches", "readonly").status_code == 200

    # A reader may review a pull request (Bitbucket Cloud lets anyone who can read approve and
    # comment: the controller must be the one to ignore such approvals), but not merge it.
    env.commit("feature/reader", {"reader.txt": "r"})
    pr = env.cloud().repositories.get(WS, REPO).pullrequests.create("Reader", "feature/reader", "develop")
    assert env.call("POST", f"{R}/pullrequests/{pr.id}/approve", "readonly").status_code == 200
    comment = env.call(
        "POST", f"{R}/pullrequests/{pr.id}/comments", "readonly", json={"content": {"raw": "ok"}}
    )
    assert comment.status_code == 201
    assert env.call("POST", f"{R}/pullrequests/{pr.id}/merge", "readonly", json={}).status_code == 403

    for path, message in (
        (f"/2.0/repositories/{WS}/nope", "You may not have access"),
        (f"{R}/refs/branches/nope", "nope"),
        (f"{R}/pullrequests/99", "99"),
        (f"{R}/commit/abcdef1234", "Commit not found"),
        ("/2.0/nothing/here", "Resource not found"),
    ):
        r = env.call("GET", path)
        assert r.status_code == 404 and r.json()["type"] == "error", path
        assert message in r.json()["error"]["message"], path

    malformed = env.call(
        "POST", f"{R}/pullrequests", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["error"]["message"] == "Bad request"
    wrong_method = env.call("PATCH", f"{R}/refs/branches")
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"
    assert "GET" in wrong_method.headers["Allow"]


def test_pagination_bounds_next_and_rate_limit_headers(env: Env) -> None:
    for i in range(3):
        env.call("POST", f"{R}/refs/branches", json={"name": f"b{i}", "target": {"hash": "main"}})
    page = env.call("GET", f"{R}/refs/branches", params={"pagelen": 2})
    body = page.json()
    assert (body["pagelen"], body["size"], body["page"], len(body["values"])) == (2, 5, 1, 2)
    assert body["next"].startswith(f"{env.url}{R}/refs/branches?")
    second = env.call("GET", body["next"][len(env.url) :]).json()
    assert second["page"] == 2 and [v["name"] for v in second["values"]] == ["b2", "develop"]
    assert page.headers["X-RateLimit-Limit"] == "1000"
    assert page.headers["X-RateLimit-Resource"] and page.headers["X-RateLimit-NearLimit"] == "false"
    for bad in ("0", "101", "ten"):
        r = env.call("GET", f"{R}/refs/branches", params={"pagelen": bad})
        assert r.status_code == 400 and r.json()["type"] == "error", bad
    assert env.call("GET", f"{R}/pullrequests", params={"pagelen": 51}).status_code == 400
    assert env.call("GET", f"{R}/pullrequests", params={"pagelen": 50}).status_code == 200
    env.commit("develop", {"more.txt": "more"})
    commits = env.call("GET", f"{R}/commits", params={"pagelen": 1}).json()
    assert len(commits["values"]) == 1 and commits["next"].startswith(f"{env.url}{R}/commits?")


def test_rate_limit_answers_429_in_plain_text(tmp_path: Path) -> None:
    server, bb, web = start(tmp_path, rate_limit=3)
    try:
        auth = ("dev@whisper.example", bb.tokens()["dev"])
        answers = [requests.get(f"{server.url}{R}", auth=auth, timeout=5) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[2].headers["X-RateLimit-NearLimit"] == "true"
        assert (
            answers[3].headers["Content-Type"].startswith("text/plain")
            and "Retry-After" not in answers[3].headers
        )
        other = ("po@whisper.example", bb.tokens()["po"])
        assert requests.get(f"{server.url}{R}", auth=other, timeout=5).status_code == 200
        assert requests.get(f"{server.url}/2.0/user", auth=auth, timeout=5).status_code == 200
    finally:
        stop(server, bb, web)


def test_injected_faults_answer_like_bitbucket(env: Env) -> None:
    env.server.faults.add(kind="error", status=500, path=f"{R}/refs/*")
    r = env.call("GET", f"{R}/refs/branches")
    assert r.status_code == 500 and r.json()["type"] == "error"
    env.server.faults.add(kind="rate_limit", path=f"{R}")
    limited = env.call("GET", R)
    assert limited.status_code == 429 and limited.text == "Rate limit for this resource has been exceeded"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "bb"
    server, bb, web = start(state)
    tokens = bb.tokens()
    try:
        env = Env(server, bb, tokens, state, web)
        env.commit("feature/keep", {"keep.txt": "k"})
        pr = env.cloud().repositories.get(WS, REPO).pullrequests.create("Keep", "feature/keep", "develop")
        pr.approve()
        main = env.call("GET", f"{R}/refs/branches/main").json()["target"]["hash"]
        env.call(
            "POST",
            f"{R}/commit/{main}/statuses/build",
            json={"key": "k", "url": "https://x", "state": "SUCCESSFUL"},
        )
        hook = env.call(
            "POST",
            f"{R}/hooks",
            "controller",
            json={"url": "http://127.0.0.1:9/", "events": ["repo:push"], "secret": "s"},
        )
        assert hook.status_code == 201
        access_tokens, bots = bb.access_tokens(), dict(bb.store.bots)
    finally:
        stop(server, bb, web)
    server, bb, web = start(state)  # seeds again: must change nothing
    try:
        assert bb.tokens() == tokens
        assert bb.access_tokens() == access_tokens and bb.store.bots == bots
        env = Env(server, bb, tokens, state, web)
        again = env.cloud().repositories.get(WS, REPO).pullrequests.get(pr.id)
        assert again.title == "Keep" and [p.has_approved for p in again.participants()] == [True]
        assert env.call("GET", f"{R}/commit/{main}/statuses/build/k").json()["state"] == "SUCCESSFUL"
        [h] = env.call("GET", f"{R}/hooks", "controller").json()["values"]
        assert h["secret_set"] is True and "secret" not in h and h["url"] == "http://127.0.0.1:9/"
        assert again.url.startswith(server.url)
        assert {b["name"] for b in env.call("GET", f"{R}/refs/branches").json()["values"]} >= {"feature/keep"}
    finally:
        stop(server, bb, web)


# -- webhooks ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A tiny local HTTP server that records deliveries; the first ``fail`` requests get a 500."""

    fail: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append({"headers": dict(self.headers), "body": body})
                    failing = receiver.fail > 0
                    receiver.fail -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries, got {len(self.received)}")


def test_signature_test_vector() -> None:
    expected = "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"
    assert signature("It's a Secret to Everybody", b"Hello World!") == expected


def test_webhooks_are_delivered_signed_and_in_order(env: Env) -> None:
    receiver = Receiver()
    httpd = receiver.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        events = ["repo:push", "pullrequest:created", "pullrequest:approved", "pullrequest:fulfilled"]
        created = env.call(
            "POST",
            f"{R}/hooks",
            "controller",
            json={"url": url, "description": "ci", "events": events, "secret": "s3"},
        )
        hook = created.json()
        assert (
            created.status_code == 201
            and hook["type"] == "webhook_subscription"
            and hook["secret_set"] is True
        )
        assert "secret" not in hook
        client_hook = env.cloud("controller").repositories.get(WS, REPO).hooks.get(hook["uuid"])
        assert client_hook.events() == sorted(events)

        head = env.commit("feature/hook", {"h.txt": "h"})
        pr = env.cloud().repositories.get(WS, REPO).pullrequests.create("Hook", "feature/hook", "develop")
        env.cloud("po").repositories.get(WS, REPO).pullrequests.get(pr.id).approve()
        pr.merge()
        got = receiver.wait_for(5)
        keys = [d["headers"]["X-Event-Key"] for d in got]
        assert keys == [
            "repo:push",
            "pullrequest:created",
            "pullrequest:approved",
            "repo:push",
            "pullrequest:fulfilled",
        ]
        for d in got:
            h = d["headers"]
            assert h["X-Hub-Signature"] == signature("s3", d["body"])
            assert h["User-Agent"] == "Bitbucket-Webhooks/2.0" and h["Content-Type"] == "application/json"
            assert h["X-Hook-UUID"] == hook["uuid"].strip("{}") and h["X-Attempt-Number"] == "1"
            assert h["X-Request-UUID"]
        push = json.loads(got[0]["body"])
        [change] = push["push"]["changes"]
        assert change["created"] is True and change["old"] is None and change["new"]["target"]["hash"] == head
        assert [c["hash"] for c in change["commits"]] == [head] and push["actor"]["nickname"] == "dev"
        approved = json.loads(got[2]["body"])
        assert approved["approval"]["user"]["nickname"] == "po" and approved["pullrequest"]["id"] == pr.id
        fulfilled = json.loads(got[4]["body"])
        assert (
            fulfilled["pullrequest"]["state"] == "MERGED" and fulfilled["pullrequest"]["merge_commit"]["hash"]
        )
        assert fulfilled["repository"]["full_name"] == f"{WS}/{REPO}"
        assert env.bb.wait_for_deliveries(5)
        log = env.bb.deliveries(hook["uuid"])
        assert [d["outcome"] for d in log] == ["delivered"] * 5

        env.call("PUT", f"{R}/hooks/{hook['uuid']}", "controller", json={"active": False})
        env.commit("develop", {"quiet.txt": "q"})
        assert env.bb.wait_for_deliveries(5)
        assert len(receiver.received) == 5
        assert env.call("DELETE", f"{R}/hooks/{hook['uuid']}", "controller").status_code == 204
        assert env.call("GET", f"{R}/hooks/{hook['uuid']}", "controller").status_code == 404
    finally:
        httpd.shutdown()


def test_webhook_retries_after_a_500(env: Env) -> None:
    receiver = Receiver(fail=2)
    httpd = receiver.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        hook = env.call("POST", f"{R}/hooks", "controller", json={"url": url, "events": ["repo:push"]}).json()
        assert hook["secret_set"] is False
        env.commit("develop", {"r.txt": "r"})
        got = receiver.wait_for(3)
        assert [d["headers"]["X-Attempt-Number"] for d in got] == ["1", "2", "3"]
        assert len({d["headers"]["X-Request-UUID"] for d in got}) == 1
        assert "X-Hub-Signature" not in got[0]["headers"]
        assert env.bb.wait_for_deliveries(5)
        [delivery] = env.bb.deliveries(hook["uuid"])
        assert [a["status"] for a in delivery["attempts"]] == [500, 500, 200] and delivery[
            "outcome"
        ] == "delivered"
        bad = env.call("POST", f"{R}/hooks", "controller", json={"url": url, "events": ["repo:explode"]})
        assert bad.status_code == 400 and "events" in bad.json()["error"]["fields"]
        with pytest.raises(HTTPError):
            env.cloud("readonly").repositories.get(WS, REPO).hooks.create(url, "x", ["repo:push"])
    finally:
        httpd.shutdown()
