"""The release store, one suite for every backend (``store_url``: SQLite always, PostgreSQL when a
server answers on 127.0.0.1:5432)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from pipeline.errors import NotFound, Permanent, Temporary
from pipeline.model import (
    Approval,
    Change,
    CheckProgress,
    Commit,
    EnvironmentState,
    Event,
    Person,
    Release,
    Rollback,
    RollbackState,
    State,
    TakenOut,
)
from pipeline.store import SqlStore, alembic_config, migrate, open_store
from pipeline.store.sql import normalise_url, safe_url
from pipeline.store.tables import VERSION_TABLE, metadata, releases

T0 = datetime(2026, 5, 4, 9, 30, 15, 123456, tzinfo=UTC)
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
ALICE = Person(username="alice", uuid="{a1}", account_id="557058:a1", display_name="Alice Ops")
BOB = Person(username="bob", uuid="{b2}", account_id="557058:b2", display_name="Bob Owner")
PARIS = timezone(timedelta(hours=2))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new_release(
    pipeline: str = "shop", commit: str = "a" * 40, state: State = State.DETECTED, **kw: Any
) -> Release:
    return Release(
        pipeline=pipeline,
        commit=commit,
        branch="develop",
        state=state,
        created_at=kw.pop("created_at", T0),
        updated_at=kw.pop("updated_at", T0),
        **kw,
    )


def full_release() -> Release:
    """A release with every field set to something other than its default."""
    return Release(
        pipeline="shop",
        commit="f" * 40,
        branch="develop",
        state=State.PRODUCTION_VERIFYING,
        created_at=at(0),
        updated_at=at(90).astimezone(PARIS),  # any offset goes in; UTC comes out, equal
        id=None,
        commits=(
            Commit(
                "f" * 40,
                "Merge PR #7: pay by card\n\nbody",
                "Alice <a@example.com>",
                ALICE,
                at(-60),
                parents=("1" * 40, "e" * 40),
            ),
            Commit("e" * 40, "fix: typo ✓", "ghost <g@example.com>", None, at(-61)),
        ),
        changes=(
            Change(7, "Pay by card", ALICE, "https://bitbucket.org/acme/shop/pull-requests/7", "f" * 12),
            Change(6, "Unlinked author", None, "https://bitbucket.org/acme/shop/pull-requests/6", "e" * 12),
        ),
        staging_app="shop-staging",
        staging_build_id="build-1",
        staging_release_id="rel-s-1",
        staging_release_version=41,
        staging_slug_id="slug-1",
        staging_verified_at=at(10),
        release_branch="release/ffffffffffff",
        pull_request_id=12,
        pull_request_url="https://bitbucket.org/acme/shop/pull-requests/12",
        base_commit="1" * 40,
        approvals=(
            Approval(BOB, at(20), True, "allowed approver", 12, "f" * 40, "policy-digest", "approval"),
            Approval(Person(username="alice"), at(21), False, "author of a change"),
        ),
        approved_at=at(20),
        production_app="shop-production",
        backup_id="0d4c7c2e-backup",
        backup_name="b042",
        promotion_id="promo-1",
        previous_release_id="rel-p-9",
        previous_release_version=9,
        production_release_id="rel-p-10",
        production_release_version=10,
        rollback_release_id="rel-p-11",
        rollback_release_version=11,
        released_at=at(40),
        rollback_verified_at=at(45),
        rollback_reason="checks failed",
        verification_started_at=at(41),
        check_progress=(
            CheckProgress("http /health", failures=0, passing_since=at(41), next_at=at(42), detail="200"),
            CheckProgress("dynos", failures=2, next_at=at(43), detail="web.1 starting"),
            CheckProgress("release_phase", done=True, detail="v10 succeeded"),
        ),
        pending_action="promote",
        pending_since=at(30),
        reason="checking production",
        superseded_by=99,
        feedback=("staging:#7", "production:#7?"),
        description_digest="digest-1",
        merge_task="https://api.bitbucket.org/2.0/repositories/acme/shop/pullrequests/12/merge/task-status/t1",
        backup_floor=41,
    )


R = TypeVar("R")


def race(n: int, work: Callable[[int], R]) -> list[R]:
    """Run ``work(i)`` in ``n`` threads released at the same moment; their results, in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# --- Schema ------------------------------------------------------------------------------------


