"""Fidelity check: the real heroku CLI (npm package ``heroku``) against a running sandbox.

The CLI is the reference client of both Heroku APIs, written against the real services; when it
reads the stand-ins' answers the way it reads Heroku's, the shapes it relies on beyond the schema
(a coupling's pipeline name, add-on attachments, ``Accept-Inclusion``...) are right too.

Opt-in: it runs when the CLI is found, at ``$HEROKU_CLI`` or else as ``heroku`` on the PATH, and
skips otherwise. To run it: ``npm install heroku`` in a directory of your choice, then
``HEROKU_CLI=<that directory>/node_modules/.bin/heroku pytest tests/sandbox/test_heroku_cli.py``.

How the CLI is pointed at the sandbox: ``HEROKU_HOST=http://127.0.0.1:PORT`` (it must name
127.0.0.1 or localhost) and ``HEROKU_API_KEY``. The Data API is another matter: the CLI takes
``HEROKU_DATA_HOST`` as a host name only and reaches it with the Platform URL's scheme and port.
So the Data stand-in is served a second time here, on 127.0.0.2 (loopback on Linux) at the
Platform stand-in's port, and ``HEROKU_DATA_HOST=127.0.0.2``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from sandbox.core import Sandbox
from sandbox.server import ServiceServer

DATA_ALIAS_HOST = "127.0.0.2"
ACCEPT = "application/vnd.heroku+json; version=3"


def _find_cli() -> str | None:
    configured = os.environ.get("HEROKU_CLI")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("heroku")


CLI = _find_cli()

HOW_TO_ENABLE = (
    "run `npm install heroku` and set HEROKU_CLI=<dir>/node_modules/.bin/heroku "
    "(or put `heroku` on the PATH) to run this fidelity check"
)
pytestmark = pytest.mark.skipif(
    CLI is None,
    reason=(
        f"HEROKU_CLI={os.environ.get('HEROKU_CLI')!r} is not an executable heroku CLI: {HOW_TO_ENABLE}"
        if os.environ.get("HEROKU_CLI")
        else f"the heroku CLI is not installed: {HOW_TO_ENABLE}"
    ),
)


@dataclass
class Cli:
    """The real CLI, pointed at one sandbox."""

    binary: str
    env: dict[str, str]
    api: str
    api_key: str

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=90, check=False
        )
        if ok:
            assert done.returncode == 0, (
                f"heroku {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done

    def get(self, path: str) -> Any:
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {self.api_key}"}
        response = requests.get(self.api + path, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    assert CLI is not None
    root = tmp_path_factory.mktemp("heroku-cli")
    box = Sandbox(root / "state")
    alias: ServiceServer | None = None
    try:
        box.start()
        port = urlsplit(box.url("heroku")).port or 80
        try:
            alias = ServiceServer("heroku-data", box.faults, host=DATA_ALIAS_HOST, port=port)
        except OSError as exc:
            pytest.skip(f"cannot serve the Data API on {DATA_ALIAS_HOST}:{port} for the CLI: {exc}")
        alias.start(box.heroku_data.wsgi_app, box.heroku_data.fault_response)
        home = root / "home"
        home.mkdir()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "HEROKU_HOST": box.url("heroku"),
            "HEROKU_DATA_HOST": DATA_ALIAS_HOST,
            "HEROKU_API_KEY": box.heroku.api_key,
            "HEROKU_SKIP_ANALYTICS": "1",
            "DISABLE_TELEMETRY": "true",
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
            "COLUMNS": "200",
        }
        yield Cli(CLI, env, box.url("heroku"), box.heroku.api_key)
    finally:
        if alias is not None:
            alias.stop()
        box.stop()
        if box.databases is not None:
            box.databases.drop_all()


def test_releases_and_release_info(cli: Cli) -> None:
    listed = cli.run("releases", "-a", "claims-staging").stdout
    assert "=== claims-staging Releases - Current: v3" in listed
    assert re.search(r"v3\s+Deploy [0-9a-f]{7} \(sandbox seed\)", listed), listed
    assert re.search(r"v2\s+Attach DATABASE \(@ref:postgresql-", listed), listed
    assert re.search(r"v1\s+Initial release", listed), listed

    info = cli.run("releases:info", "v3", "-a", "claims-staging").stdout
    assert "=== Release v3" in info
    assert re.search(r"Eligible for Rollback\?:\s+Yes", info), info
    assert re.search(r"Add-ons:\s+heroku-postgresql:standard-0", info), info
    first = cli.run("releases:info", "v1", "-a", "claims-staging").stdout
    assert re.search(r"Eligible for Rollback\?:\s+No", first), first  # no slug to go back to

    output = cli.run("releases:output", "v3", "-a", "claims-staging").stdout
    assert "release: done, schema at" in output, output


def test_apps_info_shows_the_pipeline_and_addon(cli: Cli) -> None:
    info = cli.run("apps:info", "-a", "claims-staging").stdout
    assert re.search(r"Pipeline:\s+claims - staging", info), info
    assert re.search(r"Addons:\s+heroku-postgresql:standard-0", info), info
    addons = cli.run("addons", "-a", "claims-staging").stdout
    assert re.search(
        r"heroku-postgresql \(postgresql-\S+\)\s+standard-0\s+\S+/hour\s+\$50/month\s+created", addons
    )
    assert "as DATABASE" in addons
    pipeline = cli.run("pipelines:info", "claims").stdout
    assert re.search(r"claims-staging\s+staging", pipeline), pipeline
    assert re.search(r"claims-production\s+production", pipeline), pipeline


def test_promote_then_roll_back(cli: Cli) -> None:
    promoted = cli.run("pipelines:promote", "-a", "claims-staging").stdout
    assert "Fetching apps from claims..." in promoted
    assert "Starting promotion to production..." in promoted
    assert "Promotion successful" in promoted, promoted
    assert re.search(r"claims-production:\s+succeeded", promoted), promoted
    staging = cli.get("/apps/claims-staging/releases/3")
    production = cli.get("/apps/claims-production/releases/4")
    assert production["description"] == "Promote claims-staging v3"
    assert production["slug"] == staging["slug"] and production["current"]

    rolled = cli.run("rollback", "-a", "claims-production")
    assert "Rolling back claims-production to v3... done, v5" in rolled.stdout + rolled.stderr
    listed = cli.run("releases", "-a", "claims-production").stdout
    assert "Current: v5" in listed
    assert re.search(r"v5\s+Rollback to v3", listed), listed

    refused = cli.run("rollback", "v1", "-a", "claims-production", ok=False)
    assert refused.returncode != 0
    assert "v1 has no slug to roll back to" in refused.stderr
    assert "Error ID: invalid_params" in refused.stderr


def test_config_and_ps(cli: Cli) -> None:
    assert "DATABASE_URL:" in cli.run("config", "-a", "claims-staging").stdout
    changed = cli.run("config:set", "FIDELITY=1", "-a", "claims-staging").stderr
    assert re.search(r"Setting FIDELITY and restarting claims-staging\.\.\. done, v\d+", changed), changed
    assert cli.run("config:get", "FIDELITY", "-a", "claims-staging").stdout.strip() == "1"
    ps = cli.run("ps", "-a", "claims-production").stdout
    assert "=== web (Standard-1X): python app.py (1)" in ps
    assert re.search(r"web\.1: up ", ps), ps


def test_backup_capture_list_and_url(cli: Cli) -> None:
    captured = cli.run("pg:backups:capture", "-a", "claims-production")
    assert "Backing up DATABASE to b001... done" in captured.stdout + captured.stderr, captured
    listed = cli.run("pg:backups", "-a", "claims-production").stdout
    assert re.search(r"b001\s+\S+ \S+ \S+\s+Completed ", listed), listed
    info = cli.run("pg:backups:info", "b001", "-a", "claims-production").stdout
    assert re.search(r"Status:\s+Completed", info), info

    url = cli.run("pg:backups:url", "b001", "-a", "claims-production").stdout.strip()
    assert "/b001.dump?" in url and "signature=" in url, url
    archive = requests.get(url, timeout=30)
    archive.raise_for_status()
    assert archive.content[:5] == b"PGDMP" or archive.content[:16] == b"SQLite format 3\x00"


def test_backup_schedules(cli: Cli) -> None:
    cli.run("pg:backups:schedule", "DATABASE_URL", "--at", "02:00 Europe/Berlin", "-a", "claims-production")
    schedules = cli.run("pg:backups:schedules", "-a", "claims-production").stdout
    assert "DATABASE_URL: daily at 2:00 Europe/Berlin" in schedules, schedules
    cli.run("pg:backups:unschedule", "DATABASE_URL", "-a", "claims-production")
    empty = cli.run("pg:backups:schedules", "-a", "claims-production")
    assert "No backup schedules found" in empty.stderr, empty
