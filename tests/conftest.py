"""Shared fixtures: one sandbox for the session, real HTTP, real client libraries; every store a
test makes (``fresh_database``) has its history's hash chain verified when the test ends."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import inspect, text

from pipeline.services import audit
from pipeline.store import SqlStore, alembic_config
from pipeline.store.sql import make_engine, sqlite_path
from pipeline.store.tables import VERSION_TABLE
from sandbox.core import Sandbox
from sandbox.databases import postgres_available

POSTGRES_SERVER = "127.0.0.1:5432"
POSTGRES_ADMIN_URL = f"postgresql://postgres@{POSTGRES_SERVER}/postgres"
BACKENDS = ("sqlite", "postgresql")
# The stores whose history a test breaks on purpose (``break_history``): not verified at its end.
BROKEN_ON_PURPOSE: set[str] = set()


@functools.cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can (asked once per session)."""
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"PostgreSQL: no server usable as user postgres on {POSTGRES_SERVER} ({first_line})"
    return None


@contextmanager
def fresh_database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``kind``; dropped (PostgreSQL) when the block ends.

    SQLite: a file in ``tmp_path / "store"`` (the directory is made, as the configuration wants it to
    exist; the file is not: opening the store creates it). PostgreSQL:
    ``CREATE DATABASE pipeline_test_<random>`` on the local server; ``pytest.skip`` saying why
    when no server answers. The URL is ``postgresql://`` (the store picks the psycopg 3 driver).
    When the block ends without an error, the history of the store made there (if one was, at the
    newest schema) must be whole: ``pipeline audit verify`` on it, unless ``break_history`` said.
    """
    if kind == "sqlite":
        (tmp_path / "store").mkdir(exist_ok=True)
        url = f"sqlite:///{tmp_path / 'store' / 'pipeline.sqlite3'}"
        yield url
        assert_history_whole(url)
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}: sqlite or postgresql")
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    name = f"pipeline_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"postgresql://postgres@{POSTGRES_SERVER}/{name}"
        yield url
        assert_history_whole(url)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


FreshDatabase = Callable[[str, Path], AbstractContextManager[str]]


@functools.cache
def newest_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def assert_history_whole(url: str) -> None:
    """``audit verify`` on the store at ``url``: its events' hash chain must be whole. Nothing to
    check when no store was made there, or when a test left it at an older schema on purpose."""
    if url in BROKEN_ON_PURPOSE:
        return
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if VERSION_TABLE not in inspect(conn).get_table_names():
                return
            revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if revision != newest_revision():
            return
        report = audit.verify(SqlStore(engine))
    finally:
        engine.dispose()
    assert report.ok, f"the history of {url} is broken: {report.problem}"


@pytest.fixture
def break_history() -> Callable[[str], None]:
    """``break_history(url)``: this test breaks the history of the store at ``url`` on purpose, so
    it is not verified when the test ends."""
    return BROKEN_ON_PURPOSE.add


@pytest.fixture
def fresh_database() -> FreshDatabase:
    """``fresh_database(kind, tmp_path)``: the context manager above, for tests in any directory."""
    return fresh_database_url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests first (``@pytest.mark.slow``), so that with several workers (``make test`` runs
    four) none of them starts last and leaves the others waiting; otherwise collection order."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)


def pytest_report_header() -> str:
    if postgres_available():
        return "PostgreSQL: answering on 127.0.0.1:5432; PostgreSQL tests run."
    return "PostgreSQL: no server on 127.0.0.1:5432; PostgreSQL tests skip and say so."


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The whole sandbox, seeded (both apps running main), shared by the session's tests.

    Tests that change shared state (branches, pull requests, releases) use names of their own.
    """
    state_dir: Path = tmp_path_factory.mktemp("sandbox")
    box = Sandbox(state_dir).start()
    try:
        yield box
    finally:
        box.stop()
        if box.databases is not None:
            box.databases.drop_all()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").faults.clear()