def test_releases_table_has_one_column_per_release_field() -> None:
    assert set(releases.c.keys()) == {f.name for f in fields(Release)}


def test_migrations_build_exactly_the_tables_the_code_uses(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []


def test_migrating_again_is_a_no_op(store_url: str) -> None:
    first = open_store(store_url)
    added = first.add(new_release(), "ReleaseDetected", "new", "controller")
    second = open_store(store_url)
    migrate(second.engine)
    with second.engine.connect() as conn:
        versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    assert versions == [HEAD]
    assert second.get(added.id or 0) == added
    assert len(second.events(added.id or 0)) == 1
    first.close()
    second.close()


def test_processes_opening_a_new_database_at_once_migrate_it_once(store_url: str) -> None:
    stores = race(4, lambda _i: open_store(store_url))
    try:
        with stores[0].engine.connect() as conn:
            assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD]
        assert stores[3].add(new_release(), "ReleaseDetected", "new", "controller").id is not None
    finally:
        for opened in stores:
            opened.close()


def test_opening_a_store_creates_the_sqlite_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # migrations are found from any working directory
    path = tmp_path / "missing" / "deeper" / "pipeline.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert path.is_file()
        assert store.history() == []
    finally:
        store.close()


def test_opening_a_store_by_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///.pipeline/pipeline.db")
    try:
        store.add(new_release(), "ReleaseDetected", "new", "controller")
        assert (tmp_path / ".pipeline" / "pipeline.db").is_file()
    finally:
        store.close()


# --- Releases ----------------------------------------------------------------------------------


def test_a_fully_populated_release_round_trips(store: SqlStore) -> None:
    release = full_release()
    unset = [f.name for f in fields(Release) if f.name != "id" and getattr(release, f.name) == f.default]
    assert unset == [], "full_release() must set every field with a default"

    added = store.add(release, "ReleaseDetected", "new", "controller")
    assert added.id is not None
    assert added == replace(release, id=added.id)
    assert store.get(added.id) == replace(release, id=added.id)

    emptied = replace(
        added,
        commits=(),
        changes=(),
        approvals=(),
        staging_build_id=None,
        approved_at=None,
        pending_action=None,
        pending_since=None,
        check_progress=(),
        feedback=(),
        superseded_by=None,
    )
    assert store.save(emptied, []) == emptied
    assert store.get(added.id) == emptied
    assert store.save(added, []) == added
    assert store.by_commit("shop", "f" * 40) == added


def test_times_come_back_aware_and_in_utc(store: SqlStore, store_url: str) -> None:
    url = store_url
    if make_url(url).get_backend_name() == "postgresql":  # a session in another time zone
        url = make_url(url).update_query_dict({"options": "-c timezone=Asia/Tokyo"}).render_as_string(False)
    tokyo = open_store(url)
    try:
        added = tokyo.add(full_release(), "ReleaseDetected", "new", "controller")
        for stored in (tokyo.get(added.id or 0), store.get(added.id or 0)):
            times = [stored.created_at, stored.updated_at, stored.released_at]
            times += [p.next_at for p in stored.check_progress if p.next_at is not None]
            times += [c.date for c in stored.commits] + [a.at for a in stored.approvals]
            assert all(t is not None and t.utcoffset() == timedelta(0) for t in times), times
            assert stored.updated_at == at(90)
        assert all(
            e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in tokyo.events(added.id or 0)
        )
    finally:
        tokyo.close()


