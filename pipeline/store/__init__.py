"""The release store: releases, their append-only events and named locks, in SQL.

``open_store(url)`` is the way in: a SQLite file (``sqlite:///relative/path.db`` or
``sqlite:////absolute/path.db``) or PostgreSQL (``postgres://``, ``postgresql://`` and
``postgresql+psycopg://`` all use psycopg 3).
It brings the schema to the newest Alembic revision first, so every process can simply open the store:
migrating is idempotent and safe when several processes open a new database at once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from pipeline.store.sql import SqlStore, make_engine, safe_url, sqlite_path, translated_errors

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
        command.upgrade(config, revision)
        if sqlite:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration broke {len(broken)} foreign key(s): {broken[:3]}")
        conn.commit()
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def open_store(url: str) -> SqlStore:
    """The store at ``url``, its schema migrated to the newest revision.

    For a SQLite file, its directory is created when missing. Errors name the database with its
    password hidden.
    """
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
