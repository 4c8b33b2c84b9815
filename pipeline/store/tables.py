"""The store's tables, as SQLAlchemy Core metadata.

This is the shape the code reads and writes; ``migrations/versions`` is how a database gets there.
The two must agree: ``tests/integration/test_store.py`` compares them with Alembic's autogenerate
and fails on any difference, and checks that ``releases`` has one column per ``Release`` field.

- ``releases``: one column per scalar ``Release`` field. ``commits``, ``changes``, ``approvals``
  and ``feedback`` are JSON text (lists of plain dicts, see ``codec``); ``state`` is the ``State`` value.
- ``events``: the append-only history, of releases and of environments (``environment`` set). The
  store inserts rows here and never updates or deletes one. Each row carries ``hash`` and
  ``prev_hash``: the events form one hash chain in id order (``chain``).
- ``chain_head``: one row (``id`` 1): the chain's last event id, its hash and how many events the
  chain holds. Every append locks it, reads it and moves it in the appending transaction, so
  appends from several processes are serialised and never fork the chain.
- ``locks``: named leases (``name`` -> ``holder`` until ``expires_at``).
- ``environments``: per pipeline and stage, what people decided: a lock (after a rollback), a
  freeze, a one-time override of the window for one release. No row: nothing decided.
- ``rollbacks``: the rollbacks people asked for, carried out by the controller like releases.
- ``webhook_deliveries``: the ``X-Request-UUID`` of every Bitbucket webhook delivery taken in, so a
  repeated delivery (Bitbucket retries) is recognised and ignored; pruned after a week.

Every timestamp column is ``UtcDateTime``: it refuses naive datetimes, writes UTC and always reads
back an aware UTC datetime (SQLite keeps no time zone, PostgreSQL answers in the session's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Alembic keeps its bookkeeping here rather than in ``alembic_version``, so the store can share a
# PostgreSQL database with an application that uses Alembic itself.
VERSION_TABLE = "pipeline_alembic_version"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC. Raises ValueError on a naive datetime: the model's times are always aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store keeps timezone-aware UTC times")
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that takes aware datetimes only and returns aware UTC ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        # SQLite's DateTime drops the offset when it writes: hand it the UTC wall time, so text
        # comparison and ordering in SQL stay right.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - every supported driver parses it
            value = datetime.fromisoformat(str(value))
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", Text, nullable=False),
    Column("commit", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("commits", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("base_commit", Text, nullable=True),
    Column("staging_app", Text, nullable=False),
    Column("staging_build_id", Text, nullable=True),
    Column("staging_release_id", Text, nullable=True),
    Column("staging_release_version", Integer, nullable=True),
    Column("staging_slug_id", Text, nullable=True),
    Column("staging_verified_at", UtcDateTime, nullable=True),
    Column("release_branch", Text, nullable=True),
    Column("pull_request_id", Integer, nullable=True),
    Column("pull_request_url", Text, nullable=True),
    Column("approvals", Text, nullable=False),
    Column("approved_at", UtcDateTime, nullable=True),
    Column("production_app", Text, nullable=False),
    Column("backup_id", Text, nullable=True),
    Column("backup_name", Text, nullable=True),
    Column("promotion_id", Text, nullable=True),
    Column("previous_release_id", Text, nullable=True),
    Column("previous_release_version", Integer, nullable=True),
    Column("production_release_id", Text, nullable=True),
    Column("production_release_version", Integer, nullable=True),
    Column("rollback_release_id", Text, nullable=True),
    Column("rollback_release_version", Integer, nullable=True),
    Column("released_at", UtcDateTime, nullable=True),
    Column("rollback_verified_at", UtcDateTime, nullable=True),
    Column("rollback_reason", Text, nullable=False),
    Column("verification_started_at", UtcDateTime, nullable=True),
    Column("check_progress", Text, nullable=False),
    Column("pending_action", Text, nullable=True),
    Column("pending_since", UtcDateTime, nullable=True),
    Column("reason", Text, nullable=False),
    Column("superseded_by", Integer, nullable=True),
    Column("feedback", Text, nullable=False),
    Column("description_digest", Text, nullable=True),
    Column("merge_task", Text, nullable=True),
    Column("backup_floor", Integer, nullable=True),
    UniqueConstraint("pipeline", "commit"),
    Index(None, "pipeline", "state"),
    Index(None, "pipeline", "id"),
    sqlite_autoincrement=True,
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", Text, nullable=False),
    Column("release_id", Integer, ForeignKey("releases.id"), nullable=True),
    Column("environment", Text, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("state_from", Text, nullable=True),
    Column("state_to", Text, nullable=True),
    Column("refs", Text, nullable=False),
    Column("detail", Text, nullable=True),
    Column("hash", Text, nullable=False),
    Column("prev_hash", Text, nullable=True),
    Index(None, "release_id", "id"),
    Index(None, "pipeline", "id"),
    sqlite_autoincrement=True,
)

# The one row (``id`` 1) that says where the events' hash chain ends. ``event_id`` 0 and ``hash``
# "" while the store holds no event.
CHAIN_HEAD_ROW = 1
chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("events", Integer, nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("hash", Text, nullable=False),
    CheckConstraint("id = 1", name="ck_chain_head_one_row"),
)

environments = Table(
    "environments",
    metadata,
    Column("pipeline", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("locked_at", UtcDateTime, nullable=True),
    Column("locked_by", Text, nullable=False),
    Column("lock_reason", Text, nullable=False),
    Column("frozen_at", UtcDateTime, nullable=True),
    Column("frozen_by", Text, nullable=False),
    Column("freeze_reason", Text, nullable=False),
    Column("frozen_until", UtcDateTime, nullable=True),
    Column("override_release", Integer, nullable=True),
    Column("override_at", UtcDateTime, nullable=True),
    Column("override_by", Text, nullable=False),
    Column("override_reason", Text, nullable=False),
)

rollbacks = Table(
    "rollbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("from_release_id", Text, nullable=False),
    Column("from_version", Integer, nullable=False),
    Column("to_release_id", Text, nullable=False),
    Column("to_version", Integer, nullable=False),
    Column("to_slug_id", Text, nullable=True),
    Column("taken_out", Text, nullable=False),
    Column("forced", Text, nullable=False),
    Column("heroku_release_id", Text, nullable=True),
    Column("heroku_version", Integer, nullable=True),
    Column("pending_since", UtcDateTime, nullable=True),
    Column("verification_started_at", UtcDateTime, nullable=True),
    Column("check_progress", Text, nullable=False),
    Column("verified_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("outcome", Text, nullable=False),
    Index(None, "pipeline", "environment", "state"),
    sqlite_autoincrement=True,
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("pipeline", Text, primary_key=True),
    Column("request_uuid", Text, primary_key=True),
    Column("event", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index(None, "received_at"),
)

locks = Table(
    "locks",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)
