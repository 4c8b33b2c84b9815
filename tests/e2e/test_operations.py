"""What ops do on the bad days, through the ``pipeline`` command against the sandbox: roll back in
one command (shown, confirmed, verified, locked, recorded), the rules that need --force, freezes and
deploy windows that hold an approved release, the recorded override, one deployment per environment
at a time, and bad input refused with exit 2 and nothing changed."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from cli_support import environment, errors, ok, pipeline
from e2e_world import World, wait_until

from pipeline.model import RollbackState, State
from sandbox.demo import migration_file

BAD_INPUT = 2


def release_to_production(world: World, title: str, files: dict[str, bytes]) -> str:
    merged = world.people.merge_change(title, files)
    world.settle()
    assert world.release(merged.commit).state == State.AWAITING_APPROVAL, world.release(merged.commit).reason
    world.people.approve(user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    return merged.commit


def production_version(world: World) -> int:
    return int(world.production_releases()[-1]["version"])


@pytest.mark.slow
def test_a_manual_rollback_to_a_chosen_version_is_shown_confirmed_verified_locked_and_recorded(
    world: World,
) -> None:
    first = release_to_production(world, "Claims can be exported", {"EXPORT.md": b"export\n"})
    first_version = production_version(world)
    first_slug = world.production_releases()[-1]["slug_id"]
    second = release_to_production(world, "Exports as CSV", {"CSV.md": b"csv\n"})
    second_release = world.release(second)
    # Its notes count from the release before it, also once it is released itself.
    notes = world.people.pull_request(second_release.pull_request_id or 0)["description"]
    assert f"## Commits since the last production release (release {world.release(first).id};" in notes

    # Asked, shown, declined at the prompt: nothing changes.
    args = ("rollback", "production", "--to", f"v{first_version}", "--reason", "CSV export corrupts totals")
    declined = pipeline(world, *args, input="n\n")
    assert declined.returncode == 1, declined.stderr
    assert f"to   v{first_version}" in declined.stdout and "Nothing was changed." in declined.stdout
    assert f"(release {second_release.id} {second[:12]})" in declined.stdout  # what is taken out
    assert "Exports as CSV" in declined.stdout  # the commits taken out
    assert world.services.store.rollbacks(world.settings.name) == []

    done = ok(pipeline(world, *args, input="y\n"))
    assert "verified" in done.stdout and "production stays locked" in done.stdout
    assert world.production_releases()[-1]["slug_id"] == first_slug  # the chosen release runs again
    (rollback,) = world.services.store.rollbacks(world.settings.name)
    assert rollback.state == RollbackState.VERIFIED and rollback.requested_by == "tests"
    assert rollback.to_version == first_version and rollback.forced == ()
    taken = world.release(second)
    assert taken.state == State.ROLLED_BACK and "rolled back by tests" in taken.reason
    assert world.release(first).state == State.BACKUPS_VERIFIED  # what runs again stays released
    assert world.people.statuses(second)["pipeline/production"]["state"] == "FAILED"
    told = [c["content"]["raw"] for c in world.people.comments(taken.changes[0].id)]
    assert "was rolled back from production" in told[-1] and "CSV export corrupts totals" in told[-1]
    state = world.services.store.environment(world.settings.name, "production")
    assert state.locked and state.locked_by == "tests"
    kinds = [e["kind"] for e in world.services.log("production")]
    for kind in (
        "RollbackRequested",
        "EnvironmentLocked",
        "RollbackStarted",
        "RollbackReleased",
        "RollbackVerified",
    ):
        assert kind in kinds, kinds
    # The controller does not undo it: production stays where ops put it until unlocked.
    world.settle()
    assert world.production_releases()[-1]["slug_id"] == first_slug


@pytest.mark.slow
def test_a_rollback_to_a_never_verified_release_or_across_a_migration_needs_force(world: World) -> None:
    seeded = production_version(world)  # the sandbox's seed deploy: never verified by the controller
    release_to_production(world, "Claims get notes", migration_file("add_notes"))

    refused = pipeline(world, "rollback", "production", "--reason", "notes are slow", "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "needs --force" in refused.stderr and "Nothing was changed." in refused.stderr
    assert f"v{seeded} never passed verification on production" in refused.stdout
    assert "migrated the database" in refused.stdout and "003_add_notes.sql" in refused.stdout
    assert world.services.store.rollbacks(world.settings.name) == []
    assert not world.services.store.environment(world.settings.name, "production").locked

    forced = ok(pipeline(world, "rollback", "production", "--reason", "notes are slow", "--yes", "--force"))
    (rollback,) = world.services.store.rollbacks(world.settings.name)
    assert len(rollback.forced) == 2 and rollback.state == RollbackState.VERIFIED, forced.stdout
    (requested,) = [e for e in world.services.log("production") if e["kind"] == "RollbackRequested"]
    assert "forced past" in requested["reason"]


def test_a_freeze_holds_an_approved_release_and_an_override_is_recorded(world: World) -> None:
    frozen = ok(pipeline(world, "freeze", "production", "--reason", "year-end close", "--until", "2h"))
    assert "production is frozen until" in frozen.stdout
    merged = world.people.merge_change("Waits for the thaw", {"THAW.md": b"thaw\n"})
    world.settle()
    world.people.approve(user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.APPROVED and "production is frozen until" in release.reason
    assert "year-end close" in release.reason and world.promotions() == []
    status = ok(pipeline(world, "status"))
    assert "FROZEN until" in status.stdout and "year-end close" in status.stdout

    promoted = ok(pipeline(world, "promote", "production", "--now", "--reason", "the fix must ship today"))
    assert f"release {release.id}" in promoted.stdout
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    events = world.services.store.events(release.id or 0)
    started = next(e for e in events if e.kind == "BackupStarted")
    assert "overridden by tests" in started.reason and "the fix must ship today" in started.reason
    kinds = [e["kind"] for e in world.services.log("production")]
    assert {"EnvironmentFrozen", "OverrideGranted", "OverrideUsed"} <= set(kinds)
    assert world.services.store.environment(world.settings.name, "production").override_release is None
    assert ok(pipeline(world, "unfreeze", "production")).stdout.strip() == "production unfrozen."
    assert "was not frozen" in ok(pipeline(world, "unfreeze", "production")).stdout


def test_a_closed_deploy_window_holds_an_approved_release_and_status_says_until_when(world: World) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%a").lower()
    windows = {"timezone": "UTC", "allow": [{"days": [tomorrow], "hours": "09:00-10:00"}]}
    world.configure_stage("production", windows=windows)
    merged = world.people.merge_change("Waits for the window", {"WINDOW.md": b"window\n"})
    world.settle()
    world.people.approve(user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.APPROVED, release.reason
    opens = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d") + " 09:00 UTC"
    assert (
        f"waiting for the production deploy window: opens {tomorrow.capitalize()} {opens}" in release.reason
    )
    status = {e["stage"]: e for e in world.services.status()["environments"]}
    assert status["production"]["window"]["open"] is False
    assert status["production"]["window"]["opens"].startswith(opens[:10])
    assert world.promotions() == []


def test_two_simultaneous_promotions_of_one_environment_cannot_both_start(world: World) -> None:
    merged = world.people.merge_change("Promoted once", {"ONCE.md": b"once\n"})
    world.settle()
    world.people.approve(user="po")
    # Three controllers at once (a scheduler, a webhook's pass and a person's tick, say).
    env = environment(world)
    command = [sys.executable, "-m", "pipeline.cli", "tick", "--settle", "--config", str(world.config_path)]
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for run in runs:
        assert run.wait(timeout=180) == 0, run.stderr.read() if run.stderr else ""
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert len(world.promotions()) == 1 and len(world.production_backups()) == 1


@pytest.mark.slow
def test_a_rollback_cannot_start_while_a_release_is_being_promoted(world: World) -> None:
    # Production's checks hold the release in verification for 15 s: production is busy meanwhile.
    world.configure_stage(
        "production", checks=[{"http": {"path": "/health", "interval": "1s", "soak": "15s"}}]
    )
    merged = world.people.merge_change("Promoted slowly", {"SLOW.md": b"slow\n"})
    world.settle()
    world.people.approve(user="po")
    settling = threading.Thread(target=world.settle)
    settling.start()
    verifying = State.PRODUCTION_VERIFYING
    wait_until(
        "production verification to start", lambda: world.release(merged.commit).state == verifying, 60
    )
    refused = pipeline(world, "rollback", "production", "--reason", "now!", "--yes", "--force")
    settling.join()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "production is busy with release" in refused.stderr
    assert world.services.store.rollbacks(world.settings.name) == []
    assert world.release(merged.commit).state == State.BACKUPS_VERIFIED


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("freeze", "prod", "--reason", "x"),
            "unknown environment 'prod': the environments are staging, production",
        ),
        (("unlock", "qa", "--reason", "x"), "unknown environment 'qa'"),
        (("promote", "prod", "--now", "--reason", "x"), "unknown environment 'prod'"),
        (("rollback", "prod", "--reason", "x", "--yes"), "unknown environment 'prod'"),
        (("rollback", "production", "--to", "999", "--reason", "x", "--yes"), "--to: v999 is no release of"),
        (
            ("rollback", "production", "--to", "latest", "--reason", "x"),
            "--to: expected a Heroku release version",
        ),
        (("freeze", "production", "--reason", "   "), "--reason: say why"),
        (("rollback", "production", "--reason", " ", "--yes"), "--reason: say why"),
        (("freeze", "production", "--reason", "x", "--until", "soonish"), "--until: expected a duration"),
        (("freeze", "production", "--reason", "x", "--until", "2020-01-01T00:00"), "is not in the future"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_2_and_nothing_changed(
    world: World, args: tuple[str, ...], says: str
) -> None:
    before = world.production_releases()[-1]
    run = pipeline(world, *args)
    assert run.returncode == BAD_INPUT, run.stdout + run.stderr
    assert any(says in line for line in errors(run)), run.stderr
    assert "Traceback" not in run.stderr
    assert world.services.log() == [] and world.services.store.rollbacks(world.settings.name) == []
    assert world.production_releases()[-1] == before


@pytest.mark.parametrize("missing", ["--reason"])
def test_a_missing_reason_is_refused_by_every_command_that_needs_one(world: World, missing: str) -> None:
    for args in (
        ("freeze", "production"),
        ("unlock", "production"),
        ("rollback", "production"),
        ("promote", "production", "--now"),
    ):
        run = pipeline(world, *args)
        assert run.returncode == BAD_INPUT and f"Missing option '{missing}'" in run.stderr, run.stderr
    no_now = pipeline(world, "promote", "production", "--reason", "x")
    assert no_now.returncode == BAD_INPUT and "Missing option '--now'" in no_now.stderr
    assert world.services.log() == []


def test_a_window_with_a_bad_time_zone_stops_everything_naming_it(world: World) -> None:
    path = world.config_path.parent / "environments" / "production.yml"
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["windows"] = {"timezone": "Mars/Olympus_Mons", "allow": [{"days": ["mon"], "hours": "09:00-17:00"}]}
    path.write_text(yaml.safe_dump(data))
    for args in (("config", "check"), ("freeze", "production", "--reason", "x"), ("tick",)):
        run = pipeline(world, *args)
        assert run.returncode == BAD_INPUT, run.stderr
        assert any("production.yml: windows.timezone: not a time zone" in line for line in errors(run)), (
            run.stderr
        )
    assert world.services.log() == []


def test_the_restore_drill_restores_the_newest_backup_and_the_history_says_so(world: World) -> None:
    taken = world.restorable_backup()

    drill = ok(pipeline(world, "backups", "drill", "--json"))
    report = yaml.safe_load(drill.stdout)
    assert report["ok"] is True and report["tables"]["claims"] > 0, drill.stdout
    (noted,) = [e for e in world.services.log("production") if e["kind"] == "BackupRestoreVerified"]
    assert noted["refs"]["backup"] == taken and "restore drill passed on local" in noted["reason"]
    assert "claims" in noted["detail"]

    unknown = pipeline(world, "backups", "drill", "--backup", "b999")
    assert unknown.returncode == BAD_INPUT and "--backup: 'b999' is no backup of" in unknown.stderr
