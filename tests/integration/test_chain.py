"""The history nobody can quietly rewrite: every event is linked into one hash chain per store in
the transaction that appends it, appends from several writers at once never fork it, migration 0005
hashes the events already there, and ``audit.verify`` names the first event edited, removed or
inserted by hand in SQL. One suite for every backend (``store_url``: SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select, text, update

from pipeline.errors import Permanent
from pipeline.model import EnvironmentState, Event, Release, Rollback, RollbackState, State
from pipeline.ports import ChainHead
from pipeline.services import audit
from pipeline.store import SqlStore, alembic_config, chain, migrate, open_store
from pipeline.store.sql import make_engine, sqlite_path
from pipeline.store.tables import events

T0 = datetime(2026, 5, 4, 9, 30, 15, 123456, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new_release(commit: str = "a" * 40, pipeline: str = "shop") -> Release:
    return Release(
        pipeline=pipeline, commit=commit, branch="develop", state=State.DETECTED, created_at=T0, updated_at=T0
    )


def event(kind: str, reason: str = "", release_id: int | None = None, **kw: Any) -> Event:
    return Event(release_id, kw.pop("at", T0), kind, kw.pop("actor", "controller"), reason, **kw)  # type: ignore[arg-type]


def rollback() -> Rollback:
    return Rollback(
        pipeline="shop",
        environment="production",
        app="shop-production",
        state=RollbackState.REQUESTED,
        requested_at=T0,
        requested_by="ops",
        reason="broken",
        from_release_id="r-9",
        from_version=9,
        to_release_id="r-8",
        to_version=8,
        updated_at=T0,
    )


def stored(store: SqlStore) -> list[dict[str, Any]]:
    """Every events row as stored, in id order (read through the table's types: ``at`` a time)."""
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(events).order_by(events.c.id)).mappings()]


