"""``BitbucketCloud`` against the sandbox's Bitbucket Cloud over real HTTP, with the real
atlassian-python-api client: every ``ports.SourceControl`` method, its idempotency promises and
its error translation. A developer's actions (commits through ``POST /src``, merges into branches
the test owns, approvals) are plain HTTP calls with the seeded users' tokens.

Tests share one sandbox: each works on branches named after itself and never on develop/main."""

from __future__ import annotations

import io
import re
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import pytest
import requests
from adapter_support import assert_secret_free

from pipeline.adapters.bitbucket import BitbucketCloud, BitbucketCredential
from pipeline.errors import NotFound, Permanent, Temporary
from sandbox.core import Sandbox

WS, REPO = "whisper", "claims"
R = f"/2.0/repositories/{WS}/{REPO}"
UNLINKED_AUTHOR = "Ghost Writer <ghost@nowhere.example>"


@dataclass
class Dev:
    """A person acting on the sandbox's Bitbucket by plain HTTP (a developer, the Product Owner)."""

    url: str
    tokens: dict[str, str]
    emails: dict[str, str]

    def call(self, method: str, path: str, user: str = "dev", **kwargs: Any) -> requests.Response:
        auth = (self.emails[user], self.tokens[user])  # an API token goes with the account's e-mail
        return requests.request(method, f"{self.url}{path}", auth=auth, timeout=15, **kwargs)

    def commit(
        self,
        branch: str,
        files: dict[str, str],
        parent: str,
        message: str = "change",
        author: str = "Dana Developer <dev@whisper.example>",
    ) -> str:
        """A commit on ``branch`` (created at ``parent`` when it does not exist); its hash."""
        data = {"branch": branch, "parents": parent, "message": message, "author": author, **files}
        answer = self.call("POST", f"{R}/src", data=data)
        assert answer.status_code == 201, answer.text
        return answer.headers["Location"].rsplit("/", 1)[1]

    def head(self, branch: str) -> str:
        answer = self.call("GET", f"{R}/refs/branches/{branch}")
        assert answer.status_code == 200, answer.text
        return str(answer.json()["target"]["hash"])

    def open_pr(self, source: str, destination: str, title: str) -> int:
        body = {
            "title": title,
            "source": {"branch": {"name": source}},
            "destination": {"branch": {"name": destination}},
        }
        answer = self.call("POST", f"{R}/pullrequests", json=body)
        assert answer.status_code in (200, 201), answer.text
        return int(answer.json()["id"])

    def merge(self, pr_id: int) -> str:
        answer = self.call("POST", f"{R}/pullrequests/{pr_id}/merge", json={"merge_strategy": "merge_commit"})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["merge_commit"]["hash"])

    def approve(self, pr_id: int, user: str = "po") -> None:
        answer = self.call("POST", f"{R}/pullrequests/{pr_id}/approve", user=user)
        assert answer.status_code == 200, answer.text


@pytest.fixture
def dev(info: dict[str, Any]) -> Dev:
    return Dev(info["bitbucket"]["url"], info["bitbucket"]["users"], info["bitbucket"]["emails"])


@pytest.fixture
def token(info: dict[str, Any]) -> str:
    return str(info["bitbucket"]["users"]["controller"])


def adapter(
    info: dict[str, Any], token: str, timeout: float = 10.0, repository: str = REPO, user: str = "controller"
) -> BitbucketCloud:
    email = info["bitbucket"]["emails"][user]
    credential = BitbucketCredential(token, email)
    return BitbucketCloud(info["bitbucket"]["url"], credential, WS, repository, timeout=timeout)


@pytest.fixture
def bb(info: dict[str, Any], token: str) -> BitbucketCloud:
    """A fresh adapter per test (it reads the repository once, on first use)."""
    return adapter(info, token)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A branch-name prefix of this test's own."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"adapter/{test}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def base(bb: BitbucketCloud, dev: Dev, name: str) -> Iterator[str]:
    """A branch of this test's own, created at main's head, standing in for develop."""
    branch = f"{name}/base"
    bb.create_branch(branch, dev.head("main"))
    yield branch


# -- access --------------------------------------------------------------------------------------


def test_check_access_returns_the_controller_account(bb: BitbucketCloud) -> None:
    account = bb.check_access()
    assert account is not None and account.username == "controller" and account.uuid and account.account_id


