"""``SqlStore``: ``ports.ReleaseStore`` over SQLAlchemy 2 Core, on SQLite or PostgreSQL.

Newest first means highest id first: ids only grow (``AUTOINCREMENT`` on SQLite, a sequence on
PostgreSQL), so they order releases by when they were added, whatever their timestamps say.

Every event is linked into the store's hash chain in the transaction that appends it
(``ledger.append``: the head is locked, the new events get the next ids and their hashes, the head
moves), so appends from several processes are serialised and never fork the chain.

Database errors are translated here: a database that cannot be reached or is busy raises
``Temporary("store", ...)``, anything else the database refuses raises ``Permanent("store", ...)``.
Messages name the error, never the URL's password.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from pipeline.errors import NotFound, Permanent, PipelineError, StoreLost, Temporary
from pipeline.model import (
    FINAL_STATES,
    EnvironmentState,
    Event,
    EventKind,
    Release,
    Rollback,
    RollbackState,
    State,
)
from pipeline.ports import ChainHead, ChainPage
from pipeline.store import codec, ledger
from pipeline.store.tables import as_utc
from pipeline.store.tables import environments as environment_table
from pipeline.store.tables import events as event_table
from pipeline.store.tables import locks as lock_table
from pipeline.store.tables import releases as release_table
from pipeline.store.tables import rollbacks as rollback_table
from pipeline.store.tables import webhook_deliveries as delivery_table

SERVICE = "store"
# How long a webhook delivery's id is remembered (Bitbucket retries within minutes).
DELIVERY_MEMORY = timedelta(days=7)


def normalise_url(url: str | URL) -> URL:
    """The SQLAlchemy URL to use: ``postgres://`` and ``postgresql://`` go to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as it may be shown or logged: the password, if any, is ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def _file_id(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of a file, or None when there is no such file (or no file at all)."""
    if path is None:
        return None
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for another database or an in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``, set up for the store.

    SQLite: a 30 s busy timeout, WAL journal (readers never wait for the writer, so the CLI can
    read while ``pipeline serve`` writes) and foreign keys on, for every connection.
    PostgreSQL: psycopg 3, connections checked before use (``pool_pre_ping``).
    The SQLite file's directory must exist (``open_store`` creates it).
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, future=True, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if sqlite_path(parsed) is not None:
                    _wal(cursor)
                cursor.execute("PRAGMA foreign_keys=ON")
            finally:
                cursor.close()

        return engine
    return create_engine(parsed, future=True, pool_pre_ping=True)


def _wal(cursor: Any, tries: int = 100) -> None:
    """Put a SQLite file in WAL mode (it stays so: later connections find it there). Switching
    takes a lock SQLite's busy timeout does not wait for, so when processes open a new store at
    once, the switch is tried again for a few seconds rather than failing."""
    for attempt in range(tries):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


@contextmanager
def translated_errors(engine: Engine, doing: str) -> Iterator[None]:
    """Turn SQLAlchemy errors raised inside into ``Temporary`` / ``Permanent`` for ``service="store"``.

    Our own errors (``PipelineError``) and programming errors (ValueError, TypeError...) pass through.
    """
    try:
        yield
    except PipelineError:
        raise
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        raise Temporary(SERVICE, f"{doing}: database unavailable", evidence=_evidence(engine, exc)) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise Permanent(
            SERVICE, f"{doing}: refused by the database", evidence=_evidence(engine, exc)
        ) from exc