def test_naive_times_are_refused_before_anything_is_written(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.add(new_release(created_at=datetime(2026, 1, 1)), "ReleaseDetected", "new", "controller")
    assert store.history() == []
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    naive_commit = Commit("b" * 40, "m", "x", None, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        store.save(replace(added, commits=(naive_commit,)), [])
    assert store.get(added.id or 0) == added


def test_add_is_idempotent_per_pipeline_and_commit(store: SqlStore) -> None:
    first = store.add(new_release(), "ReleaseDetected", "new", "controller")
    again = store.add(
        new_release(state=State.GATED, reason="different"), "ReleaseDetected", "again", "someone"
    )
    assert again == first
    assert [e.kind for e in store.events(first.id or 0)] == ["ReleaseDetected"]
    other_pipeline = store.add(new_release(pipeline="blog"), "ReleaseDetected", "new", "controller")
    assert other_pipeline.id != first.id


def test_concurrent_adds_store_one_release_and_one_event(store: SqlStore) -> None:
    results = race(6, lambda i: store.add(new_release(reason=f"from {i}"), "ReleaseDetected", "new", f"w{i}"))
    assert len({r.id for r in results}) == 1
    assert all(r == results[0] for r in results)
    assert len(store.history()) == 1
    assert len(store.events(results[0].id or 0)) == 1


def test_add_records_the_first_event(store: SqlStore) -> None:
    added = store.add(new_release(state=State.DETECTED), "ReleaseDetected", "develop moved", "controller")
    [event] = store.events(added.id or 0)
    assert event == Event(
        id=event.id,
        release_id=added.id or 0,
        at=T0,
        kind="ReleaseDetected",
        actor="controller",
        reason="develop moved",
        state_from=None,
        state_to=State.DETECTED,
        refs={"commit": "a" * 40},
        pipeline="shop",
    )


def test_save_writes_the_release_and_appends_events(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    rid = added.id or 0
    gated = replace(added, state=State.GATED, updated_at=at(1), reason="builds green")
    stored = store.save(
        gated,
        [
            Event(rid, at(1), "GateChecked", "controller", "2 statuses", refs={"build": "b1", "ci": "ok"}),
            # The store files events under the saved release, whatever their release_id says.
            Event(0, at(1), "ReleaseGated", "controller", "builds green", State.DETECTED, State.GATED),
        ],
    )
    assert stored == gated
    assert store.get(rid) == gated
    history = store.events(rid)
    assert [e.kind for e in history] == ["ReleaseDetected", "GateChecked", "ReleaseGated"]
    assert all(e.release_id == rid for e in history)
    assert history[1].refs == {"build": "b1", "ci": "ok"}
    assert (history[2].state_from, history[2].state_to) == (State.DETECTED, State.GATED)
    ids = [e.id or 0 for e in history]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_an_event_the_database_refuses_leaves_nothing_written(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    rid = added.id or 0
    bad = Event(rid, at(2), None, "controller", "no kind")  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(Permanent) as caught:
        store.save(
            replace(added, state=State.GATED, reason="changed"),
            [Event(rid, at(2), "ReleaseGated", "controller", "ok"), bad],
        )
    assert caught.value.service == "store"
    assert store.get(rid) == added
    assert [e.kind for e in store.events(rid)] == ["ReleaseDetected"]


def test_an_exception_mid_transaction_leaves_nothing_written(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    rid = added.id or 0
    unencodable = Event(rid, at(2), "Odd", "controller", "refs", refs={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.save(
            replace(added, state=State.GATED),
            [Event(rid, at(2), "ReleaseGated", "controller", "ok"), unencodable],
        )
    assert store.get(rid) == added
    assert [e.kind for e in store.events(rid)] == ["ReleaseDetected"]


def test_save_needs_a_stored_release(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="id is None"):
        store.save(new_release(), [])
    with pytest.raises(NotFound, match="no release 4242"):
        store.save(replace(new_release(), id=4242), [Event(4242, T0, "Lost", "controller", "")])
    assert store.events(4242) == []


def test_get_raises_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound) as caught:
        store.get(987)
    assert caught.value.service == "store"
    assert str(caught.value) == "store: no release 987"


def test_queries_order_newest_first_and_filter(store: SqlStore) -> None:
    def add(pipeline: str, commit: str, state: State, created: float) -> Release:
        release = new_release(pipeline, commit * 40, state, created_at=at(created), updated_at=at(created))
        return store.add(release, "ReleaseDetected", "new", "controller")

    old_done = add("shop", "1", State.BACKUPS_VERIFIED, 0)
    failed = add("shop", "2", State.STAGING_FAILED, 1)
    waiting = add("shop", "3", State.AWAITING_APPROVAL, 2)
    blog = add("blog", "4", State.GATED, 3)
    # Added last but stamped earliest: ids, not timestamps, say what is newest.
    newest = add("shop", "5", State.DETECTED, -100)

    assert store.active("shop") == [newest, waiting]
    assert store.active("blog") == [blog]
    assert store.active("nothing") == []
    assert store.history("shop") == [newest, waiting, failed, old_done]
    assert store.history("shop", limit=2) == [newest, waiting]
    assert store.history() == [newest, blog, waiting, failed, old_done]
    assert store.history(limit=1) == [newest]
    assert store.latest("shop") == newest
    assert store.latest("blog") == blog
    assert store.latest("nothing") is None
    assert store.last_in("shop", [State.BACKUPS_VERIFIED, State.STAGING_FAILED]) == failed
    assert store.last_in("shop", [State.BACKUPS_VERIFIED]) == old_done
    assert store.last_in("shop", [State.GATED]) is None
    assert store.last_in("blog", [State.GATED]) == blog
    assert store.last_in("shop", []) is None
    assert store.by_commit("shop", "3" * 40) == waiting
    assert store.by_commit("blog", "3" * 40) is None

    released = store.save(replace(waiting, state=State.REJECTED), [])
    assert store.active("shop") == [newest]
    assert store.last_in("shop", [State.REJECTED]) == released


def test_events_come_oldest_first(store: SqlStore) -> None:
    first = store.add(new_release(commit="1" * 40), "ReleaseDetected", "new", "controller")
    second = store.add(new_release(commit="2" * 40), "ReleaseDetected", "new", "controller")
    store.save(first, [Event(0, at(5), "A", "controller", "")])
    store.save(second, [Event(0, at(5), "Other", "controller", "")])
    # Appended later with an earlier time: the order is the order of appending.
    store.save(first, [Event(0, at(1), "B", "ops", ""), Event(0, at(9), "C", "controller", "")])
    assert [e.kind for e in store.events(first.id or 0)] == ["ReleaseDetected", "A", "B", "C"]
    assert [e.kind for e in store.events(second.id or 0)] == ["ReleaseDetected", "Other"]
    assert store.events(12345) == []


def test_the_store_cannot_change_events() -> None:
    public = {name for name in dir(SqlStore) if not name.startswith("_")}
    assert not {n for n in public if "event" in n and n != "events"}
    assert not {n for n in public if n.startswith(("delete", "remove", "update", "edit"))}


# --- Locks -------------------------------------------------------------------------------------


def test_locks_take_renew_refuse_expire_and_release(store: SqlStore) -> None:
    assert store.acquire_lock("leader", "a", T0, 60)
    assert not store.acquire_lock("leader", "b", at(0.5), 60)
    assert store.acquire_lock("leader", "a", at(0.9), 60)  # renewed until 1.9 minutes
    assert not store.acquire_lock("leader", "b", at(1.5), 60)  # alive thanks to the renewal
    assert store.acquire_lock("other", "b", at(1.5), 60)  # names are independent
    assert store.acquire_lock("leader", "b", at(2), 60)  # a's lease expired
    assert not store.acquire_lock("leader", "a", at(2.1), 60)

    store.release_lock("leader", "a")  # not a's to give back: no-op
    assert not store.acquire_lock("leader", "c", at(2.2), 60)
    store.release_lock("leader", "b")
    assert store.acquire_lock("leader", "c", at(2.3), 60)
    store.release_lock("never-taken", "c")


def test_lock_expiry_ignores_time_zones(store: SqlStore) -> None:
    assert store.acquire_lock("leader", "a", T0.astimezone(PARIS), 60)
    assert not store.acquire_lock("leader", "b", at(0.9), 60)
    assert store.acquire_lock("leader", "b", at(1).astimezone(timezone(timedelta(hours=-7))), 60)


def test_one_of_many_concurrent_takers_gets_a_free_lock(store: SqlStore) -> None:
    assert race(6, lambda i: store.acquire_lock("leader", f"h{i}", T0, 60)).count(True) == 1
    store.release_lock("leader", "h0")
    store.acquire_lock("expired", "old", T0, 1)
    assert race(6, lambda i: store.acquire_lock("expired", f"h{i}", at(1), 60)).count(True) == 1


# --- Backend specifics ---------------------------------------------------------------------------


def test_sqlite_readers_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.db"
    store = open_store(f"sqlite:///{path}")
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE releases SET reason = 'in flight'")
        assert store.get(added.id or 0) == added  # reads the last committed state, at once
        assert store.history() == [added]
        writer.execute("COMMIT")
        assert store.get(added.id or 0).reason == "in flight"
    finally:
        writer.close()
        store.close()


def test_an_unreachable_database_is_temporary_and_hides_the_password() -> None:
    with pytest.raises(Temporary) as caught:
        open_store("postgresql://deploy:s3cret-pw@127.0.0.1:1/pipeline")
    assert caught.value.service == "store"
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in repr(caught.value.args)


def test_urls() -> None:
    assert normalise_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    assert safe_url("postgresql://u:p4ss@h/db") == "postgresql://u:***@h/db"


def test_the_store_url_hides_the_password(store: SqlStore) -> None:
    password = store.engine.url.password
    assert password is None or str(password) not in store.url
    with store.engine.connect() as conn:
        assert conn.execute(select(releases.c.id)).all() == []


# --- Upgrades, event details, webhook deliveries ---------------------------------------------


def test_a_database_of_the_first_schema_upgrades_keeping_its_releases(store_url: str) -> None:
    from pipeline.store.sql import make_engine, sqlite_path

    path = sqlite_path(store_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(store_url)
    migrate(engine, "0001")
    row = {
        "pipeline": "shop",
        "commit": "c" * 40,
        "branch": "develop",
        "state": "awaiting_approval",
        "created_at": T0,
        "updated_at": T0,
        "commits": "[]",
        "changes": "[]",
        "staging_app": "shop-staging",
        "approvals": '[{"user": {"username": "bob"}, "at": "2026-05-04T09:30:15+00:00", '
        '"counted": true, "reason": "ok"}]',
        "production_app": "shop-production",
        "check_attempts": 0,
        "reason": "waiting",
    }
    columns = ", ".join(f'"{name}"' for name in row)
    values = ", ".join(f":{name}" for name in row)
    with engine.begin() as conn:  # the table as revision 0001 made it, not as the code has it now
        conn.execute(text(f"INSERT INTO releases ({columns}) VALUES ({values})"), row)
        conn.execute(
            text(
                "INSERT INTO events (release_id, at, kind, actor, reason, refs) "
                "VALUES (1, :at, 'ReleaseDetected', 'controller', 'new', '{}')"
            ),
            {"at": T0},
        )
    migrate(engine)
    engine.dispose()
    store = open_store(store_url)
    try:
        (old,) = store.history("shop")
        assert old.feedback == () and old.base_commit is None and old.description_digest is None
        (approval,) = old.approvals
        assert approval.counted and approval.kind == "approval" and approval.policy_digest == ""
        assert old.check_progress == ()
        (event,) = store.events(old.id or 0)
        assert event.pipeline == "shop" and event.environment is None  # filled in from its release
    finally:
        store.close()


def test_event_details_round_trip(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    rid = added.id or 0
    output = "Applying 003_notes.sql\n" * 200
    store.save(added, [Event(rid, at(1), "StagingVerified", "controller", "ok", detail=output)])
    assert [e.detail for e in store.events(rid)] == ["", output]


def test_a_webhook_delivery_is_noted_once(store: SqlStore) -> None:
    assert store.record_delivery("shop", "req-1", "repo:push", T0) is True
    assert store.record_delivery("shop", "req-1", "repo:push", at(1)) is False
    assert store.record_delivery("other", "req-1", "repo:push", at(1)) is True  # per pipeline
    # Forgotten after a week: Bitbucket retries within minutes, the table stays small.
    assert store.record_delivery("shop", "req-2", "repo:push", T0 + timedelta(days=8)) is True
    assert store.record_delivery("shop", "req-1", "repo:push", T0 + timedelta(days=8)) is True


def test_concurrent_repeats_of_one_delivery_are_noted_once(store: SqlStore) -> None:
    taken = race(6, lambda _i: store.record_delivery("shop", "req-same", "pullrequest:approved", T0))
    assert sorted(taken) == [False] * 5 + [True]


# --- Environments, rollbacks, the log ----------------------------------------------------------


def test_an_environment_starts_undecided_and_keeps_what_people_decide(store: SqlStore) -> None:
    assert store.environment("shop", "production") == EnvironmentState("shop", "production")
    frozen = EnvironmentState(
        "shop", "production", frozen_at=at(1), frozen_by="ops", freeze_reason="year end", frozen_until=at(60)
    )
    event = Event(None, at(1), "EnvironmentFrozen", "ops", "year end")
    assert store.save_environment(frozen, [event]) == frozen
    locked = replace(frozen, locked_at=at(2), locked_by="controller", lock_reason="rolled back")
    store.save_environment(locked, [Event(None, at(2), "EnvironmentLocked", "controller", "rolled back")])
    assert store.environment("shop", "production") == locked
    assert store.environment("shop", "staging") == EnvironmentState("shop", "staging")
    assert store.environment("other", "production") == EnvironmentState("other", "production")
    logged = store.log("shop", environment="production")
    assert [(e.kind, e.environment, e.release_id) for e in logged] == [
        ("EnvironmentLocked", "production", None),
        ("EnvironmentFrozen", "production", None),
    ]


def test_the_log_holds_releases_and_environments_newest_first(store: SqlStore) -> None:
    added = store.add(new_release(), "ReleaseDetected", "new", "controller")
    store.save_environment(
        EnvironmentState("shop", "staging", frozen_at=at(3), frozen_by="ops", freeze_reason="demo"),
        [Event(None, at(3), "EnvironmentFrozen", "ops", "demo")],
    )
    store.save(added, [Event(added.id or 0, at(4), "GatePassed", "controller", "green")])
    assert [e.kind for e in store.log("shop")] == ["GatePassed", "EnvironmentFrozen", "ReleaseDetected"]
    assert [e.kind for e in store.log("shop", limit=1)] == ["GatePassed"]
    assert store.log("other") == []


def rollback_of(state: RollbackState = RollbackState.REQUESTED, **fields: Any) -> Rollback:
    return Rollback(
        pipeline="shop",
        environment="production",
        app="shop-production",
        state=state,
        requested_at=at(0),
        requested_by="ops",
        reason="checkout broken",
        from_release_id="rel-12",
        from_version=12,
        to_release_id="rel-10",
        to_version=10,
        updated_at=at(0),
        **fields,
    )


def test_rollbacks_round_trip_with_their_events(store: SqlStore) -> None:
    live = store.add(new_release(), "ReleaseDetected", "new", "controller")
    asked = rollback_of(
        to_slug_id="slug-10",
        taken_out=(
            TakenOut(12, live.id, "a" * 40, "Promote shop-staging v41"),
            TakenOut(11, None, None, "Set FOO config var"),
        ),
        forced=("v10 never passed verification",),
        check_progress=(CheckProgress("http /health", failures=1, next_at=at(1)),),
    )
    first = Event(live.id, at(0), "RollbackRequested", "ops", "checkout broken")
    stored = store.add_rollback(asked, [first])
    assert stored.id is not None and stored == replace(asked, id=stored.id)
    (event,) = store.log("shop", environment="production")
    assert event.refs == {"rollback": str(stored.id)} and event.release_id == live.id

    running = replace(
        stored,
        state=RollbackState.VERIFYING,
        heroku_release_id="rel-13",
        heroku_version=13,
        pending_since=at(1),
    )
    assert store.save_rollback(running, []) == running
    assert [r.id for r in store.rollbacks("shop", active=True)] == [stored.id]
    done = replace(running, state=RollbackState.VERIFIED, verified_at=at(2), outcome="verified")
    store.save_rollback(done, [Event(None, at(2), "RollbackVerified", "controller", "ok")])
    assert store.rollback(stored.id) == done
    assert store.rollbacks("shop", active=True) == [] and store.rollbacks("shop") == [done]
    with pytest.raises(NotFound):
        store.rollback(9999)
