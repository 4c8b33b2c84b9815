"""Shared fixtures: one sandbox for the session, real HTTP, real client libraries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.core import Sandbox
from sandbox.databases import postgres_available


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
