"""Verification that catches bad releases, through the sandbox: a soak catches an app that fails a
few seconds after it starts, a crashed dyno is caught, the release phase's output is kept, and a
rollback is verified and locks production until a person clears it."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_world import World

from pipeline.model import State
from sandbox.demo import health_file

QUICK = {"path": "/health", "retries": 3, "interval": "300ms", "timeout": "5s"}
# Production keeps checking for 8 s after the first pass: a failure in that time is caught.
SOAKED_HTTP: list[dict[str, Any]] = [{"http": QUICK | {"interval": "1s", "soak": "8s"}}]


def merged_and_approved(world: World, title: str, files: dict[str, bytes]) -> str:
    merged = world.people.merge_change(title, files)
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    world.people.approve(user="po")
    world.settle()
    return merged.commit


def kinds(world: World, commit: str) -> list[str]:
    return world.events(world.release(commit))


@pytest.mark.slow
def test_a_health_check_that_fails_after_a_few_seconds_is_caught_by_the_soak_and_rolled_back(
    world: World,
) -> None:
    world.configure_stage("production", checks=SOAKED_HTTP)
    before = world.production_releases()[-1]
    commit = merged_and_approved(world, "Fails after 4 seconds", health_file("fail-after", seconds=4))

    release = world.release(commit)
    assert release.state == State.ROLLED_BACK, release.reason
    events = world.services.store.events(release.id or 0)
    (passed,) = [e for e in events if e.kind == "ProductionCheckPassed"]
    assert "holding it until" in passed.reason  # it passed first: only the soak caught it
    (failed,) = [e for e in events if e.kind == "ProductionVerificationFailed"]
    assert "http /health failed" in failed.reason and "into its 8s soak" in failed.reason
    assert "500" in failed.reason
    # Rolled back to the release it replaced, and that one verified (with the same soak).
    assert world.production_releases()[-1]["slug_id"] == before["slug_id"]
    assert "which passed its checks" in release.reason and release.rollback_verified_at is not None
    assert world.people.statuses(commit)["pipeline/production"]["state"] == "FAILED"
    locked = world.services.store.environment(world.settings.name, "production")
    assert locked.locked and locked.locked_by == "controller" and "soak" in locked.lock_reason


@pytest.mark.slow
def test_a_crashed_dyno_is_caught_and_rolled_back(world: World) -> None:
    world.configure_stage("production", checks=[{"dynos": {"soak": "8s", "interval": "1s"}}, {"http": QUICK}])
    before = world.production_releases()[-1]
    commit = merged_and_approved(world, "Crashes after 3 seconds", health_file("crash-after", seconds=3))

    release = world.release(commit)
    assert release.state == State.ROLLED_BACK, release.reason
    (failed,) = [
        e for e in world.services.store.events(release.id or 0) if e.kind == "ProductionVerificationFailed"
    ]
    assert "crashed" in failed.reason and f"v{release.production_release_version}" in failed.reason
    assert world.production_releases()[-1]["slug_id"] == before["slug_id"]


def test_the_release_phase_output_is_kept_in_the_history(world: World) -> None:
    world.configure_stage("staging", checks=[{"release_phase": {}}, {"http": QUICK}])
    merged = world.people.merge_change("A quiet change", {"QUIET.md": b"quiet\n"})
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    (kept,) = [e for e in world.services.store.events(release.id or 0) if e.kind == "StagingCheckPassed"]
    assert kept.reason.startswith("release_phase: v") and "succeeded" in kept.reason
    assert "release: no migrations to apply" in kept.detail  # what the demo app's release phase printed
    shown = world.services.show(release.id or 0)
    assert any("release: no migrations to apply" in e["detail"] for e in shown["events"])


def test_the_lock_a_rollback_leaves_holds_until_someone_clears_it(world: World) -> None:
    broken = merged_and_approved(
        world, "Works on staging only", health_file("fail-on", app="claims-production")
    )
    assert world.release(broken).state == State.ROLLED_BACK

    good = merged_and_approved(world, "The fix", health_file("ok"))
    release = world.release(good)
    assert release.state == State.APPROVED, release.reason
    assert "production is locked" in release.reason and "pipeline unlock production" in release.reason
    status = {e["stage"]: e for e in world.services.status()["environments"]}
    assert status["production"]["locked"]["by"] == "controller"
    assert world.promotions() and len(world.promotions()) == 1  # only the broken one went

    world.services.unlock("production", "the fix is reviewed; let it go")
    world.settle()
    release = world.release(good)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    log = world.services.log("production")
    kinds_ = [e["kind"] for e in log]
    assert kinds_.index("EnvironmentUnlocked") < kinds_.index("EnvironmentLocked")  # newest first
    unlocked = next(e for e in log if e["kind"] == "EnvironmentUnlocked")
    assert unlocked["actor"] == "tests" and "the fix is reviewed" in unlocked["reason"]
