"""The whole path through the sandbox: a fresh sandbox per test (see e2e_world.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import World, write_config

from pipeline import bootstrap, config
from pipeline.demo import People
from sandbox.core import Sandbox


@pytest.fixture
def database_kind() -> str:
    """Which store the world uses; parametrize it (indirect) to run a test on PostgreSQL too."""
    return "sqlite"


@pytest.fixture
def world(tmp_path: Path, database_kind: str, fresh_database: Any) -> Iterator[World]:
    with fresh_database(database_kind, tmp_path) as database_url:
        box = Sandbox(tmp_path / "sandbox").start()
        try:
            env = dict(box.info()["env"]) | {
                "PIPELINE_DATABASE_URL": database_url,
                "PIPELINE_ACTOR": "tests",
                "PIPELINE_WEBHOOK_PORT": "0",  # any free port: tests never fight over one
            }
            config_path = write_config(tmp_path / "config")
            settings = config.load(config_path, env=env)
            services = bootstrap.services(settings)
            yield World(box, settings, services, People(box.info()), env, config_path)
        finally:
            box.stop()
            if box.databases is not None:
                box.databases.drop_all()