def test_a_refused_token_is_permanent_and_names_the_variable_not_the_token(info: dict[str, Any]) -> None:
    bad = "ATATT3x-definitely-not-a-valid-token-0123456789"
    bb = adapter(info, bad)
    with pytest.raises(Permanent) as caught:
        bb.check_access()
    assert caught.value.status == 401
    assert "BITBUCKET_TOKEN" in str(caught.value)
    assert_secret_free(caught.value, bad)
    with pytest.raises(Permanent) as again:  # any method, not only check_access
        bb.branch_head("main")
    assert "BITBUCKET_TOKEN" in str(again.value)
    assert_secret_free(again.value, bad)
    assert bad not in repr(bb)


def test_a_missing_repository_is_named(info: dict[str, Any], token: str) -> None:
    with pytest.raises(NotFound) as caught:
        adapter(info, token, repository="no-such-repo").check_access()
    message = str(caught.value)
    assert "whisper/no-such-repo" in message and "BITBUCKET_TOKEN" in message
    assert_secret_free(caught.value, token)


def test_a_read_only_token_is_refused_writes_with_a_permanent_error(info: dict[str, Any], dev: Dev) -> None:
    readonly = info["bitbucket"]["users"]["readonly"]
    bb = adapter(info, readonly, user="readonly")
    account = bb.check_access()
    assert account is not None and account.username == "readonly"
    with pytest.raises(Permanent) as caught:
        bb.set_status(dev.head("main"), "adapter-ro", "SUCCESSFUL", "n", "d", "https://ci.example/1")
    assert caught.value.status == 403
    assert "BITBUCKET_TOKEN" in str(caught.value)
    assert_secret_free(caught.value, readonly)


# -- branches and commits ------------------------------------------------------------------------


def test_branch_head_is_the_full_hash_or_none(bb: BitbucketCloud, dev: Dev, name: str) -> None:
    head = bb.branch_head("main")
    assert head is not None and len(head) == 40 and head == dev.head("main")
    assert bb.branch_head(f"{name}/missing") is None


def test_commits_between_newest_first_with_unlinked_authors(bb: BitbucketCloud, dev: Dev, name: str) -> None:
    start = dev.head("main")
    branch = f"{name}/feature"
    first = dev.commit(branch, {"notes/one.txt": "1"}, start, "First change")
    second = dev.commit(branch, {"notes/two.txt": "2"}, first, "Second change", author=UNLINKED_AUTHOR)
    third = dev.commit(branch, {"notes/three.txt": "3"}, second, "Third change")

    commits = bb.commits_between(third, start)
    assert [c.hash for c in commits] == [third, second, first]
    assert [c.message.strip() for c in commits] == ["Third change", "Second change", "First change"]
    linked, unlinked = commits[0], commits[1]
    assert linked.author is not None and linked.author.username == "dev"
    assert linked.author.uuid and linked.author.account_id and linked.author.display_name == "Dana Developer"
    assert unlinked.author is None and unlinked.author_raw == UNLINKED_AUTHOR
    assert all(c.date.tzinfo is not None and c.date.utcoffset() == UTC.utcoffset(None) for c in commits)

    assert [c.hash for c in bb.commits_between(branch, start, limit=2)] == [third, second]
    assert bb.commits_between(third, third) == []
    assert bb.commits_between(third, start, limit=0) == []


def test_commits_between_follows_pages(bb: BitbucketCloud, dev: Dev, name: str) -> None:
    start = dev.head("main")
    branch = f"{name}/many"
    tip = start
    made = []
    for n in range(5):
        tip = dev.commit(branch, {f"many/{n}.txt": str(n)}, tip, f"Change {n}")
        made.append(tip)
    # pagelen is min(100, limit): a limit of 3 reads pages of 3 and follows ``next``
    assert [c.hash for c in bb.commits_between(tip, start, limit=3)] == made[::-1][:3]
    assert [c.hash for c in bb.commits_between(tip, start, limit=200)] == made[::-1]


