"""``GET /client/v11/databases/{addon}``: what ``heroku pg:info`` shows, measured on the real database.

The plan decides the data-safety entries, as Heroku documents them: Essential (and the retired
hobby/mini/basic) plans have no Continuous Protection, no rollback and no fork/follow; Standard
keeps a 4-day rollback window; Premium, Private and Shield keep a week. Size, table count,
connections and version are read from the database itself (PostgreSQL or the SQLite file).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from sandbox.heroku.refs import AddonRef
from sandbox.heroku_data.store import parse_timestamp, timestamp

ROLLBACK_DAYS = {"standard": 4, "premium": 7, "private": 7, "shield": 7}
DATA_LIMITS = {
    "essential-0": "1 GB",
    "essential-1": "10 GB",
    "essential-2": "32 GB",
    "standard-0": "64 GB",
    "standard-2": "256 GB",
    "standard-3": "512 GB",
    "standard-4": "768 GB",
    "premium-0": "64 GB",
    "premium-2": "256 GB",
}
MAX_CONNECTIONS = {"essential": 20, "standard": 120, "premium": 120, "private": 120, "shield": 120}


@dataclass(frozen=True)
class Measurements:
    num_bytes: int
    num_tables: int
    num_connections: int
    version: str


def measure(database_url: str) -> Measurements:
    """Size, user tables, open connections and server version of the database at the URL."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (tables,) = lite.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchone()
        finally:
            lite.close()
        return Measurements(path.stat().st_size, int(tables), 0, f"SQLite {sqlite3.sqlite_version} (sandbox)")
    url = "postgresql://" + database_url.split("://", 1)[1]
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            """SELECT pg_database_size(current_database()),
                      (SELECT count(*) FROM pg_stat_user_tables),
                      (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) - 1,
                      current_setting('server_version')"""
        ).fetchone()
    assert row is not None
    return Measurements(int(row[0]), int(row[1]), max(0, int(row[2])), str(row[3]).split(" ")[0])


def _plan_parts(plan: str) -> tuple[str, str]:
    """``heroku-postgresql:standard-0`` -> (``standard-0``, ``standard``)."""
    name = plan.split(":", 1)[-1]
    return name, name.split("-", 1)[0]


def _pretty_plan(plan_name: str) -> str:
    return " ".join(part.capitalize() for part in plan_name.split("-"))


def _pretty_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _short_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def database_info(addon: AddonRef, created_at: str, now: datetime) -> dict[str, Any]:
    """The Data API's database document for the add-on (without credentials)."""
    measured = measure(addon.database_url)
    plan_name, tier = _plan_parts(addon.plan)
    created = parse_timestamp(created_at)
    window = ROLLBACK_DAYS.get(tier)
    limit = DATA_LIMITS.get(plan_name)
    size = _pretty_bytes(measured.num_bytes) + (f" / {limit}" if limit else "")
    if window:
        earliest = max(created, now - timedelta(days=window))
        protection, rollback, fork = "On", f"earliest from {_short_time(earliest)}", "Available"
    else:
        protection, rollback, fork = "Off", "Unsupported", "Unsupported"
    max_connections = MAX_CONNECTIONS.get(tier, 20)
    info = [
        ("Plan", _pretty_plan(plan_name)),
        ("Status", "Available"),
        ("Connections", f"{measured.num_connections}/{max_connections}"),
        ("PG Version", measured.version),
        ("Created", _short_time(created)),
        ("Data Size", size),
        ("Tables", str(measured.num_tables)),
        ("Fork/Follow", fork),
        ("Rollback", rollback),
        ("Continuous Protection", protection),
    ]
    parts = urlsplit(addon.database_url)
    database_name = parts.path.lstrip("/") if parts.scheme.startswith("postgres") else addon.name
    return {
        "addon_id": addon.id,
        "name": addon.name,
        "plan": plan_name,
        "created_at": created_at,
        "status_updated_at": timestamp(now),
        "database_name": database_name,
        "database_user": parts.username or "",
        "resource_url": addon.database_url,
        "waiting?": False,
        "num_bytes": measured.num_bytes,
        "num_tables": measured.num_tables,
        "num_connections": measured.num_connections,
        "num_connections_waiting": 0,
        "postgres_version": measured.version,
        "following": None,
        "forked_from": None,
        "leader": None,
        "info": [{"name": name, "values": [value]} for name, value in info],
    }
