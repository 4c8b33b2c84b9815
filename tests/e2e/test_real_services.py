"""A release through the sandbox as Bitbucket and Heroku really are (the first real day): with each
kind of Bitbucket token, the request log shows what the controller sent - an API token only ever as
Basic e-mail:token, an access token as Bearer, nothing to the website host but git, Bearer on every
Heroku call; the release pull request asks the approvers to review and its description is current
at every state; a merge Bitbucket runs as a task is posted once, even across a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from e2e_world import World

from pipeline.model import State

GIT_PATHS = ("/info/refs", "/git-upload-pack")


def ours(world: World, service: str) -> list[dict[str, Any]]:
    """What the controller sent ``service`` (people and CI send other User-Agents)."""
    return [r for r in world.sandbox.requests(service) if r["user_agent"].startswith("release-controller/")]


def use(world: World, mode: str) -> None:
    box = world.sandbox.info()["bitbucket"]
    if mode == "api_token":
        world.use_credential(box["users"]["controller"], box["emails"]["controller"])
    else:
        world.use_credential(box["access_tokens"][mode], approvers=[world.account_id("po")])


def described(world: World, pr_id: int) -> str:
    return str(world.people.pull_request(pr_id)["description"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["api_token", "repository", "workspace"])
def test_a_release_goes_all_the_way_with_each_kind_of_bitbucket_token(world: World, mode: str) -> None:
    use(world, mode)
    world.sandbox.clear_requests()
    merged = world.people.merge_change(f"Claims list ({mode})", {"LIST.md": mode.encode()})
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    pr_id = release.pull_request_id or 0
    pr = world.people.pull_request(pr_id)
    po = world.sandbox.bitbucket.store.users["po"]
    assert [r["uuid"] for r in pr["reviewers"]] == [po["uuid"]]  # Bitbucket tells the Product Owner
    assert {(p["user"]["uuid"], p["role"]) for p in pr["participants"]} >= {(po["uuid"], "REVIEWER")}
    assert "**waiting for approval**" in described(world, pr_id)

    world.people.approve(user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert len(world.heroku_builds(merged.commit)) == 1 and len(world.promotions()) == 1
    assert len(world.production_backups()) == 1
    final = world.people.pull_request(pr_id)
    assert final["state"] == "MERGED" and "**released**" in final["description"]

    api = ours(world, "bitbucket")
    assert api and {r["auth"] for r in api} == {"basic" if mode == "api_token" else "bearer"}
    puts = [r for r in api if r["method"] == "PUT" and r["path"].endswith(f"/pullrequests/{pr_id}")]
    assert puts and all(r["status"] == 200 for r in puts)  # every PUT carried the title
    assert not [r for r in api if r["path"] == "/2.0/user"] or mode == "api_token"
    web = world.sandbox.requests("bitbucket-web")
    assert web and all(r["path"].endswith(GIT_PATHS) and r["auth"] == "basic" for r in web), web
    for service in ("heroku", "heroku-data"):
        calls = [r for r in ours(world, service) if not r["path"].startswith(("/blobs/", "/streams/"))]
        assert calls and {r["auth"] for r in calls} == {"bearer"}, {r["auth"] for r in calls}


@pytest.mark.slow
def test_a_merge_bitbucket_runs_as_a_task_is_posted_once(world: World) -> None:
    merged = world.people.merge_change("Claims sort", {"SORT.md": b"sort\n"})
    world.settle()
    world.sandbox.bitbucket.merge_mode = "async"  # the release pull request's merge (not the developer's)
    world.people.approve(user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert release.merge_task is None
    kinds = world.events(release)
    assert "ReleaseMergeStarted" in kinds and "ReleasePullRequestMerged" in kinds
    posts = [r for r in ours(world, "bitbucket") if r["method"] == "POST" and r["path"].endswith("/merge")]
    assert len(posts) == 1
    assert world.people.pull_request(release.pull_request_id or 0)["state"] == "MERGED"


@pytest.mark.slow
def test_a_crash_while_a_merge_task_is_pending_still_merges_once(world: World) -> None:
    merged = world.people.merge_change("Claims filter", {"FILTER.md": b"filter\n"})
    world.settle()
    world.sandbox.bitbucket.merge_mode = "async"
    world.sandbox.bitbucket.merger.delay = 3.0
    world.people.approve(user="po")
    env = dict(os.environ) | world.env
    command = [sys.executable, "-m", "pipeline.cli", "tick", "--settle", "--timeout", "120"]
    for point in ("after:ReleaseMergeRequested", "after:ReleaseMergeStarted", ""):
        env["PIPELINE_CRASH_AT"] = point
        run = subprocess.run(
            [*command, "--config", str(world.config_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode in (0, 70), run.stderr
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    posts = [r for r in ours(world, "bitbucket") if r["method"] == "POST" and r["path"].endswith("/merge")]
    assert len(posts) == 1, posts
    assert world.events(release).count("ReleasePullRequestMerged") == 1