def test_create_branch_is_idempotent_and_refuses_another_commit(
    bb: BitbucketCloud, dev: Dev, name: str
) -> None:
    main = dev.head("main")
    other = dev.commit(f"{name}/other", {"other.txt": "x"}, main, "Other")
    branch = f"{name}/release"
    bb.create_branch(branch, main)
    bb.create_branch(branch, main)  # the same again: nothing to do
    assert bb.branch_head(branch) == main
    with pytest.raises(Permanent) as caught:
        bb.create_branch(branch, other)
    assert branch in str(caught.value) and main[:12] in str(caught.value)
    assert bb.branch_head(branch) == main


# -- statuses and archives -----------------------------------------------------------------------


def test_statuses_are_set_overwritten_and_read(bb: BitbucketCloud, dev: Dev, name: str) -> None:
    commit = dev.commit(f"{name}/ci", {"ci.txt": "ci"}, dev.head("main"), "For CI")
    assert bb.build_statuses(commit) == {}
    bb.set_status(commit, "ci/tests", "INPROGRESS", "Tests", "running", "https://ci.example/1")
    bb.set_status(commit, "ci/lint", "FAILED", "Lint", "2 problems", "https://ci.example/2")
    bb.set_status(commit, "ci/tests", "SUCCESSFUL", "Tests", "passed", "https://ci.example/1")  # same key
    assert bb.build_statuses(commit) == {"ci/tests": "SUCCESSFUL", "ci/lint": "FAILED"}
    with pytest.raises(Permanent):
        bb.set_status(commit, "ci/tests", "GREEN", "Tests", "?", "https://ci.example/1")


def test_archive_is_the_commits_gzipped_tarball(bb: BitbucketCloud, dev: Dev, name: str) -> None:
    commit = dev.commit(f"{name}/arch", {"ARCHIVED.txt": name}, dev.head("main"), "To archive")
    tarball = bb.archive(commit)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        marker = tar.extractfile(members["ARCHIVED.txt"])
        assert marker is not None and marker.read().decode() == name
        assert "Procfile" in members
    with pytest.raises(NotFound):
        bb.archive("0" * 40)


# -- pull requests -------------------------------------------------------------------------------


def test_pull_request_lifecycle_open_find_read_update_comment_decline(
    bb: BitbucketCloud, dev: Dev, name: str, base: str
) -> None:
    source = f"{name}/release"
    tip = dev.commit(source, {"release.txt": "r"}, dev.head(base), "Release change")
    assert bb.find_pull_request(source, base) is None

    opened = bb.open_pull_request(source, base, "Release 1", "Notes v1")
    assert opened.state == "OPEN" and opened.title == "Release 1"
    assert opened.source_branch == source and opened.destination_branch == base
    assert tip.startswith(opened.source_commit) and len(opened.source_commit) >= 12
    assert opened.author is not None and opened.author.username == "controller"
    assert opened.url.endswith(f"/pull-requests/{opened.id}")

    again = bb.open_pull_request(source, base, "Another title", "Other notes")
    assert again.id == opened.id and again.title == "Release 1"  # returned as is, not overwritten
    found = bb.find_pull_request(source, base)
    assert found is not None and found.id == opened.id

    dev.approve(opened.id, "po")
    read = bb.pull_request(opened.id)
    (approval,) = [p for p in read.participants if p.approved]
    assert approval.user.username == "po" and approval.state == "approved"
    assert approval.participated_on is not None and approval.participated_on.tzinfo is not None

    bb.update_pull_request(opened.id, "Release 1", "Notes v2")
    bb.update_pull_request(opened.id, "Release 1", "Notes v2")  # idempotent
    answer = dev.call("GET", f"{R}/pullrequests/{opened.id}").json()
    assert answer["description"] == "Notes v2" and answer["title"] == "Release 1"

    bb.comment(opened.id, "Staging verified.")
    assert [(c.user.username if c.user else None, c.text) for c in bb.comments(opened.id)] == [
        ("controller", "Staging verified.")
    ]
    bb.decline_pull_request(opened.id, "Superseded by a newer candidate.")
    bb.decline_pull_request(opened.id, "Superseded by a newer candidate.")  # already declined: as is
    declined = bb.pull_request(opened.id)
    assert declined.state == "DECLINED"
    assert declined.closed_by is not None and declined.closed_by.username == "controller"
    comments = dev.call("GET", f"{R}/pullrequests/{opened.id}/comments").json()["values"]
    assert [c["content"]["raw"] for c in comments] == [
        "Staging verified.",
        "Superseded by a newer candidate.",
    ]

    found = bb.find_pull_request(source, base)  # any state
    assert found is not None and found.id == opened.id and found.state == "DECLINED"
    with pytest.raises(Permanent):
        bb.merge_pull_request(opened.id, "Merge a declined one")