def sql(store: SqlStore, statement: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def history(store: SqlStore) -> Release:
    """A release with a few events of every kind of append: add, save, note, an environment's,
    a rollback's. Ten events, ids 1 to 10."""
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    rid = added.id or 0
    saved = store.save(
        replace(added, state=State.GATED),
        [event("GatePassed", "ok", rid), event("StagingDeployStarted", "go", rid)],
    )
    store.note("shop", [event("CredentialsRotated", "rotated: ü ✓", actor="ops", detail="bitbucket")])
    store.save_environment(
        EnvironmentState("shop", "production", frozen_at=at(1), frozen_by="ops", freeze_reason="xmas"),
        [event("EnvironmentFrozen", "xmas", actor="ops", at=at(1))],
    )
    taken = store.add_rollback(
        rollback(), [event("HerokuRollbackRequested", "broken", actor="ops", at=at(2))]
    )
    store.save_rollback(
        replace(taken, state=RollbackState.ROLLING_BACK),
        [event("RollbackStarted", "v10", at=at(3)), event("RollbackReleased", "v10", at=at(3))],
    )
    return store.save(
        replace(saved, state=State.STAGING_DEPLOYING),
        [event("StagingBuildStarted", "build", rid, refs={"build": "b-1"}), event("Odd", "", rid, at=at(4))],
    )


# --- Appending ---------------------------------------------------------------------------------


def test_every_append_links_its_events_into_one_chain(store: SqlStore) -> None:
    assert store.chain_head() == ChainHead(0, None, "")
    assert audit.verify(store) == audit.ChainReport(True, 0, "")
    history(store)

    rows = stored(store)
    assert [r["id"] for r in rows] == list(range(1, 11))
    assert rows[0]["prev_hash"] is None
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    assert all(len(r["hash"]) == 64 and int(r["hash"], 16) >= 0 for r in rows)
    assert store.chain_head() == ChainHead(10, 10, rows[-1]["hash"])
    assert audit.verify(store) == audit.ChainReport(True, 10, rows[-1]["hash"])


def test_each_write_returns_the_heads_it_left_without_a_query(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    first = stored(store)[0]
    assert store.appended() == (ChainHead(1, 1, first["hash"]),)
    rid = added.id or 0
    store.save(added, [event("A", "", rid), event("B", "", rid)])
    rows = stored(store)
    assert store.appended() == (ChainHead(2, 2, rows[1]["hash"]), ChainHead(3, 3, rows[2]["hash"]))
    store.save(added, [])  # no event: the chain is not touched, and nothing was appended
    assert store.appended() == () and store.chain_head() == ChainHead(3, 3, rows[2]["hash"])
    assert store.add(new_release(), "ReleaseDetected", "again", "controller") == store.get(rid)
    assert store.appended() == ()  # already stored: no event


def test_a_failed_append_leaves_the_chain_as_it_was(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    rid = added.id or 0
    head = store.chain_head()
    with pytest.raises(Permanent):
        store.save(added, [event("A", "", rid), event(None, "no kind", rid)])  # type: ignore[arg-type]
    assert store.chain_head() == head and store.appended() == ()
    store.save(added, [event("B", "", rid)])
    assert [r["id"] for r in stored(store)] == [1, 2]  # no id was lost to the failed write
    assert audit.verify(store).ok


def test_the_hash_is_the_sha256_of_the_canonical_record_an_auditor_can_recompute(store: SqlStore) -> None:
    history(store)
    lines = list(audit.export(store))
    assert len(lines) == 10
    previous = None
    for line, row in zip(lines, stored(store), strict=True):
        record = json.loads(line)
        assert line == json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        claimed = record.pop("hash")
        canonical = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(canonical.encode()).hexdigest() == claimed == row["hash"]
        assert record["prev_hash"] == previous
        previous = claimed
    fourth = json.loads(lines[3])
    assert fourth == fourth | {
        "id": 4,
        "pipeline": "shop",
        "kind": "CredentialsRotated",
        "actor": "ops",
        "reason": "rotated: ü ✓",
        "detail": "bitbucket",
        "release_id": None,
        "environment": None,
        "at": "2026-05-04T09:30:15.123456+00:00",
        "refs": {},
        "state_from": None,
        "state_to": None,
    }
    assert json.loads(lines[8])["refs"] == {"build": "b-1"}
    # At that time or later, in id order (event 9 was appended later with an earlier time).
    assert [json.loads(x)["id"] for x in audit.export(store, since=at(2), page=3)] == [6, 7, 8, 10]


def test_verify_walks_the_chain_a_page_at_a_time(store: SqlStore) -> None:
    history(store)
    head = store.chain_head().hash
    for page in (1, 3, 10, 11):
        assert audit.verify(store, page=page) == audit.ChainReport(True, 10, head)


# --- Writers at once ---------------------------------------------------------------------------


def test_writers_appending_at_once_never_fork_the_chain(store_url: str) -> None:
    """Four stores (each its own engine and connections, as four processes would have) append at
    once, releases and notes mixed: one chain, ids without a gap."""
    import threading

    stores = [open_store(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            mine = stores[i]
            barrier.wait()
            release = mine.add(new_release(commit=f"{i:x}" * 40), "ReleaseDetected", "new", "controller")
            for n in range(15):
                release = mine.save(release, [event("Step", f"{i}/{n}", release.id)])
                mine.note("shop", [event("Noted", f"{i}/{n}"), event("Noted", f"{i}/{n} again")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        report = audit.verify(stores[0])
        assert report.ok and report.events == 4 * (1 + 15 * 3), report.problem
        assert [r["id"] for r in stored(stores[0])] == list(range(1, report.events + 1))
    finally:
        for opened in stores:
            opened.close()


APPENDER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pipeline.model import Event
    from pipeline.store import open_store

    store = open_store(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(int(sys.argv[2])):
        store.note("shop", [Event(None, datetime.now(UTC), "Noted", sys.argv[3], str(n))])
    """
)


def test_processes_appending_at_once_never_fork_the_chain(store_url: str) -> None:
    """Two ``serve`` replicas and a CLI command on one store, as processes: started together, each
    appends 40 events; one chain."""
    open_store(store_url).close()  # migrated once, before they start
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, store_url, "40", f"p{i}"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for run in runs:
        assert run.stdout is not None and run.stdout.readline().strip() == "ready"
    for run in runs:  # as close to together as the pipes allow
        assert run.stdin is not None
        run.stdin.write("go\n")
        run.stdin.flush()
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0]
    store = open_store(store_url)
    try:
        report = audit.verify(store)
        assert report.ok and report.events == 120, report.problem
        actors = [r["actor"] for r in stored(store)]
        assert sorted(set(actors)) == ["p0", "p1", "p2"] and len(actors) == 120
    finally:
        store.close()


# --- Migration ---------------------------------------------------------------------------------


def engine_at(store_url: str, revision: str) -> Any:
    path = sqlite_path(store_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(store_url)
    migrate(engine, revision)
    return engine


def test_a_store_made_at_0004_gets_its_events_hashed_once_in_id_order(store_url: str) -> None:
    engine = engine_at(store_url, "0004")
    release = {
        "pipeline": "shop",
        "commit": "c" * 40,
        "branch": "develop",
        "state": "gated",
        "created_at": T0,
        "updated_at": T0,
        "commits": "[]",
        "changes": "[]",
        "staging_app": "shop-staging",
        "approvals": "[]",
        "production_app": "shop-production",
        "rollback_reason": "",
        "check_progress": "[]",
        "reason": "",
        "feedback": "[]",
    }
    columns = ", ".join(f'"{name}"' for name in release)
    with engine.begin() as conn:  # as the 0004 code wrote them; ids 1, 2 and 4 (a sequence skips some)
        conn.execute(
            text(f"INSERT INTO releases ({columns}) VALUES ({', '.join(':' + n for n in release)})"), release
        )
        for id_, kind, release_id, environment, detail in (
            (1, "ReleaseDetected", 1, None, None),
            (2, "GatePassed", 1, None, ""),
            (4, "EnvironmentFrozen", None, "production", "until monday"),
        ):
            conn.execute(
                text(
                    "INSERT INTO events (id, pipeline, release_id, environment, at, kind, actor, reason, "
                    "state_from, state_to, refs, detail) VALUES (:id, 'shop', :release_id, :environment, "
                    ":at, :kind, 'controller', 'old', NULL, 'gated', '{\"commit\": \"cc\"}', :detail)"
                ),
                {
                    "id": id_,
                    "release_id": release_id,
                    "environment": environment,
                    "kind": kind,
                    "at": at(id_),
                    "detail": detail,
                },
            )
    migrate(engine)
    engine.dispose()

    store = open_store(store_url)
    try:
        rows = stored(store)
        assert [r["id"] for r in rows] == [1, 2, 4]
        assert [r["prev_hash"] for r in rows] == [None, rows[0]["hash"], rows[1]["hash"]]
        assert store.chain_head() == ChainHead(3, 4, rows[2]["hash"])
        assert audit.verify(store) == audit.ChainReport(True, 3, rows[2]["hash"])
        # What 0004 stored reads as it did, and the chain goes on from where the migration left it.
        (old,) = store.history("shop")
        assert [e.kind for e in store.events(old.id or 0)] == ["ReleaseDetected", "GatePassed"]
        store.save(old, [event("StagingDeployStarted", "go", old.id)])
        assert [r["id"] for r in stored(store)] == [1, 2, 4, 5]
        assert audit.verify(store).ok and audit.verify(store).events == 4
    finally:
        store.close()


def test_going_back_to_0004_leaves_events_that_take_ids_as_they_did(store_url: str) -> None:
    store = open_store(store_url)
    history(store)
    store.close()
    engine = make_engine(store_url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    with engine.begin() as conn:  # an event as the 0004 code adds one: its id from the database
        conn.execute(
            text(
                "INSERT INTO events (pipeline, at, kind, actor, reason, refs) "
                "VALUES ('shop', :at, 'Noted', 'ops', 'after going back', '{}')"
            ),
            {"at": T0},
        )
        assert conn.execute(text("SELECT MAX(id) FROM events")).scalar() == 11
    migrate(engine)  # and forward again: the events are hashed anew
    engine.dispose()
    again = open_store(store_url)
    try:
        assert audit.verify(again).ok and audit.verify(again).events == 11
    finally:
        again.close()


# --- Tampering ---------------------------------------------------------------------------------


@pytest.fixture
def broken(store: SqlStore, store_url: str, break_history: Callable[[str], None]) -> SqlStore:
    """The ten-event history, which the test breaks by hand in SQL."""
    break_history(store_url)
    history(store)
    return store


def problem(store: SqlStore, page: int = audit.PAGE) -> audit.ChainProblem:
    report = audit.verify(store, page=page)
    assert not report.ok and report.problem is not None, report
    assert report.head == store.chain_head().hash
    return report.problem


def test_an_event_edited_in_sql_is_named(broken: SqlStore) -> None:
    sql(broken, "UPDATE events SET reason = 'nothing to see' WHERE id = 4")
    found = problem(broken)
    assert (found.event, found.kind, found.what) == (4, "CredentialsRotated", "edited")
    assert found.at == "2026-05-04T09:30:15.123456+00:00"
    assert "event 4 (CredentialsRotated at 2026-05-04T09:30:15.123456+00:00)" in found.detail
    assert audit.verify(broken).events == 3  # the events before it are whole
    assert problem(broken, page=2) == found


@pytest.mark.parametrize(
    "column, value",
    [
        ("at", at(1)),
        ("refs", '{"build": "b-2"}'),
        ("actor", "ops"),
        ("state_to", "gated"),
        ("prev_hash", "0" * 64),
    ],
)
def test_every_part_of_an_event_is_covered(broken: SqlStore, column: str, value: Any) -> None:
    with broken.engine.begin() as conn:  # through the columns' types: a time is a time on either database
        conn.execute(update(events).where(events.c.id == 9).values({column: value}))
    found = problem(broken)
    assert (found.event, found.kind, found.what) == (9, "StagingBuildStarted", "edited")


def test_an_event_edited_with_its_hash_recomputed_is_named(broken: SqlStore) -> None:
    """An editor who knows how the hash is made rewrites event 5 and its hash: event 6 still points
    at the old hash, so event 5 is named."""
    row = stored(broken)[4]
    forged = chain.digest(chain.record(row | {"reason": "never frozen"}, row["prev_hash"]))
    sql(broken, "UPDATE events SET reason = 'never frozen', hash = :hash WHERE id = 5", hash=forged)
    found = problem(broken)
    assert (found.event, found.kind, found.what) == (5, "EnvironmentFrozen", "edited")
    assert "hash was rewritten" in found.detail


def test_the_last_event_edited_with_its_hash_recomputed_is_named_by_the_head(broken: SqlStore) -> None:
    row = stored(broken)[9]
    forged = chain.digest(chain.record(row | {"kind": "Fine"}, row["prev_hash"]))
    sql(broken, "UPDATE events SET kind = 'Fine', hash = :hash WHERE id = 10", hash=forged)
    found = problem(broken)
    assert (found.event, found.kind, found.what) == (10, "Fine", "edited")


def test_an_event_removed_is_named(broken: SqlStore) -> None:
    sql(broken, "DELETE FROM events WHERE id = 6")
    found = problem(broken)
    assert (found.event, found.kind, found.at, found.what) == (6, None, None, "removed")
    assert "event 6 is missing" in found.detail and "event 7 (RollbackStarted" in found.detail
    sql(broken, "DELETE FROM events WHERE id = 7")
    assert "events 6 to 7 are missing" in problem(broken).detail


def test_the_first_and_the_last_events_removed_are_named(broken: SqlStore) -> None:
    sql(broken, "DELETE FROM events WHERE id = 10")
    found = problem(broken)
    assert (found.event, found.what) == (10, "removed") and "head is event 10" in found.detail
    sql(broken, "DELETE FROM events WHERE id = 1")
    assert (problem(broken).event, problem(broken).what) == (1, "removed")
    sql(broken, "DELETE FROM events")
    assert (problem(broken).event, problem(broken).what) == (1, "removed")


def insert_event(store: SqlStore, id_: int, hash_: str, prev_hash: str | None) -> None:
    """A row written into ``events`` by hand, past the store."""
    row = {"id": id_, "pipeline": "shop", "at": at(5), "kind": "ReleaseApproved", "actor": "mallory"}
    row |= {"reason": "approved, honest", "refs": "{}", "hash": hash_, "prev_hash": prev_hash}
    with store.engine.begin() as conn:
        conn.execute(insert(events).values(row))


def test_an_event_inserted_in_sql_is_named_and_the_controller_stops_appending(broken: SqlStore) -> None:
    insert_event(broken, 11, "f" * 64, "e" * 64)
    found = problem(broken)
    assert (found.event, found.kind, found.what) == (11, "ReleaseApproved", "inserted")
    # The next append would take its id: refused, loudly, rather than chained around it.
    with pytest.raises(Permanent, match="event id 11 is taken by a row the store did not chain"):
        broken.note("shop", [event("Noted")])
    assert problem(broken) == found


def test_an_event_inserted_with_a_hash_that_follows_is_named_by_the_head(broken: SqlStore) -> None:
    """An editor who knows how the hash is made chains a forged event after the last: only the head
    (which an editor of the events alone does not move) tells."""
    head = broken.chain_head()
    row = {"id": 11, "pipeline": "shop", "environment": None, "release_id": None, "at": at(5)}
    row |= {"kind": "ReleaseApproved", "actor": "mallory", "reason": "approved, honest", "refs": "{}"}
    row |= {"state_from": None, "state_to": None, "detail": None}
    insert_event(broken, 11, chain.digest(chain.record(row, head.hash)), head.hash)
    found = problem(broken)
    assert (found.event, found.what) == (11, "inserted") and "after the chain's head" in found.detail


def test_an_event_replaced_by_one_without_a_hash_is_named(broken: SqlStore) -> None:
    sql(broken, "DELETE FROM events WHERE id = 3")
    insert_event(broken, 3, "", None)
    found = problem(broken)
    assert (found.event, found.what) == (3, "inserted") and "no hash" in found.detail
