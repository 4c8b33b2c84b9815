"""Store backends for the integration tests: SQLite always, PostgreSQL when a server answers
(``fresh_database`` in tests/conftest.py makes the databases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.store import SqlStore, open_store
from sandbox.core import Sandbox

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def info(sandbox: Sandbox) -> dict[str, Any]:
    """What the sandbox says of itself: URLs, tokens, app names."""
    return sandbox.info()


@pytest.fixture
def key(info: dict[str, Any]) -> str:
    """The sandbox's Heroku API key."""
    return str(info["heroku"]["api_key"])


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path, fresh_database: Any) -> Iterator[str]:
    """A fresh empty database per test, once per backend ("sqlite", "postgresql")."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """A migrated store on ``store_url``, closed after the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
