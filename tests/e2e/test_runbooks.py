"""The runbooks as ops run them: real ``fab -r runbooks <task>`` processes from the repository root
against a fresh sandbox, with ``--config`` the world's configuration and the sandbox's
environment; every output checked for the controller's secrets. The tasks change what the
``pipeline`` command's services change, and exit as it does: 2 for bad input, 1 for a refusal."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_support import assert_no_secrets, environment, errors, ok
from e2e_world import World
from test_operations import production_version, release_to_production

from pipeline.model import RollbackState, State

ROOT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).parent / "fab"
TASKS = ("freeze", "hotfix", "restore-drill", "rollback", "rotate-credentials", "unfreeze", "unlock")
BAD_INPUT = 2
REFUSED = 1


def fab(
    world: World,
    *args: str,
    env: dict[str, str] | None = None,
    input: str = "",
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """``fab -r runbooks <args> --config <the world's>`` from the repository root (``args`` start
    with core flags or the task name; ``--config`` goes to the task); never prints a secret."""
    run = subprocess.run(
        [str(FAB), "-r", "runbooks", *args, "--config", str(world.config_path)],
        cwd=ROOT,
        env=environment(world) if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    assert_no_secrets(world, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    return run


def test_fab_lists_every_runbook_with_its_one_line_help() -> None:
    listed = subprocess.run(
        [str(FAB), "-r", "runbooks", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    names = [
        line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ") and line[2] != " "
    ]
    assert tuple(names) == TASKS, listed.stdout
    assert "Roll ENV back to an earlier release" in listed.stdout
    for name in TASKS:
        page = "freeze" if name == "unfreeze" else name
        assert (ROOT / "runbooks" / f"{page}.md").is_file(), f"runbooks/{page}.md is missing"


def test_freeze_and_unfreeze_change_the_environment_and_its_history(world: World) -> None:
    frozen = ok(fab(world, "freeze", "production", "--reason", "year-end close", "--until", "2h"))
    assert "production is frozen until" in frozen.stdout and "by tests: year-end close" in frozen.stdout
    state = world.services.store.environment(world.settings.name, "production")
    assert state.frozen_by == "tests" and state.freeze_reason == "year-end close" and state.frozen_until

    thawed = ok(fab(world, "unfreeze", "production", "--reason", "books closed"))
    assert thawed.stdout.strip() == "production unfrozen."
    state = world.services.store.environment(world.settings.name, "production")
    assert state.frozen_at is None
    assert "was not frozen: nothing changed" in ok(fab(world, "unfreeze", "production")).stdout
    logged = [(e["kind"], e["actor"], e["reason"]) for e in world.services.log("production")]
    assert [kind for kind, _, _ in logged] == ["EnvironmentUnfrozen", "EnvironmentFrozen"], logged
    assert all(actor == "tests" for _, actor, _ in logged)
    assert "books closed" in logged[0][2] and "year-end close" in logged[1][2]


@pytest.mark.slow
def test_a_rollback_takes_out_the_second_release_verifies_and_locks_then_unlock_clears_it(
    world: World,
) -> None:
    first = release_to_production(world, "Claims can be exported", {"EXPORT.md": b"export\n"})
    first_version, first_slug = production_version(world), world.production_releases()[-1]["slug_id"]
    second = release_to_production(world, "Exports as CSV", {"CSV.md": b"csv\n"})
    second_release = world.release(second)
    reason = ("--reason", "CSV export corrupts totals")

    declined = fab(world, "rollback", "production", *reason, input="n\n")
    assert declined.returncode == REFUSED, declined.stdout + declined.stderr
    assert f"to   v{first_version}" in declined.stdout and "Nothing was changed." in declined.stdout
    assert world.services.store.rollbacks(world.settings.name) == []

    done = ok(fab(world, "rollback", "production", *reason, "--yes"))
    assert f"(release {second_release.id} {second[:12]})" in done.stdout  # the plan: what is taken out
    assert "Exports as CSV" in done.stdout  # ... and its commits
    assert "verified" in done.stdout
    assert "production stays locked until `fab -r runbooks unlock production" in done.stdout
    assert world.production_releases()[-1]["slug_id"] == first_slug
    (rollback,) = world.services.store.rollbacks(world.settings.name)
    assert rollback.state == RollbackState.VERIFIED and rollback.requested_by == "tests"
    assert rollback.to_version == first_version
    assert world.release(second).state == State.ROLLED_BACK
    assert world.release(first).state == State.BACKUPS_VERIFIED
    state = world.services.store.environment(world.settings.name, "production")
    assert state.locked and state.locked_by == "tests"

    unlocked = ok(fab(world, "unlock", "production", "--reason", "totals fixed on the next release"))
    assert unlocked.stdout.strip() == "production unlocked."
    assert not world.services.store.environment(world.settings.name, "production").locked
    assert "was not locked" in ok(fab(world, "unlock", "production", "--reason", "again")).stdout
    kinds = [e["kind"] for e in world.services.log("production")]
    assert kinds[0] == "EnvironmentUnlocked" and "RollbackVerified" in kinds, kinds


def test_bad_input_exits_2_saying_what_and_changes_nothing(world: World) -> None:
    before = world.production_releases()[-1]
    cases = (
        (("freeze", "prod", "--reason", "x"), "ENV: unknown environment 'prod': the environments are"),
        (("unfreeze", "prod"), "unknown environment 'prod'"),
        (("unlock", "qa", "--reason", "x"), "unknown environment 'qa'"),
        (("rollback", "prod", "--reason", "x", "--yes"), "unknown environment 'prod'"),
        (("rollback", "production", "--reason", "  ", "--yes"), "--reason: say why"),
        (("hotfix", "develop"), "'develop' is not a hotfix branch"),
        (("-H", "ops@127.0.0.1", "freeze", "production", "--reason", "x"), "-H: freeze acts on"),
    )
    with ThreadPoolExecutor(len(cases)) as pool:  # none changes anything: they may run at once
        runs = list(pool.map(lambda case: fab(world, *case[0]), cases))
    for (args, says), run in zip(cases, runs, strict=True):
        assert run.returncode == BAD_INPUT, f"{args}: {run.stdout}{run.stderr}"
        assert any(says in line for line in errors(run)), run.stderr
    assert world.services.log() == [] and world.services.store.rollbacks(world.settings.name) == []
    assert world.production_releases()[-1] == before
    assert world.services.store.environment(world.settings.name, "production").frozen_at is None


def test_a_hotfix_branched_from_main_becomes_a_release_once(world: World) -> None:
    people = world.people
    fix = people.commit("hotfix/x", {"X.md": b"fixed\n"}, "Fix x", user="ops", parent=people.head("main"))
    people.report_build(fix, "SUCCESSFUL")

    started = ok(fab(world, "hotfix", "hotfix/x"))
    release = world.release(fix)
    assert release.branch == "hotfix/x" and [c.hash for c in release.commits] == [fix]
    assert f"release {release.id} {fix[:12]} from hotfix/x" in started.stdout
    assert "Product Owner's approval" in started.stdout and "back into develop" in started.stdout
    assert world.events(release)[0] == "HotfixStarted"
    world.settle()
    assert world.release(fix).state == State.AWAITING_APPROVAL, world.release(fix).reason

    again = fab(world, "hotfix", "hotfix/x")
    assert again.returncode == REFUSED and f"is release {release.id} already" in again.stderr


def test_the_restore_drill_runs_here_for_real_and_the_history_says_so(world: World) -> None:
    taken = world.restorable_backup()

    drill = ok(fab(world, "restore-drill"))
    first, *checks = drill.stdout.splitlines()
    assert first.startswith("restore drill passed on local: ") and "dropped" in first, drill.stdout
    assert all(line.startswith("  ok ") for line in checks), drill.stdout
    (noted,) = [e for e in world.services.log("production") if e["kind"] == "BackupRestoreVerified"]
    assert noted["refs"]["backup"] == taken and '"claims"' in noted["detail"]

    unknown = fab(world, "restore-drill", "--backup", "b999")
    assert unknown.returncode == BAD_INPUT
    assert any("--backup: 'b999' is no backup of" in line for line in errors(unknown)), unknown.stderr


def test_rotate_credentials_checks_each_and_names_a_refused_one_without_showing_it(world: World) -> None:
    url = "http://127.0.0.1:9/webhooks/bitbucket"
    rotated = ok(fab(world, "rotate-credentials", "--webhook-url", url))
    assert "acting as controller" in rotated.stdout
    assert "ok       HEROKU_API_KEY: deploy claims-production:" in rotated.stdout
    assert f"given to the webhook to {url} (created)" in rotated.stdout
    (noted,) = [e for e in world.services.log() if e["kind"] == "CredentialsRotated"]
    assert_no_secrets(world, noted["reason"], noted["detail"] or "")

    wrong = "not-a-real-key-0123456789"
    refused = fab(world, "rotate-credentials", env=environment(world) | {"HEROKU_API_KEY": wrong})
    assert refused.returncode != 0 and "HEROKU_API_KEY was refused" in refused.stderr, refused.stderr
    assert wrong not in refused.stdout + refused.stderr
