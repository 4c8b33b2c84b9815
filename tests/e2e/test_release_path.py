"""The release path end to end, through the sandbox over real HTTP with the real client libraries."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from e2e_world import World

from pipeline import bootstrap, config
from pipeline.errors import ConfigInvalid
from pipeline.model import State
from sandbox.demo import breaking_change, health_file

GOOD = {"CHANGELOG.md": b"- Claims can carry a note\n"}


@pytest.mark.parametrize("database_kind", ["sqlite", "postgresql"], indirect=True)
def test_a_good_merge_goes_to_production_after_the_product_owner_approves(world: World) -> None:
    merged = world.people.merge_change("Add a note to claims", GOOD)
    world.settle()

    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    assert release.staging_release_version is not None and release.staging_verified_at is not None
    # The change is on staging, and the commit says so in Bitbucket.
    statuses = world.people.statuses(merged.commit)
    assert statuses["pipeline/staging"]["state"] == "SUCCESSFUL"
    assert statuses["pipeline/staging"]["url"].startswith("http://127.0.0.1")
    # The release pull request is pinned at the commit and carries the release notes.
    pr = world.people.pull_request(release.pull_request_id or 0)
    assert pr["source"]["branch"]["name"] == f"release/{release.id}-{release.commit[:7]}"
    assert merged.commit.startswith(pr["source"]["commit"]["hash"])
    assert pr["destination"]["branch"]["name"] == "main"
    assert f"#{merged.pull_request} Add a note to claims" in pr["description"]
    assert "waiting for 1 more approval(s) from po" in release.reason
    # What Bitbucket shows: the release pull request describes where the release is and what is
    # in it; production's status waits for approval, linking it; the merged pull request is told.
    description = pr["description"]
    assert "**waiting for approval**" in description and "- Waiting on: waiting for 1 more" in description
    assert f"{release.staging_app} v{release.staging_release_version}, verified" in description
    assert "## Commits since `main` at" in description and merged.commit[:12] in description
    production_status = world.people.statuses(merged.commit)["pipeline/production"]
    assert production_status["state"] == "INPROGRESS" and production_status["url"] == release.pull_request_url
    (told,) = [c["content"]["raw"] for c in world.people.comments(merged.pull_request)]
    assert told.startswith(f"**Release {release.id}** reached staging") and "claims-staging v" in told

    world.people.approve(user="po")
    world.settle()

    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert [a.user.username for a in release.counted_approvals] == ["po"]
    assert release.backup_id is not None
    # Build once: production runs the very slug verified on staging, through one promotion.
    production = world.production_releases()[-1]
    assert production["version"] == release.production_release_version
    assert production["slug_id"] == release.staging_slug_id
    assert len(world.heroku_builds(merged.commit)) == 1
    assert len(world.promotions()) == 1
    assert world.people.statuses(merged.commit)["pipeline/production"]["state"] == "SUCCESSFUL"
    merged_release = world.people.pull_request(release.pull_request_id or 0)
    assert merged_release["state"] == "MERGED"
    assert "**released**" in merged_release["description"]  # its last word, written before the merge
    assert (
        "po approved at" in merged_release["description"] and "**counted**" in merged_release["description"]
    )
    told = [c["content"]["raw"] for c in world.people.comments(merged.pull_request)]
    assert len(told) == 2 and told[1].startswith(f"**Release {release.id}** reached production")
    assert f"claims-production v{release.production_release_version}" in told[1]
    assert world.events(release)[:4] == [
        "ReleaseDetected",
        "GatePassed",
        "StagingDeployStarted",
        "StagingBuildRequested",
    ]

    history = world.services.history()
    assert history[0]["id"] == release.id
    entry = history[0]
    assert re.fullmatch(r"[0-9a-f]{40}", entry["commit"])
    assert entry["state"] == "backups_verified"
    assert entry["approvals"] == [{"user": "po", "at": entry["approvals"][0]["at"]}]
    assert entry["staging"] == {"app": "claims-staging", "release": release.staging_release_version}
    assert entry["production"] == {"app": "claims-production", "release": release.production_release_version}
    assert entry["backup"]["id"] == release.backup_id
    assert entry["created_at"].endswith("Z")

    shown = world.services.show(release.id or 0)
    assert shown["notes"]["base_commit"] == release.base_commit and shown["notes"]["since"] is None
    assert f"#{merged.pull_request} Add a note to claims" in shown["notes"]["text"]

    status = world.services.status()
    live = {e["stage"]: e["release"] for e in status["environments"]}
    assert live["production"]["commit"] == merged.commit
    assert live["production"]["approved_by"] == ["po"]
    assert status["releases"] == []


def test_a_failed_required_build_stops_the_candidate_at_the_gate(world: World) -> None:
    merged = world.people.merge_change("Break the tests", GOOD, build="INPROGRESS")
    world.settle()
    assert world.release(merged.commit).state == State.DETECTED  # waits for CI, does not deploy
    world.people.report_build(merged.commit, "FAILED")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.GATE_FAILED
    assert "tests FAILED" in release.reason
    assert world.heroku_builds(merged.commit) == []


def test_a_merge_that_breaks_the_health_check_stops_at_staging(world: World) -> None:
    merged = world.people.merge_change("Break health", breaking_change("fail"))
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.STAGING_FAILED, release.reason
    assert "HTTP" in release.reason or "500" in release.reason
    kinds = world.events(release)
    assert kinds.count("StagingCheckFailed") == 3 and kinds[-1] == "StagingVerificationFailed"  # retries: 3
    assert world.people.statuses(merged.commit)["pipeline/staging"]["state"] == "FAILED"
    assert release.pull_request_id is None and world.people.release_pull_request() is None


def test_a_failing_migration_in_the_release_phase_stops_at_staging(world: World) -> None:
    merged = world.people.merge_change("Broken migration", breaking_change("migration"))
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.STAGING_FAILED
    assert "release phase failed" in release.reason


def test_a_release_whose_production_check_fails_is_rolled_back(world: World) -> None:
    before = world.production_releases()[-1]
    merged = world.people.merge_change(
        "Works on staging only", health_file("fail-on", app="claims-production")
    )
    world.settle()
    assert world.release(merged.commit).state == State.AWAITING_APPROVAL
    world.people.approve(user="po")
    world.settle()

    release = world.release(merged.commit)
    assert release.state == State.ROLLED_BACK, release.reason
    assert release.previous_release_version == before["version"]
    rollback = world.production_releases()[-1]
    assert rollback["version"] == release.rollback_release_version
    assert rollback["slug_id"] == before["slug_id"]  # the release it replaced runs again
    assert "rolled claims-production back" in release.reason
    assert world.people.statuses(merged.commit)["pipeline/production"]["state"] == "FAILED"
    assert world.people.pull_request(release.pull_request_id or 0)["state"] == "DECLINED"
    told = [c["content"]["raw"] for c in world.people.comments(merged.pull_request)]
    assert told[-1].startswith(f"**Release {release.id}** was rolled back from production")
    assert "HEALTH says fail on claims-production" in told[-1]  # why, not what it was waiting on


def test_approvals_that_do_not_count_are_recorded_with_the_reason(world: World) -> None:
    merged = world.people.merge_change("Written by the PO", GOOD, user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL
    world.people.approve(user="readonly")  # not listed in approval.approvers
    world.people.approve(user="po")  # listed, but wrote a commit of this release
    world.settle()

    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL
    why = {a.user.username: a.reason for a in release.approvals if not a.counted}
    assert "not an approver" in why["readonly"]
    assert "wrote commit" in why["po"]
    assert {"ApprovalIgnored"} <= set(world.events(release))
    shown = world.services.show(release.id or 0)
    assert {a["user"] for a in shown["approvals_seen"] if not a["counted"]} == {"readonly", "po"}


def test_an_approval_given_before_the_release_branch_moved_does_not_count(world: World) -> None:
    merged = world.people.merge_change("Pinned", GOOD)
    world.settle()
    release = world.release(merged.commit)
    world.people.approve(user="po")
    # Someone pushes to the release branch before the controller saw the approval.
    world.people.commit(
        release.release_branch or "", {"SNEAKY.txt": b"not verified\n"}, "Sneak in", user="ops"
    )
    world.settle()

    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL
    (seen,) = release.approvals
    assert not seen.counted and "points at" in seen.reason and "bound to the commit" in seen.reason
    assert world.promotions() == []


def test_a_newer_verified_candidate_supersedes_an_unapproved_release(world: World) -> None:
    first = world.people.merge_change("First change", GOOD)
    world.settle()
    older = world.release(first.commit)
    assert older.state == State.AWAITING_APPROVAL

    second = world.people.merge_change("Second change", {"SECOND.md": b"second\n"})
    world.settle()

    older = world.release(first.commit)
    newer = world.release(second.commit)
    assert older.state == State.SUPERSEDED
    assert newer.state == State.AWAITING_APPROVAL
    assert older.superseded_by == newer.id
    declined = world.people.pull_request(older.pull_request_id or 0)
    assert declined["state"] == "DECLINED"
    # The newer release's notes carry both changes: nothing of the superseded one is lost.
    notes = world.people.pull_request(newer.pull_request_id or 0)["description"]
    assert "First change" in notes and "Second change" in notes
    assert newer.pull_request_url and newer.pull_request_url in older.reason


def test_passing_failures_and_lost_answers_are_retried_without_doing_anything_twice(world: World) -> None:
    faults = world.sandbox.faults
    faults.add(service="bitbucket-web", method="POST", path="*/git-upload-pack", kind="error", status=503)
    faults.add(service="heroku", method="POST", path="/apps/*/builds", kind="error", status=503)
    # Heroku does these, but the answer never reaches the controller.
    faults.add(service="heroku-data", method="POST", path="*/backups", kind="lost")
    faults.add(service="heroku", method="POST", path="/pipeline-promotions", kind="lost")
    merged = world.people.merge_change("Through the storm", GOOD)
    world.settle()
    assert world.release(merged.commit).state == State.AWAITING_APPROVAL
    world.people.approve(user="po")
    world.settle()

    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert len(world.heroku_builds(merged.commit)) == 1
    assert len(world.promotions()) == 1
    assert len(world.production_backups()) == 1
    assert world.sandbox.faults.list() == []  # every fault fired


def test_approvers_must_be_members_of_the_workspace(world: World, tmp_path: Path) -> None:
    text = world.config_path.read_text().replace("approvers: [po]", "approvers: [po, nobody]")
    (tmp_path / "pipeline.yml").write_text(text)
    shutil.copytree(world.config_path.parent / "environments", tmp_path / "environments")
    settings = config.load(tmp_path / "pipeline.yml", env=world.env)
    with pytest.raises(ConfigInvalid) as raised:
        bootstrap.services(settings)
    (problem,) = raised.value.problems
    assert problem.key == "approval.approvers[1]" and "no member of the workspace" in problem.message
