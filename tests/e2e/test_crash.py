"""The controller killed at each step of the path in turn, and restarted.

Each run is a real ``pipeline tick --settle`` process. PIPELINE_CRASH_AT makes it die (``os._exit``,
no cleanup, as under SIGKILL) just before or just after it records a given event: "before:X" is the
worst moment for an effect, done on Heroku or Bitbucket but not yet recorded; "after:X" is right
after a transition. The test restarts the controller after every crash, removing the points it has
already died at, until the release reaches its end. Every release must end where an uninterrupted
one would, and Heroku must have seen exactly one build, one promotion and at most one rollback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from e2e_world import World

from pipeline.model import State
from sandbox.demo import health_file

HAPPY_PATH_POINTS = [
    "after:ReleaseDetected",
    "after:GatePassed",
    "after:StagingDeployStarted",
    "after:StagingBuildRequested",
    "before:StagingBuildStarted",
    "after:StagingBuildStarted",
    "after:StagingReleased",
    "after:StagingVerified",
    "before:ReleasePullRequestOpened",
    "after:ReleasePullRequestOpened",
    "after:ApprovalRequested",
    "after:ApprovalCounted",
    "after:ReleaseApproved",
    "after:BackupStarted",
    "after:BackupRequested",
    "before:BackupCaptureStarted",
    "after:BackupCaptureStarted",
    "after:BackupCaptured",
    "after:PromotionRequested",
    "before:PromotionStarted",
    "after:PromotionStarted",
    "after:ProductionReleased",
    "before:Released",
    "after:Released",
    "before:ReleasePullRequestMerged",
    "after:ReleasePullRequestMerged",
]
ROLLBACK_POINTS = [
    "after:ProductionReleased",
    "after:ProductionVerificationFailed",
    "after:RollbackRequested",
    "before:RollbackStarted",
    "after:RollbackStarted",
    "before:RolledBack",
    "after:RolledBack",
]
CRASHED = 70


def crash_until(world: World, points: list[str], settled: Callable[[], bool]) -> list[str]:
    """Run ``pipeline tick --settle`` again and again, each run dying at the next of ``points`` not
    yet hit, until a run ends without crashing and ``settled()`` (which may act, as a person
    would, and answer False to go on) says it is done; return the points it crashed at, in order."""
    remaining = list(points)
    crashed_at: list[str] = []
    env = dict(os.environ) | world.env
    command = [sys.executable, "-m", "pipeline.cli", "tick", "--settle", "--timeout", "120"]
    for _ in range(len(points) + 10):
        env["PIPELINE_CRASH_AT"] = ",".join(remaining)
        run = subprocess.run(
            [*command, "--config", str(world.config_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if run.returncode == CRASHED:
            point = run.stderr.split("crashing at ", 1)[1].split()[0]
            crashed_at.append(point)
            remaining = remaining[remaining.index(point) + 1 :]
            continue
        assert run.returncode == 0, run.stderr
        if settled():
            return crashed_at
    raise AssertionError(f"never finished; crashed at {crashed_at}")


def run_until_final(world: World, commit: str, points: list[str]) -> list[str]:
    """Run the controller, dying at ``points``, approving as the PO when asked, until the release of
    ``commit`` is final; return the points it crashed at, in order."""

    def final() -> bool:
        release = world.release(commit)
        if release.state.is_final:
            return True
        if release.state == State.AWAITING_APPROVAL and not release.approvals:
            world.people.approve(user="po")
            return False
        raise AssertionError(f"settled in {release.state} without crashing: {release.reason}")

    return crash_until(world, points, final)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_release_survives_a_crash_at_every_step(world: World) -> None:
    """Releases one after another, each dying at every point of the path not yet hit (a point can
    become unreachable once an earlier crash sends the release down the adoption path), until the
    controller has died at every point at least once."""
    not_hit = list(HAPPY_PATH_POINTS)
    for n in range(3):
        merged = world.people.merge_change(f"Crash-proof change {n}", {f"CRASH{n}.md": b"survives\n"})
        promotions_before = len(world.promotions())
        backups_before = len(world.production_backups())
        crashed_at = run_until_final(world, merged.commit, not_hit)
        not_hit = [p for p in not_hit if p not in crashed_at]

        release = world.release(merged.commit)
        assert release.state == State.BACKUPS_VERIFIED, (crashed_at, release.reason)
        assert len(world.heroku_builds(merged.commit)) == 1
        assert len(world.promotions()) == promotions_before + 1
        assert len(world.production_backups()) == backups_before + 1  # captured once, before promotion
        assert world.production_releases()[-1]["slug_id"] == release.staging_slug_id
        assert world.people.pull_request(release.pull_request_id or 0)["state"] == "MERGED"
        assert world.people.statuses(merged.commit)["pipeline/production"]["state"] == "SUCCESSFUL"
        if not not_hit:
            break
    assert not_hit == [], f"never died at {not_hit}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_rollback_survives_a_crash_at_every_step(world: World) -> None:
    not_hit = list(ROLLBACK_POINTS)
    for n in range(3):
        before = world.production_releases()[-1]
        promotions_before = len(world.promotions())
        files = health_file("fail-on", app="claims-production") | {f"BREAK{n}.md": b"breaks production\n"}
        merged = world.people.merge_change(f"Breaks production {n}", files)
        crashed_at = run_until_final(world, merged.commit, not_hit)
        not_hit = [p for p in not_hit if p not in crashed_at]

        release = world.release(merged.commit)
        assert release.state == State.ROLLED_BACK, (crashed_at, release.reason)
        after_promotion = [r for r in world.production_releases() if r["version"] > before["version"]]
        rollbacks = [r for r in after_promotion if r["description"].startswith("Rollback to")]
        assert len(rollbacks) == 1 and world.production_releases()[-1]["slug_id"] == before["slug_id"]
        assert len(world.promotions()) == promotions_before + 1
        assert len(world.heroku_builds(merged.commit)) == 1
        assert world.people.pull_request(release.pull_request_id or 0)["state"] == "DECLINED"
        assert world.people.statuses(merged.commit)["pipeline/production"]["state"] == "FAILED"
        assert world.services.store.environment(world.settings.name, "production").locked
        world.services.unlock("production", "crash drill: the next release may go")  # as ops would
        if not not_hit:
            break
    assert not_hit == [], f"never died at {not_hit}"


MANUAL_ROLLBACK_POINTS = [
    "before:HerokuRollbackRequested",
    "after:HerokuRollbackRequested",
    "before:RollbackStarted",
    "after:RollbackStarted",
    "before:RollbackReleased",
    "after:RollbackReleased",
    "before:RollbackVerified",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_rollback_asked_for_by_a_person_survives_a_crash_at_every_step(world: World) -> None:
    for n in range(2):
        merged = world.people.merge_change(f"Good change {n}", {f"GOOD{n}.md": b"good\n"})
        run_until_final(world, merged.commit, [])
    plan = world.services.plan_rollback("production")
    asked = world.services.request_rollback(plan, "crash drill")
    crashed_at = crash_until(
        world, MANUAL_ROLLBACK_POINTS, lambda: world.services.store.rollback(asked.id or 0).state.is_final
    )
    done = world.services.store.rollback(asked.id or 0)
    assert crashed_at == MANUAL_ROLLBACK_POINTS and done.state.value == "verified", (crashed_at, done.outcome)
    rollbacks = [
        r for r in world.production_releases() if r["description"] == f"Rollback to v{plan.target.version}"
    ]
    assert len(rollbacks) == 1  # asked of Heroku once, whatever the crashes
    assert world.production_releases()[-1]["slug_id"] == plan.target.slug_id