def test_activity_shows_where_the_source_pointed_at_each_update(
    bb: BitbucketCloud, dev: Dev, name: str, base: str
) -> None:
    source = f"{name}/release"
    first = dev.commit(source, {"release.txt": "r1"}, dev.head(base), "Release change")
    opened = bb.open_pull_request(source, base, "Release 1", "Notes")
    dev.approve(opened.id, "po")
    moved = dev.commit(source, {"release.txt": "r2"}, first, "Sneak in", author="Ops <ops@whisper.example>")
    dev.call("POST", f"{R}/pullrequests/{opened.id}/comments", user="po", json={"content": {"raw": "Why?"}})
    answer = dev.call("POST", f"{R}/pullrequests/{opened.id}/request-changes", user="po")
    assert answer.status_code == 200, answer.text

    entries = bb.activity(opened.id)
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)  # newest first
    updates = [e for e in entries if e.kind == "update"]
    assert first.startswith(updates[-1].source_commit) and updates[-1].state == "OPEN"  # when opened
    assert moved.startswith(updates[0].source_commit)  # the push that moved the branch
    assert {e.kind for e in entries} >= {"update", "approval", "comment", "changes_requested"}
    (said,) = [e for e in entries if e.kind == "comment"]
    assert said.user is not None and said.user.username == "po" and said.text == "Why?"

    answer = dev.call("POST", f"{R}/pullrequests/{opened.id}/decline", user="po", json={"message": "Not now"})
    assert answer.status_code == 200, answer.text
    declined = bb.pull_request(opened.id)
    assert declined.state == "DECLINED" and declined.reason == "Not now"
    assert bb.activity(opened.id)[0].state == "DECLINED" and bb.activity(opened.id)[0].text == "Not now"


def test_find_pull_request_is_the_newest(bb: BitbucketCloud, dev: Dev, name: str, base: str) -> None:
    source = f"{name}/release"
    dev.commit(source, {"r.txt": "1"}, dev.head(base), "One")
    first = bb.open_pull_request(source, base, "First", "")
    bb.decline_pull_request(first.id, "No.")
    second = bb.open_pull_request(source, base, "Second", "")
    assert second.id != first.id
    found = bb.find_pull_request(source, base)
    assert found is not None and found.id == second.id and found.state == "OPEN"


def test_merge_is_a_merge_commit_and_idempotent(bb: BitbucketCloud, dev: Dev, name: str, base: str) -> None:
    source = f"{name}/release"
    tip = dev.commit(source, {"merge.txt": "m"}, dev.head(base), "To merge")
    pr = bb.open_pull_request(source, base, "Release", "")
    merge = bb.merge_pull_request(pr.id, f"Release {tip[:7]}")
    merged = merge.commit
    assert merge.status == "merged" and len(merged) == 40 and merged == bb.branch_head(base)
    assert bb.merge_pull_request(pr.id, "again") == merge  # already merged: its merge commit
    after = bb.pull_request(pr.id)
    assert after.state == "MERGED"
    (merge_commit,) = bb.commits_between(merged, tip, limit=5)
    assert merge_commit.message.startswith(f"Release {tip[:7]}")
    with pytest.raises(Permanent):
        bb.decline_pull_request(pr.id, "A merged pull request cannot be declined")


def test_a_conflicting_merge_is_permanent(bb: BitbucketCloud, dev: Dev, name: str, base: str) -> None:
    start = dev.head(base)
    dev.commit(f"{name}/left", {"conflict.txt": "left\n"}, start, "Left")
    dev.commit(f"{name}/right", {"conflict.txt": "right\n"}, start, "Right")
    left = bb.open_pull_request(f"{name}/left", base, "Left", "")
    right = bb.open_pull_request(f"{name}/right", base, "Right", "")
    bb.merge_pull_request(left.id, "Left first")
    with pytest.raises(Permanent) as caught:
        bb.merge_pull_request(right.id, "Right second")
    assert caught.value.status == 409 and "conflict" in str(caught.value).lower()


