"""The release store: releases, their append-only events and named locks, in SQL.

``open_store(url)`` is the way in: a SQLite file (``sqlite:///relative/path.db`` or
``sqlite:////absolute/path.db``) or PostgreSQL (``postgres://``, ``postgresql://`` and
``postgresql+psycopg://`` all use psycopg 3).
It brings the schema to the newest Alembic revision first, so every process can simply open the store:
migrating is idempotent and safe when several processes open a new database at once.

Opening refuses, with a ``Permanent`` error saying what to do (the commands turn it into one line
and exit 1): a URL that names another kind of database or is malformed, and a database a newer
version of the controller has migrated (at a revision this version does not know).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from pipeline.errors import Permanent
from pipeline.store.sql import (
    SERVICE,
    SqlStore,
    make_engine,
    normalise_url,
    safe_url,
    sqlite_path,
    translated_errors,
)
from pipeline.store.tables import VERSION_TABLE

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any constant will do: PostgreSQL migrations hold this transaction-level advisory lock, so two
# processes opening a new database at once migrate one after the other.
_MIGRATION_LOCK_KEY = 0x706970656C696E65  # "pipeline"


def alembic_config() -> Config:
    """An Alembic configuration for the store's migrations, independent of the working directory.

    Pass the database in ``config.attributes["connection"]`` (a ``Connection``) or
    ``config.attributes["url"]``; ``migrations/env.py`` takes it from there.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default) in one transaction.

    A no-op when it is there already. Concurrent callers are serialised: PostgreSQL by an advisory
    lock, SQLite by taking its write lock (``BEGIN IMMEDIATE``) before reading the current revision.
    Raises ``Temporary``/``Permanent`` like the store.
    """
    with translated_errors(engine, "migrate the store"), engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations copy a table and drop the old one, which foreign keys would refuse;
            # they are checked once the migration is done instead (the pragma is ignored inside
            # a transaction, so it goes first).
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config = alembic_config()
        config.attributes["connection"] = conn
        _refuse_unknown_revision(conn, config)
        command.upgrade(config, revision)
        if sqlite:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration broke {len(broken)} foreign key(s): {broken[:3]}")
        conn.commit()
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def _refuse_unknown_revision(conn: Connection, config: Config) -> None:
    """``Permanent`` when the database is at a revision none of our migrations knows: a newer
    controller migrated it, and this one can neither read it nor bring it back."""
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
    for revision in current:
        try:
            known = script.get_revision(revision) is not None
        except (CommandError, RevisionError):
            known = False
        if not known:
            shown = "".join(c if c.isprintable() else "?" for c in revision[:40])
            raise Permanent(
                SERVICE,
                f"the store at {safe_url(conn.engine.url)} is at revision {shown}, which this "
                f"version does not know (it knows up to {', '.join(script.get_heads())}): upgrade the "
                "controller or point PIPELINE_DATABASE_URL elsewhere",
            )


SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
"""What the store runs on: SQLite, and PostgreSQL through psycopg 3 (``postgres://`` and
``postgresql://`` are taken to mean it)."""


def _refuse_unsupported(url: str) -> None:
    """``Permanent`` when ``url`` is malformed or names a database the store does not run on."""
    try:
        driver = normalise_url(url).drivername
    except (ValueError, sa_exc.ArgumentError):
        raise Permanent(
            SERVICE,
            "cannot open the store: its URL is malformed; expected sqlite:////abs/path/pipeline.db or "
            "postgresql://user:password@host:5432/db",
        ) from None
    if driver not in SUPPORTED_DRIVERS:
        raise Permanent(
            SERVICE,
            f"cannot open the store at {safe_url(url)}: the store is SQLite (sqlite://) or PostgreSQL "
            "(postgresql://, through psycopg 3)",
        )


def open_store(url: str) -> SqlStore:
    """The store at ``url``, its schema migrated to the newest revision.

    For a SQLite file, its directory is created when missing (the configuration lets it be missing
    only for the default store, beside pipeline.yml). Errors name the database with its password
    hidden; a malformed URL, another kind of database and a database at a revision this version
    does not know are ``Permanent``.
    """
    _refuse_unsupported(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return SqlStore(engine)


__all__ = ["SqlStore", "alembic_config", "migrate", "open_store", "safe_url"]
