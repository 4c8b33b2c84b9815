"""The release phase: apply the migrations in migrations/ that the database has not seen yet.

Each migrations/NNN_name.sql runs once, in number order, in its own transaction, and is recorded
in the table schema_migrations. What is printed here is the release-phase log. A migration that
fails is rolled back and the script exits with status 1, which makes the release fail.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NAME = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.sql$")

CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)"""


def version_of(path: Path) -> str:
    """``003`` for migrations/003_add_notes.sql."""
    return path.name.split("_", 1)[0]


def pending(applied: set[str]) -> list[Path]:
    """The migration files not applied yet, in order of their number."""
    files = sorted(p for p in MIGRATIONS.glob("*.sql") if NAME.match(p.name))
    return [p for p in files if version_of(p) not in applied]


def apply(conn: Any, path: Path) -> None:
    """Run one migration and record it, all in one transaction."""
    script, version = path.read_text(), version_of(path)
    if database.is_postgres(conn):
        conn.execute(script)
        database.query(
            conn, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, path.stem)
        )
        conn.commit()
    else:  # sqlite3 runs a script of several statements only through executescript
        record = f"INSERT INTO schema_migrations (version, name) VALUES ('{version}', '{path.stem}');"
        conn.executescript(f"BEGIN;\n{script}\n;\n{record}\nCOMMIT;")


def main() -> int:
    try:
        conn = database.connect()
    except database.DatabaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    try:
        database.query(conn, CREATE_TABLE)
        conn.commit()
        applied = {row[0] for row in database.query(conn, "SELECT version FROM schema_migrations")}
        todo = pending(applied)
        if not todo:
            print(
                f"release: no migrations to apply (schema at {database.latest_migration(conn)})", flush=True
            )
            return 0
        for path in todo:
            print(f"release: applying {path.name}", flush=True)
            try:
                apply(conn, path)
            except Exception as exc:
                conn.rollback()
                print(f"release: {path.name} failed: {str(exc).strip()}", file=sys.stderr, flush=True)
                return 1
        print(f"release: done, schema at {database.latest_migration(conn)}", flush=True)
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