def test_merged_pull_requests_are_matched_by_merge_commit_prefix(
    bb: BitbucketCloud, dev: Dev, name: str, base: str
) -> None:
    before = dev.head(base)
    merges: list[tuple[int, str, str]] = []  # (pull request, title, 12-character merge hash)
    for n in range(2):
        branch = f"{name}/feature-{n}"
        dev.commit(branch, {f"feature-{n}.txt": str(n)}, dev.head(base), f"Feature {n}")
        pr_id = dev.open_pr(branch, base, f"Feature {n}")
        merges.append((pr_id, f"Feature {n}", dev.merge(pr_id)))
    commits = [c.hash for c in bb.commits_between(base, before)]
    changes = bb.merged_pull_requests(base, commits)
    assert [c.id for c in changes] == [merges[1][0], merges[0][0]]  # newest first
    for change, (pr_id, title, short) in zip(changes, reversed(merges), strict=True):
        assert len(short) == 12
        assert len(change.merge_commit) == 40 and change.merge_commit.startswith(short)
        assert change.merge_commit in commits
        assert change.title == title
        assert change.author is not None and change.author.username == "dev"
        assert change.url.endswith(f"/pull-requests/{pr_id}")
    assert bb.merged_pull_requests(base, [before]) == []
    assert bb.merged_pull_requests(base, []) == []
    assert bb.merged_pull_requests(f"{name}/nowhere", commits) == []


# -- error translation ---------------------------------------------------------------------------


def test_a_missing_pull_request_is_not_found(bb: BitbucketCloud, token: str) -> None:
    with pytest.raises(NotFound) as caught:
        bb.pull_request(987654)
    assert caught.value.status == 404 and "987654" in str(caught.value)
    assert_secret_free(caught.value, token)


def test_injected_503_is_temporary(sandbox: Sandbox, bb: BitbucketCloud, token: str) -> None:
    sandbox.faults.add(service="bitbucket", method="GET", path=f"{R}/refs/branches/main", kind="error")
    with pytest.raises(Temporary) as caught:
        bb.branch_head("main")
    assert caught.value.status == 503 and caught.value.retry_after > 0
    assert_secret_free(caught.value, token)
    assert bb.branch_head("main") is not None  # the fault was used up


def test_injected_429_is_temporary_with_a_retry_delay(
    sandbox: Sandbox, bb: BitbucketCloud, token: str
) -> None:
    sandbox.faults.add(service="bitbucket", path=f"{R}/pullrequests", kind="rate_limit")
    with pytest.raises(Temporary) as caught:
        bb.find_pull_request("adapter/none", "main")
    assert caught.value.status == 429
    assert caught.value.retry_after >= 1  # Bitbucket's 429 says nothing: our default
    assert_secret_free(caught.value, token)


def test_a_merge_that_timed_out_555_is_temporary(
    sandbox: Sandbox, bb: BitbucketCloud, dev: Dev, name: str, base: str
) -> None:
    source = f"{name}/release"
    dev.commit(source, {"slow.txt": "s"}, dev.head(base), "Slow merge")
    pr = bb.open_pull_request(source, base, "Slow", "")
    sandbox.faults.add(
        service="bitbucket", method="POST", path=f"{R}/pullrequests/{pr.id}/merge", kind="error", status=555
    )
    with pytest.raises(Temporary) as caught:
        bb.merge_pull_request(pr.id, "Slow")
    assert caught.value.status == 555
    assert bb.pull_request(pr.id).state == "OPEN"
    retried = bb.merge_pull_request(pr.id, "Slow, retried")
    assert retried.status == "merged" and len(retried.commit) == 40


def test_a_slow_or_dropped_answer_is_temporary(sandbox: Sandbox, info: dict[str, Any], token: str) -> None:
    bb = adapter(info, token, timeout=1.0)
    bb.check_access()  # reads the repository once
    sandbox.faults.add(service="bitbucket", path=f"{R}/refs/branches/main", kind="slow", delay=2.5)
    with pytest.raises(Temporary) as slow:
        bb.branch_head("main")
    assert slow.value.status is None and "main" in str(slow.value)
    sandbox.faults.add(service="bitbucket", path=f"{R}/refs/branches/main", kind="drop")
    with pytest.raises(Temporary) as dropped:
        bb.branch_head("main")
    assert_secret_free(slow.value, token)
    assert_secret_free(dropped.value, token)
