"""Each sandbox app's Heroku Postgres database: a real PostgreSQL database where a server
answers, otherwise a SQLite file.

PostgreSQL is looked for at ``SANDBOX_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, a role allowed to create databases). Each
add-on gets a database named after the state dir and the add-on, so two sandboxes never share
one. Backups are real: ``pg_dump -Fc`` for PostgreSQL, SQLite's online backup API otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from sandbox.persist import JsonFile

log = logging.getLogger("sandbox")

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


class DatabaseError(RuntimeError):
    pass


def _server_url() -> str:
    return os.environ.get("SANDBOX_POSTGRES_URL", DEFAULT_SERVER)


def postgres_available(url: str | None = None) -> bool:
    try:
        with psycopg.connect(url or _server_url(), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


class Databases:
    def __init__(self, state_dir: Path, *, kind: str | None = None) -> None:
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._file = JsonFile(state_dir / "databases.json")
        self._state: dict[str, dict[str, str]] = self._file.load({})
        self.server_url = _server_url()
        if kind is None:
            kind = "postgres" if postgres_available(self.server_url) and shutil.which("pg_dump") else "sqlite"
        if kind not in ("postgres", "sqlite"):
            raise DatabaseError(f"kind: {kind!r} is not postgres or sqlite")
        self.kind = kind
        self._prefix = "sbx_" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]

    def provision(self, addon_id: str, app_name: str) -> str:
        """Create the add-on's database (once) and return its DATABASE_URL."""
        known = self._state.get(addon_id)
        if known:
            return known["url"]
        if self.kind == "postgres":
            name = f"{self._prefix}_{re.sub(r'[^a-z0-9]', '_', app_name.lower())}_{addon_id[:8]}"
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            parts = urlsplit(self.server_url)
            url = urlunsplit(("postgres", parts.netloc, f"/{name}", "", ""))
        else:
            path = self.state_dir / f"{app_name}-{addon_id[:8]}.sqlite3"
            sqlite3.connect(path).close()
            url = f"sqlite:///{path}"
        self._state[addon_id] = {"url": url, "app": app_name}
        self._file.save(self._state)
        return url

    def dump(self, database_url: str, dest: Path) -> int:
        """Write a consistent backup of the database to ``dest``; return its size in bytes."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if database_url.startswith(("postgres://", "postgresql://")):
            url = "postgresql://" + database_url.split("://", 1)[1]
            result = subprocess.run(
                ["pg_dump", "-Fc", "--no-owner", "--no-acl", "-f", str(dest), url],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0:
                raise DatabaseError(f"pg_dump exited with {result.returncode}: {result.stderr.strip()}")
        elif database_url.startswith("sqlite:///"):
            source = sqlite3.connect(database_url.removeprefix("sqlite:///"))
            target = sqlite3.connect(dest)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
        else:
            raise DatabaseError(f"cannot back up a database at {urlsplit(database_url).scheme}://")
        return dest.stat().st_size

    def size(self, database_url: str) -> int:
        """The database's size in bytes, as Heroku reports source_bytes."""
        if database_url.startswith("sqlite:///"):
            return Path(database_url.removeprefix("sqlite:///")).stat().st_size
        url = "postgresql://" + database_url.split("://", 1)[1]
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def drop_all(self) -> None:
        """Drop every database this state dir made (tests call it when they are done)."""
        if self.kind == "postgres":
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                for entry in self._state.values():
                    name = entry["url"].rsplit("/", 1)[-1]
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                    )
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        else:
            for entry in self._state.values():
                Path(entry["url"].removeprefix("sqlite:///")).unlink(missing_ok=True)
        self._state.clear()
        self._file.save(self._state)
