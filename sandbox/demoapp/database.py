"""The app's database, whatever DATABASE_URL names: PostgreSQL (postgres://...) or SQLite (sqlite:///path).

Both app.py and release.py use it. SQL is written with ``?`` placeholders; ``query`` turns them
into psycopg's ``%s`` where the database is PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any


class DatabaseError(Exception):
    """Any failure to reach or query the database, with the driver's message."""


def connect(url: str | None = None) -> Any:
    """A new DB-API connection to DATABASE_URL (or ``url``). The caller closes it."""
    url = url or os.environ.get("DATABASE_URL", "")
    try:
        if url.startswith(("postgres://", "postgresql://")):
            import psycopg  # only needed where the app runs on PostgreSQL

            return psycopg.connect(url, connect_timeout=5)
        if url.startswith("sqlite:///"):
            return sqlite3.connect(url.removeprefix("sqlite:///"), timeout=5)
    except Exception as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    raise DatabaseError("DATABASE_URL is not set to a postgres:// or sqlite:/// URL")


def is_postgres(conn: Any) -> bool:
    return not isinstance(conn, sqlite3.Connection)


def query(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement and return its rows (an empty list for statements without rows)."""
    if is_postgres(conn):
        sql = sql.replace("?", "%s")
    try:
        cursor = conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []
    except Exception as exc:
        raise DatabaseError(str(exc).strip()) from exc


def latest_migration(conn: Any) -> str | None:
    """The name of the last migration applied (``002_seed_claims``), or None before any."""
    rows = query(conn, "SELECT name FROM schema_migrations ORDER BY version DESC LIMIT 1")
    return rows[0][0] if rows else None
