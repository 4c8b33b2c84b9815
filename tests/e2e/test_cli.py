"""The ``pipeline`` command as people use it: real processes against a fresh sandbox per test.

Every command runs as ``python -m pipeline.cli ...`` with the sandbox's environment (no mocks, no
CliRunner), and every run is checked for the controller's two secrets: neither BITBUCKET_TOKEN's
nor HEROKU_API_KEY's value may ever appear in what a command prints.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_support import (
    CONFIG_INVALID,
    SECRETS,
    SECRETS_SET,
    assert_no_secrets,
    edited_config,
    environment,
    errors,
    ok,
    pipeline,
    serving,
)
from e2e_world import World, wait_until, write_config

from pipeline.model import State

GOOD = {"CHANGELOG.md": b"- Claims can carry a note\n"}
HISTORY_CONTRACT = {"id", "commit", "state", "approvals", "staging", "production", "backup", "created_at"}


def assert_iso(value: Any) -> None:
    assert isinstance(value, str) and value.endswith("Z"), value
    datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- config check -------------------------------------------------------------------------------


def test_config_check_prints_the_plan_with_secrets_shown_as_set(world: World) -> None:
    text = ok(pipeline(world, "config", "check"))
    plan = yaml.safe_load(text.stdout)
    assert plan["name"] == "claims"
    assert [(s["name"], s["app"]) for s in plan["stages"]] == [
        ("staging", "claims-staging"),
        ("production", "claims-production"),
    ]
    assert plan["secrets"] == SECRETS_SET
    assert plan["approval"]["approvers"] == ["po"] and plan["approval"]["min_approvals"] == 1
    assert "configuration OK" in text.stderr

    as_json = ok(pipeline(world, "config", "check", "--json"))
    plan = json.loads(as_json.stdout)  # nothing but the JSON on stdout
    assert plan["secrets"] == SECRETS_SET
    assert plan["source"]["url"] == world.env["BITBUCKET_URL"]
    assert plan["heroku"]["api_url"] == world.env["HEROKU_API_URL"]
    assert plan["stages"][1]["backups"]["capture_before_promotion"] is True
    assert_no_secrets(world, text.stdout, text.stderr, as_json.stdout, as_json.stderr)


def test_config_check_without_secrets_prints_the_plan_but_exits_2(world: World) -> None:
    bare = environment(world, without=SECRETS)
    run = pipeline(world, "config", "check", env=bare)
    assert run.returncode == CONFIG_INVALID, run.stderr
    plan = yaml.safe_load(run.stdout)
    assert plan["secrets"] == {name: "missing" for name in SECRETS}
    assert [line.split(": ")[1:3] for line in errors(run)] == [
        ["environment", "BITBUCKET_TOKEN"],
        ["environment", "HEROKU_API_KEY"],
        ["environment", "BITBUCKET_WEBHOOK_SECRET"],
    ]
    assert "configuration OK" not in run.stderr

    as_json = pipeline(world, "config", "check", "--json", env=bare)
    assert as_json.returncode == CONFIG_INVALID
    assert json.loads(as_json.stdout)["secrets"]["HEROKU_API_KEY"] == "missing"
    assert len(errors(as_json)) == 3


# --- Configuration problems stop everything -----------------------------------------------------


def test_config_problems_exit_2_naming_file_and_key_and_nothing_runs(world: World, tmp_path: Path) -> None:
    merged = world.people.merge_change("Would be released", GOOD)  # a candidate a pass would pick up
    bad = edited_config(tmp_path / "bad", colour="blue", schedule={"poll_interval": "soon"})

    run = pipeline(world, "tick", "--settle", "--timeout", "120", config=bad)
    assert run.returncode == CONFIG_INVALID, run.stderr
    problems = errors(run)
    assert len(problems) == 2, run.stderr  # one line per problem
    assert all(line.startswith(f"error: {bad}: ") for line in problems), problems
    by_key = {line.split(": ")[2]: line for line in problems}
    assert set(by_key) == {"colour", "schedule.poll_interval"}
    assert "unknown key" in by_key["colour"]
    assert "duration" in by_key["schedule.poll_interval"]
    assert "soon" not in by_key["schedule.poll_interval"]  # messages never repeat a configured value
    assert "Traceback" not in run.stderr and run.stdout == ""

    # Missing secret: the command names the variable and stops before reaching anything.
    run = pipeline(world, "tick", env=environment(world, without=("BITBUCKET_TOKEN",)))
    assert run.returncode == CONFIG_INVALID, run.stderr
    (problem,) = errors(run)
    assert problem.startswith("error: environment: BITBUCKET_TOKEN: not set")

    # Nothing ran: no release recorded (read without any secret: history needs only the store),
    # nothing built on Heroku.
    history = ok(pipeline(world, "history", "--json", env=environment(world, without=SECRETS)))
    assert json.loads(history.stdout) == []
    assert world.services.store.by_commit(world.settings.name, merged.commit) is None
    assert world.heroku_builds(merged.commit) == []
    assert ok(pipeline(world, "history", env=environment(world, without=SECRETS))).stdout.strip() == (
        "No releases yet."
    )


def test_a_secret_pasted_into_pipeline_yml_is_refused_without_echoing_it(
    world: World, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "pasted")
    data = yaml.safe_load(path.read_text())
    data["source"]["token"] = world.env["BITBUCKET_TOKEN"]
    path.write_text(yaml.safe_dump(data))
    run = pipeline(world, "config", "check", config=path)  # asserts the token is not printed
    assert run.returncode == CONFIG_INVALID, run.stderr
    (problem,) = errors(run)
    assert problem.startswith(f"error: {path}: source.token: unknown key")
    assert problem.endswith("set BITBUCKET_TOKEN")


@pytest.mark.parametrize("name", ["BITBUCKET_TOKEN", "HEROKU_API_KEY"])
def test_a_refused_secret_stops_tick_at_start_naming_it_without_echoing_it(world: World, name: str) -> None:
    wrong = f"wrong-{name.lower()}-0123456789"
    run = pipeline(world, "tick", env=environment(world) | {name: wrong})
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("Error: cannot start: ")
    assert f"{name} was refused" in run.stderr and "HTTP 401" in run.stderr
    assert wrong not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert ok(pipeline(world, "history", "--json")).stdout.strip() == "[]"


# --- The release path through the command -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_release_through_tick_status_history_and_show(world: World) -> None:
    merged = world.people.merge_change("Add a note to claims", GOOD)

    # One pass, no --settle: detects the merge, starts it moving, exits 0.
    one = ok(pipeline(world, "tick"))
    release = world.release(merged.commit)
    assert f"release {release.id} detected" in one.stderr
    assert release.state != State.DETECTED  # it moved on in that pass (the tests build is green)

    ok(pipeline(world, "tick", "--settle", "--timeout", "120"))
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    assert release.pull_request_url

    status = ok(pipeline(world, "status"))
    (line,) = [s for s in status.stdout.splitlines() if s.strip().startswith(f"release {release.id} ")]
    assert merged.commit[:12] in line
    assert "awaiting_approval" in line
    assert "approval" in line.split("awaiting_approval", 1)[1]
    assert release.pull_request_url in line
    assert "claims-staging" in status.stdout and "claims-production" in status.stdout

    status_json = json.loads(ok(pipeline(world, "status", "--json")).stdout)
    environments = {e["stage"]: e for e in status_json["environments"]}
    assert set(environments) == {"staging", "production"}
    assert all(isinstance(e["release"]["version"], int) for e in environments.values())
    assert environments["staging"]["release"]["commit"] == merged.commit
    assert environments["staging"]["release"]["version"] == release.staging_release_version
    (waiting,) = status_json["releases"]
    assert waiting["id"] == release.id and waiting["state"] == "awaiting_approval"
    assert "approval" in waiting["waiting_on"]
    assert waiting["pull_request"] == release.pull_request_url

    world.people.approve(user="po")
    ok(pipeline(world, "tick", "--settle", "--timeout", "120"))
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason

    # history --json: the contract, with the right types.
    history = json.loads(ok(pipeline(world, "history", "--json")).stdout)
    assert isinstance(history, list) and len(history) == 1
    entry = history[0]
    assert set(entry) >= HISTORY_CONTRACT, set(entry)
    assert type(entry["id"]) is int and entry["id"] == release.id
    assert re.fullmatch(r"[0-9a-f]{40}", entry["commit"]) and entry["commit"] == merged.commit
    assert entry["state"] == "backups_verified"
    (approval,) = entry["approvals"]
    assert set(approval) == {"user", "at"} and approval["user"] == "po"
    assert_iso(approval["at"])
    for stage, app in (("staging", "claims-staging"), ("production", "claims-production")):
        assert set(entry[stage]) == {"app", "release"}
        assert entry[stage]["app"] == app and type(entry[stage]["release"]) is int
    assert entry["production"]["release"] == release.production_release_version
    assert isinstance(entry["backup"]["id"], str) and entry["backup"]["id"] == release.backup_id
    assert_iso(entry["created_at"])

    text = ok(pipeline(world, "history", "--limit", "1")).stdout.splitlines()
    assert len(text) == 1
    assert text[0].split()[:2] == [str(release.id), entry["created_at"]]
    for word in (merged.commit[:12], "backups_verified", "approved:po", f"backup:{release.backup_name}"):
        assert word in text[0], text[0]

    # show: every event, oldest first, in text and JSON alike.
    detail = json.loads(ok(pipeline(world, "show", str(release.id), "--json")).stdout)
    events = detail["events"]
    assert all({"kind", "at", "actor", "reason"} <= set(e) for e in events)
    for e in events:
        assert_iso(e["at"])
        assert isinstance(e["reason"], str) and e["reason"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "ReleaseDetected" and kinds[-1] == "BackupsVerified"
    assert kinds.index("ReleaseApproved") < kinds.index("Released")
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    approved = events[kinds.index("ReleaseApproved")]
    assert approved["actor"] == "po"

    shown = ok(pipeline(world, "show", str(release.id))).stdout
    lines = shown.splitlines()
    assert lines[0].split() == ["Release", str(release.id), merged.commit, "backups_verified"]
    assert release.pull_request_url in shown
    event_lines = lines[lines.index("  Events:") + 1 :]
    assert [line.split()[1] for line in event_lines] == kinds
    assert "by po" in event_lines[kinds.index("ReleaseApproved")]

    missing = pipeline(world, "show", "9999")
    assert missing.returncode != 0 and missing.stdout == ""
    assert "no release 9999" in missing.stderr
    assert "Traceback" not in missing.stderr

    # Status afterwards: production runs the release, nothing in flight.
    after = ok(pipeline(world, "status")).stdout
    assert "Nothing in flight." in after
    assert f"release {release.id} {merged.commit[:12]}, approved by po" in after

    # A pass with nothing to do exits 0.
    ok(pipeline(world, "tick"))


# --- serve --------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_serve_moves_a_merge_on_its_own_and_stops_on_sigterm(world: World, tmp_path: Path) -> None:
    config = edited_config(tmp_path / "serve", schedule={"poll_interval": "1s"})
    with serving(world, config, tmp_path) as served:
        merged = world.people.merge_change("Served by the scheduler", GOOD)

        def awaiting() -> bool:
            release = world.services.store.by_commit(world.settings.name, merged.commit)
            served.alive()
            return release is not None and release.state == State.AWAITING_APPROVAL

        wait_until("serve to bring the merge to awaiting_approval", awaiting, timeout=60)
    log = served.log()
    assert log.rstrip().endswith("Stopped."), log
    assert "a pass every 1s" in log
    assert "Traceback" not in log


# --- Secrets with -v ----------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_verbose_logs_every_step_but_never_a_secret(world: World) -> None:
    world.people.merge_change("Logged", GOOD)
    run = ok(pipeline(world, "-v", "tick", "--settle", "--timeout", "120"))
    assert " INFO pipeline.controller: " in run.stderr
    assert "StagingVerified" in run.stderr and "awaiting_approval" in run.stderr
    world.people.approve(user="po")
    run = ok(pipeline(world, "-v", "tick", "--settle", "--timeout", "120"))
    assert "backups_verified" in run.stderr
    for args in (("-v", "status"), ("-v", "status", "--json"), ("-v", "config", "check", "--json")):
        ok(pipeline(world, *args))  # pipeline() asserts no secret in any of them


# --- tick --settle that runs out of time --------------------------------------------------------

# A staging check that keeps retrying (the demo app answers /nope with 404) for about 10 s: the
# release is still moving by itself when a one-second --settle gives up.
SLOW_CHECKS: list[dict[str, Any]] = [
    {"http": {"path": "/nope", "expect_status": 200, "retries": 5, "interval": "2s", "timeout": "5s"}}
]


def settle_too_briefly(world: World, tmp_path: Path) -> tuple[int, subprocess.CompletedProcess[str]]:
    merged = world.people.merge_change("Slow to verify", GOOD)
    config = write_config(tmp_path / "slow", checks=SLOW_CHECKS)
    run = pipeline(world, "tick", "--settle", "--timeout", "1", config=config)
    release = world.release(merged.commit)
    assert release.state in (State.STAGING_DEPLOYING, State.STAGING_VERIFYING), release.state
    assert release.id is not None
    return release.id, run


@pytest.mark.timeout(120)
def test_settle_that_runs_out_of_time_exits_non_zero_saying_what_still_moves(
    world: World, tmp_path: Path
) -> None:
    release_id, run = settle_too_briefly(world, tmp_path)
    assert run.returncode not in (0, CONFIG_INVALID), run.stderr
    assert "still moving after 1s" in run.stderr
    assert re.search(rf"release {release_id} staging_(deploying|verifying): \S", run.stderr), run.stderr


@pytest.mark.timeout(120)
def test_settle_that_runs_out_of_time_says_so_without_a_traceback(world: World, tmp_path: Path) -> None:
    _, run = settle_too_briefly(world, tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith("Error: still moving after 1s: ")
