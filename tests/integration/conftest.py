"""Store backends for the integration tests: SQLite always, PostgreSQL when a server answers
(``fresh_database`` in tests/conftest.py makes the databases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.store import SqlStore, open_store

BACKENDS = ("sqlite", "postgresql")


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
