"""The history nobody can quietly rewrite, end to end: the chain's head on the release pull request
and in the log, ``pipeline audit verify`` and ``pipeline audit export`` as people run them (no
secrets), and an event edited by hand in the store named by ``audit verify``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import SECRETS, environment, ok, pipeline
from e2e_world import World
from sqlalchemy import text

from pipeline.model import State
from pipeline.store.sql import make_engine

GOOD = {"CHANGELOG.md": b"- Claims can carry a note\n"}
HISTORY_LINE = re.compile(r"^- History: (\d+) events, chain head `([0-9a-f]{16})`$", re.MULTILINE)
LOGGED = re.compile(r"pipeline\.controller: release (\d+) (\w+): .* \[hash ([0-9a-f]{16})\]$", re.MULTILINE)


def exported(world: World, *args: str) -> list[dict[str, object]]:
    """``pipeline audit export`` (without secrets), one object per line."""
    run = ok(pipeline(world, "audit", "export", *args, env=environment(world, without=SECRETS)))
    return [json.loads(line) for line in run.stdout.splitlines()]


def assert_posted_head(world: World, pull_request: int, events: list[dict[str, object]]) -> None:
    """The pull request's description says the history as it stood: N events, and the head's hash is
    the N-th event's."""
    description = str(world.people.pull_request(pull_request)["description"])
    (found,) = HISTORY_LINE.findall(description)
    count, head = int(found[0]), found[1]
    assert 1 <= count <= len(events)
    assert str(events[count - 1]["hash"]).startswith(head) and events[count - 1]["id"] == count


@pytest.mark.parametrize("database_kind", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.timeout(300)
def test_the_chains_head_is_posted_on_the_release_pull_request_and_in_the_log(world: World) -> None:
    merged = world.people.merge_change("Add a note to claims", GOOD)
    run = ok(pipeline(world, "-v", "tick", "--settle", "--timeout", "120"))
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    events = exported(world)
    assert_posted_head(world, release.pull_request_id or 0, events)

    # Each event the controller recorded is logged with its own hash.
    by_hash = {str(e["hash"])[:16]: e for e in events}
    logged = LOGGED.findall(run.stderr)
    assert len(logged) >= 5 and "StagingVerified" in {kind for _, kind, _ in logged}
    for release_id, kind, short in logged:
        assert by_hash[short]["kind"] == kind and by_hash[short]["release_id"] == int(release_id)

    world.people.approve(user="po")
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    merged_pr = world.people.pull_request(release.pull_request_id or 0)
    assert merged_pr["state"] == "MERGED"
    assert_posted_head(
        world, release.pull_request_id or 0, exported(world)
    )  # its last word, before the merge


@pytest.mark.timeout(300)
def test_audit_verify_and_export_need_no_secrets_and_name_an_event_edited_by_hand(
    world: World, tmp_path: Path, break_history: Callable[[str], None]
) -> None:
    world.people.merge_change("Add a note to claims", GOOD)
    world.settle()
    head = world.services.store.chain_head()
    no_secrets = environment(world, without=SECRETS)

    whole = ok(pipeline(world, "audit", "verify", env=no_secrets)).stdout.strip()
    assert whole == f"History whole: {head.events} events, chain head {head.hash}"
    report = json.loads(ok(pipeline(world, "audit", "verify", "--json", env=no_secrets)).stdout)
    assert report == {"ok": True, "events": head.events, "head": head.hash, "problem": None}

    out = tmp_path / "audit" / "history.jsonl"
    out.parent.mkdir()
    written = ok(pipeline(world, "audit", "export", "--format", "jsonl", "--out", str(out), env=no_secrets))
    assert f"{head.events} events written to {out}" in written.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["id"] for e in lines] == list(range(1, head.events + 1)) and lines[-1]["hash"] == head.hash
    assert exported(world, "--since", "1h") == lines  # everything happened in the last hour
    assert exported(world, "--since", "2999-01-01T00:00") == []
    bad = pipeline(world, "audit", "export", "--since", "soon", env=no_secrets)
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr

    # Someone with the database's password rewrites why staging was verified.
    (verified,) = [e for e in lines if e["kind"] == "StagingVerified"]
    url = world.env["PIPELINE_DATABASE_URL"]
    break_history(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE events SET reason = 'all fine' WHERE id = :id"), {"id": verified["id"]})
    finally:
        engine.dispose()
    broken = pipeline(world, "audit", "verify", env=no_secrets)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.startswith(
        f"History broken: event {verified['id']} edited - event {verified['id']} "
    )
    assert f"(StagingVerified at {verified['at']})" in broken.stdout
    as_json = pipeline(world, "audit", "verify", "--json", env=no_secrets)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["events"] == int(str(verified["id"])) - 1
    assert report["problem"] | {"detail": ""} == {
        "event": verified["id"],
        "kind": "StagingVerified",
        "at": verified["at"],
        "what": "edited",
        "detail": "",
    }