def _evidence(engine: Engine, exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's first line of complaint, without SQL, parameters or password."""
    cause: BaseException = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines() or [""]
    text = f"{type(cause).__name__}: {lines[0]}"[:300]
    password = engine.url.password
    if password:
        text = text.replace(str(password), "***")
    return text


class SqlStore:
    """Releases, their append-only events and named locks in one SQL database.

    Build it with ``pipeline.store.open_store(url)``, which also migrates the schema; the
    constructor takes an engine whose database is already at the head revision. Thread-safe (one
    pooled connection per call). Every method implements ``ports.ReleaseStore``; see there.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thread = threading.local()  # .appended: the heads the thread's last write left
        self._file = sqlite_path(engine.url)
        self._file_id = _file_id(self._file)  # the SQLite file as opened (device, inode)
        self._root: str | None = None  # the hash of the history's first event, once there is one
        self._events_seen = 0  # the most events the history was seen to hold

    def check_intact(self) -> None:
        """StoreLost when the store is not the one this process opened: its SQLite file removed or
        replaced (a process holding the old one open would write into nothing), its history's first
        event another, or its history shorter than it was. One small read."""
        where = self.url
        current = _file_id(self._file)
        if self._file_id is None:
            self._file_id = current  # made after this process opened the store (first use)
        elif current != self._file_id:
            raise StoreLost(
                f"the store's file {self._file} was removed or replaced under this process: stop, put "
                "the right store back (or point PIPELINE_DATABASE_URL at it), and start again"
            )
        page = self.chain(after=0, limit=1)
        root = page.links[0].hash if page.links else None
        if (self._root is not None and root != self._root) or page.head.events < self._events_seen:
            raise StoreLost(
                f"the store at {where} is not the one this process opened (its history begins or ends "
                "differently now): stop, put the right store back, and start again"
            )
        self._root = self._root or root
        self._events_seen = page.head.events

    @property
    def url(self) -> str:
        """The database URL with its password hidden: safe to show and log."""
        return safe_url(self.engine.url)

    def close(self) -> None:
        """Close every pooled connection. The store opens new ones if used again."""
        self.engine.dispose()

    # --- Releases -----------------------------------------------------------------------------

    def add(self, release: Release, event_kind: EventKind, reason: str, actor: str) -> Release:
        """Store a new release (its ``id`` is ignored) and its first event, in one transaction.

        The event is ``event_kind`` at ``release.created_at``, from no state to ``release.state``,
        with refs ``{"commit": release.commit}``. Idempotent per (pipeline, commit): when the
        release is already stored (even by a concurrent add that won the race on the unique
        constraint) the stored one is returned unchanged and no event is added.
        """
        row = codec.release_to_row(release)
        self._thread.appended = ()
        with translated_errors(self.engine, f"add release {release.pipeline}@{release.commit}"):
            existing = self.by_commit(release.pipeline, release.commit)
            if existing is not None:
                return existing
            try:
                with self.engine.begin() as conn:
                    inserted = conn.execute(insert(release_table).values(row))
                    key = inserted.inserted_primary_key
                    if key is None:  # pragma: no cover - both dialects report it
                        raise Permanent(SERVICE, "the database did not return the new release's id")
                    release_id = int(key[0])
                    first = Event(
                        release_id=release_id,
                        at=release.created_at,
                        kind=event_kind,
                        actor=actor,
                        reason=reason,
                        state_from=None,
                        state_to=release.state,
                        refs={"commit": release.commit},
                    )
                    heads = ledger.append(conn, [codec.event_to_row(first, release_id, release.pipeline)])
                    added = self._get(conn, release_id)
                self._thread.appended = heads
                return added
            except sa_exc.IntegrityError:
                existing = self.by_commit(release.pipeline, release.commit)
                if existing is None:  # refused for another reason than the (pipeline, commit) key
                    raise
                return existing

    def save(self, release: Release, events: Sequence[Event]) -> Release:
        """Write every field of ``release`` (found by its ``id``) and append ``events``, all in one
        transaction: on any error, nothing is written. Each event is stored under ``release.id``
        whatever its own ``release_id`` says; event ids are assigned by the store. Returns the
        release as stored. ValueError when ``release.id`` is None; NotFound when no release has it.
        """
        if release.id is None:
            raise ValueError("save needs a stored release (id is None): use add for a new one")
        release_id = release.id
        row = codec.release_to_row(release)
        self._thread.appended = ()
        with translated_errors(self.engine, f"save release {release_id}"), self.engine.begin() as conn:
            updated = conn.execute(update(release_table).where(release_table.c.id == release_id).values(row))
            if updated.rowcount != 1:
                raise NotFound(SERVICE, f"no release {release_id}")
            heads = ledger.append(
                conn, [codec.event_to_row(item, release_id, release.pipeline) for item in events]
            )
            saved = self._get(conn, release_id)
        self._thread.appended = heads
        return saved

    def get(self, release_id: int) -> Release:
        """The release with ``release_id``; NotFound("store", "no release <id>") when there is none."""
        with translated_errors(self.engine, f"read release {release_id}"), self.engine.connect() as conn:
            return self._get(conn, release_id)

    def by_commit(self, pipeline: str, commit: str) -> Release | None:
        """The release of ``pipeline`` for ``commit`` (the full hash it was added with), or None."""
        query = select(release_table).where(
            release_table.c.pipeline == pipeline, release_table.c.commit == commit
        )
        return self._first(query, f"read release {pipeline}@{commit}")

    def active(self, pipeline: str) -> list[Release]:
        """The pipeline's releases not in a final state, newest first."""
        query = (
            select(release_table)
            .where(
                release_table.c.pipeline == pipeline,
                release_table.c.state.not_in([s.value for s in FINAL_STATES]),
            )
            .order_by(release_table.c.id.desc())
        )
        return self._all(query, f"read active releases of {pipeline}")

    def history(self, pipeline: str | None = None, limit: int = 50) -> list[Release]:
        """At most ``limit`` releases, newest first: of ``pipeline``, or of every pipeline when None."""
        query = select(release_table).order_by(release_table.c.id.desc()).limit(max(limit, 0))
        if pipeline is not None:
            query = query.where(release_table.c.pipeline == pipeline)
        return self._all(query, "read release history")

    def latest(self, pipeline: str) -> Release | None:
        """The newest release of ``pipeline`` whatever its state, or None."""
        query = (
            select(release_table)
            .where(release_table.c.pipeline == pipeline)
            .order_by(release_table.c.id.desc())
            .limit(1)
        )
        return self._first(query, f"read latest release of {pipeline}")

    def last_in(self, pipeline: str, states: Sequence[State]) -> Release | None:
        """The newest release of ``pipeline`` in one of ``states``, or None (always None for no states)."""
        if not states:
            return None
        query = (
            select(release_table)
            .where(
                release_table.c.pipeline == pipeline,
                release_table.c.state.in_([State(s).value for s in states]),
            )
            .order_by(release_table.c.id.desc())
            .limit(1)
        )
        return self._first(query, f"read last release of {pipeline} in {', '.join(states)}")

    def events(self, release_id: int) -> list[Event]:
        """Every event of the release, oldest first (by id: the order they were appended). An
        unknown release has none."""
        query = select(event_table).where(event_table.c.release_id == release_id).order_by(event_table.c.id)
        with (
            translated_errors(self.engine, f"read events of release {release_id}"),
            self.engine.connect() as conn,
        ):
            return [codec.event_from_row(row) for row in conn.execute(query).mappings()]

    def note(self, pipeline: str, events: Sequence[Event]) -> None:
        """Append events of the pipeline that concern no release (or environment) alone:
        credentials rotated, a restore drill of a backup."""
        self._thread.appended = ()
        with translated_errors(self.engine, f"note events of {pipeline}"), self.engine.begin() as conn:
            heads = ledger.append(
                conn, [codec.event_to_row(item, item.release_id, pipeline) for item in events]
            )
        self._thread.appended = heads

    def log(self, pipeline: str, environment: str | None = None, limit: int = 50) -> list[Event]:
        """The pipeline's events, newest first: of its releases and its environments, or only those
        of ``environment`` (events with it set) when given."""
        query = (
            select(event_table)
            .where(event_table.c.pipeline == pipeline)
            .order_by(event_table.c.id.desc())
            .limit(max(limit, 0))
        )
        if environment is not None:
            query = query.where(event_table.c.environment == environment)
        with translated_errors(self.engine, f"read the log of {pipeline}"), self.engine.connect() as conn:
            return [codec.event_from_row(row) for row in conn.execute(query).mappings()]

    # --- Environments -------------------------------------------------------------------------

    def environment(self, pipeline: str, name: str) -> EnvironmentState:
        """What was decided about environment ``name`` (nothing: an unlocked, unfrozen state)."""
        query = select(environment_table).where(
            environment_table.c.pipeline == pipeline, environment_table.c.name == name
        )
        with translated_errors(self.engine, f"read environment {name}"), self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return EnvironmentState(pipeline, name) if row is None else codec.environment_from_row(row)

    def save_environment(self, state: EnvironmentState, events: Sequence[Event]) -> EnvironmentState:
        """Write the environment's state and append ``events`` (filed under it), in one transaction."""
        row = codec.environment_to_row(state)
        key = (environment_table.c.pipeline == state.pipeline) & (environment_table.c.name == state.name)
        self._thread.appended = ()
        with translated_errors(self.engine, f"save environment {state.name}"), self.engine.begin() as conn:
            if conn.execute(update(environment_table).where(key).values(row)).rowcount != 1:
                conn.execute(insert(environment_table).values(row))
            filed = [replace(item, environment=item.environment or state.name) for item in events]
            heads = ledger.append(conn, [codec.event_to_row(e, e.release_id, state.pipeline) for e in filed])
        self._thread.appended = heads
        return self.environment(state.pipeline, state.name)

    # --- Rollbacks ----------------------------------------------------------------------------

    def add_rollback(self, rollback: Rollback, events: Sequence[Event]) -> Rollback:
        """Store a new rollback (its ``id`` is ignored) and its first events, in one transaction;
        events without a release are filed under its environment, and refer to it."""
        row = codec.rollback_to_row(rollback)
        self._thread.appended = ()
        with (
            translated_errors(self.engine, f"add a rollback of {rollback.environment}"),
            self.engine.begin() as conn,
        ):
            key = conn.execute(insert(rollback_table).values(row)).inserted_primary_key
            if key is None:  # pragma: no cover - both dialects report it
                raise Permanent(SERVICE, "the database did not return the new rollback's id")
            rollback_id = int(key[0])
            heads = self._rollback_events(conn, replace(rollback, id=rollback_id), events)
            added = self._get_rollback(conn, rollback_id)
        self._thread.appended = heads
        return added

    def save_rollback(self, rollback: Rollback, events: Sequence[Event]) -> Rollback:
        """Write every field of ``rollback`` (by id) and append ``events``, in one transaction."""
        if rollback.id is None:
            raise ValueError("save_rollback needs a stored rollback (id is None): use add_rollback")
        row = codec.rollback_to_row(rollback)
        self._thread.appended = ()
        with translated_errors(self.engine, f"save rollback {rollback.id}"), self.engine.begin() as conn:
            changed = conn.execute(
                update(rollback_table).where(rollback_table.c.id == rollback.id).values(row)
            )
            if changed.rowcount != 1:
                raise NotFound(SERVICE, f"no rollback {rollback.id}")
            heads = self._rollback_events(conn, rollback, events)
            saved = self._get_rollback(conn, rollback.id)
        self._thread.appended = heads
        return saved

    def rollback(self, rollback_id: int) -> Rollback:
        """One rollback; NotFound when there is none."""
        with translated_errors(self.engine, f"read rollback {rollback_id}"), self.engine.connect() as conn:
            return self._get_rollback(conn, rollback_id)

    def rollbacks(self, pipeline: str, *, active: bool = False, limit: int = 50) -> list[Rollback]:
        """The pipeline's rollbacks newest first; ``active``: only those not final."""
        query = (
            select(rollback_table)
            .where(rollback_table.c.pipeline == pipeline)
            .order_by(rollback_table.c.id.desc())
            .limit(max(limit, 0))
        )
        if active:
            finals = [s.value for s in RollbackState if s.is_final]
            query = query.where(rollback_table.c.state.not_in(finals))
        with translated_errors(self.engine, f"read rollbacks of {pipeline}"), self.engine.connect() as conn:
            return [codec.rollback_from_row(row) for row in conn.execute(query).mappings()]

    def _rollback_events(
        self, conn: Connection, rollback: Rollback, events: Sequence[Event]
    ) -> tuple[ChainHead, ...]:
        filed = [
            replace(
                item,
                environment=item.environment or rollback.environment,
                refs={"rollback": str(rollback.id), **item.refs},
            )
            for item in events
        ]
        return ledger.append(conn, [codec.event_to_row(e, e.release_id, rollback.pipeline) for e in filed])

    def _get_rollback(self, conn: Connection, rollback_id: int) -> Rollback:
        row = (
            conn.execute(select(rollback_table).where(rollback_table.c.id == rollback_id)).mappings().first()
        )
        if row is None:
            raise NotFound(SERVICE, f"no rollback {rollback_id}")
        return codec.rollback_from_row(row)

    # --- Locks --------------------------------------------------------------------------------

    def acquire_lock(self, name: str, holder: str, now: datetime, ttl_seconds: float) -> bool:
        """Take lock ``name`` for ``holder`` until ``now + ttl_seconds``; True when held afterwards.

        Taken when nobody holds it, when its holder's lease has expired (``expires_at <= now``) or
        when ``holder`` already holds it (renewed). False while another holder's lease is live.
        Atomic on SQLite and PostgreSQL: a conditional UPDATE, then an INSERT that the primary key
        refuses when someone else got there first.
        """
        expires_at = as_utc(now) + timedelta(seconds=ttl_seconds)
        with translated_errors(self.engine, f"acquire lock {name}"):
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(lock_table)
                    .where(
                        lock_table.c.name == name,
                        (lock_table.c.holder == holder) | (lock_table.c.expires_at <= as_utc(now)),
                    )
                    .values(holder=holder, expires_at=expires_at)
                )
                if taken.rowcount == 1:
                    return True
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(lock_table).values(name=name, holder=holder, expires_at=expires_at))
            except sa_exc.IntegrityError:
                return False  # someone else holds a live lease
            return True

    def lock_holder(self, name: str, now: datetime) -> str | None:
        """Who holds a live lease on lock ``name`` now, or None."""
        with translated_errors(self.engine, f"read lock {name}"), self.engine.connect() as conn:
            row = conn.execute(
                select(lock_table.c.holder).where(
                    lock_table.c.name == name, lock_table.c.expires_at > as_utc(now)
                )
            ).first()
            return None if row is None else str(row[0])

    def release_lock(self, name: str, holder: str) -> None:
        """Give lock ``name`` back; a no-op unless ``holder`` holds it (expired or not)."""
        with translated_errors(self.engine, f"release lock {name}"), self.engine.begin() as conn:
            conn.execute(delete(lock_table).where(lock_table.c.name == name, lock_table.c.holder == holder))

    # --- Webhook deliveries ---------------------------------------------------------------

    def record_delivery(self, pipeline: str, request_uuid: str, event: str, at: datetime) -> bool:
        """Note a webhook delivery; False when this ``request_uuid`` was noted before (a repeat).

        Atomic: of two concurrent calls with one uuid, exactly one returns True. Deliveries noted
        more than ``DELIVERY_MEMORY`` before ``at`` are forgotten on the way.
        """
        with translated_errors(self.engine, f"record webhook delivery {request_uuid}"):
            with self.engine.begin() as conn:
                conn.execute(
                    delete(delivery_table).where(delivery_table.c.received_at < as_utc(at) - DELIVERY_MEMORY)
                )
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(delivery_table).values(
                            pipeline=pipeline, request_uuid=request_uuid, event=event, received_at=as_utc(at)
                        )
                    )
            except sa_exc.IntegrityError:
                return False
            return True

    # --- The events' hash chain ---------------------------------------------------------------

    def chain_head(self) -> ChainHead:
        """The head of the events' hash chain now (one read of its row)."""
        with translated_errors(self.engine, "read the chain's head"), self.engine.connect() as conn:
            return ledger.read_head(conn)

    def appended(self) -> tuple[ChainHead, ...]:
        """The chain's head after each event this thread's last write appended (no query)."""
        return tuple(getattr(self._thread, "appended", ()))

    def chain(self, after: int = 0, limit: int = 1000, since: datetime | None = None) -> ChainPage:
        """At most ``limit`` events with an id above ``after`` (``since``: at that time or later),
        in id order, with the chain's head, in one snapshot (see ``ledger.read_page``)."""
        with translated_errors(self.engine, "read the chain"), self.engine.connect() as conn:
            return ledger.read_page(conn, after, limit, since)

    # --- Helpers ------------------------------------------------------------------------------

    def _get(self, conn: Connection, release_id: int) -> Release:
        row = conn.execute(select(release_table).where(release_table.c.id == release_id)).mappings().first()
        if row is None:
            raise NotFound(SERVICE, f"no release {release_id}")
        return codec.release_from_row(row)

    def _first(self, query: Any, doing: str) -> Release | None:
        with translated_errors(self.engine, doing), self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
            return None if row is None else codec.release_from_row(row)

    def _all(self, query: Any, doing: str) -> list[Release]:
        with translated_errors(self.engine, doing), self.engine.connect() as conn:
            return [codec.release_from_row(row) for row in conn.execute(query).mappings()]
