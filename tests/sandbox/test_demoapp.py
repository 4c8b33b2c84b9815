"""The demo app as the Heroku stand-in runs it: release.py and app.py as real processes.

Each test writes the app's files (``sandbox.demo.demo_files()`` plus the change under test) to a
directory, runs the release phase against a real database (SQLite, and PostgreSQL when a server
answers) and starts the web process on a free loopback port. The HEALTH modes do not depend on
the database, so they run on SQLite only.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from sandbox.databases import Databases, postgres_available
from sandbox.demo import breaking_change, demo_files, health_file, migration_file

DEADLINE = 20.0


def write_app(directory: Path, changes: dict[str, bytes] | None = None) -> Path:
    for name, content in {**demo_files(), **(changes or {})}.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    return directory


def release(app_dir: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "release.py"],
        cwd=app_dir,
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebProcess:
    """``python app.py`` as a web dyno runs it; stopped (and reaped) by ``stop``."""

    def __init__(self, app_dir: Path, database_url: str, app_name: str = "claims-demo") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            "HEROKU_APP_NAME": app_name,
            "PATH": "/usr/bin:/bin",
            "PORT": str(self.port),
            "DATABASE_URL": database_url,
            "HEROKU_RELEASE_VERSION": "v7",
            "HEROKU_SLUG_COMMIT": "0123456789abcdef0123456789abcdef01234567",
        }
        self.process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=app_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, f"app exited: {self.output()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "app did not listen in time"
                time.sleep(0.05)

    def health(self, timeout: float = 10) -> requests.Response:
        return requests.get(f"{self.url}/health", timeout=timeout)

    def wait_exit(self) -> int:
        return self.process.wait(timeout=DEADLINE)

    def output(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stdout.read() if self.process.stdout else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres" and not postgres_available():
        pytest.skip("no PostgreSQL server answers at SANDBOX_POSTGRES_URL (default 127.0.0.1:5432)")
    databases = Databases(tmp_path / "databases", kind=request.param)
    try:
        yield databases.provision("44444444-0000-4000-8000-000000000000", "claims-demo")
    finally:
        databases.drop_all()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'claims.sqlite3'}"


StartWeb = Callable[..., "WebProcess"]


@pytest.fixture
def start_web() -> Iterator[StartWeb]:
    started: list[WebProcess] = []

    def start(app_dir: Path, url: str, app_name: str = "claims-demo") -> WebProcess:
        web = WebProcess(app_dir, url, app_name)
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


# -- the files -----------------------------------------------------------------------------------------


def test_demo_files_are_the_app_as_committed() -> None:
    files = demo_files()
    assert files["Procfile"] == b"web: python app.py\nrelease: python release.py\n"
    assert files["HEALTH"] == b"ok\n"
    assert {"app.py", "release.py", "database.py", "README.md", "migrations/001_create_claims.sql"} <= set(
        files
    )
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_change_helpers_return_the_files_to_commit() -> None:
    assert health_file("fail-after", 30) == {"HEALTH": b"fail-after 30\n"}
    assert breaking_change("slow", 2.5) == {"HEALTH": b"slow 2.5\n"}
    assert list(migration_file("add_note")) == ["migrations/003_add_note.sql"]
    assert list(breaking_change("migration")) == ["migrations/003_break_release.sql"]
    for bad in (
        lambda: health_file("sometimes"),
        lambda: health_file("fail-after"),
        lambda: breaking_change("ok"),
        lambda: health_file("fail-on"),
        lambda: health_file("fail", app="claims-production"),
    ):
        with pytest.raises(ValueError):
            bad()


# -- the release phase ---------------------------------------------------------------------------------


def test_migrations_apply_once_each_in_order(tmp_path: Path, database_url: str) -> None:
    app_dir = write_app(tmp_path / "app")
    first = release(app_dir, database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.index("001_create_claims.sql") < first.stdout.index("002_seed_claims.sql")

    again = release(app_dir, database_url)
    assert again.returncode == 0, again.stderr
    assert "no migrations to apply" in again.stdout

    write_app(app_dir, migration_file("add_note"))
    third = release(app_dir, database_url)
    assert third.returncode == 0, third.stderr
    assert "003_add_note.sql" in third.stdout and "001_" not in third.stdout


def test_a_failing_migration_exits_non_zero_and_is_not_recorded(tmp_path: Path, database_url: str) -> None:
    app_dir = write_app(tmp_path / "app", breaking_change("migration"))
    failed = release(app_dir, database_url)
    assert failed.returncode != 0
    assert "003_break_release.sql failed" in failed.stderr
    failed_again = release(app_dir, database_url)  # 001 and 002 stay applied; 003 is tried again
    assert failed_again.returncode != 0 and "002_seed_claims" not in failed_again.stdout


# -- the web process -----------------------------------------------------------------------------------


def test_health_answers_ok_with_release_commit_and_schema(
    tmp_path: Path, database_url: str, start_web: StartWeb
) -> None:
    app_dir = write_app(tmp_path / "app")
    assert release(app_dir, database_url).returncode == 0
    web = start_web(app_dir, database_url)
    web.wait_listening()
    health = web.health()
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "release": "v7",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "schema": "002_seed_claims",
    }
    page = requests.get(f"{web.url}/", timeout=10)
    assert page.status_code == 200 and "v7" in page.text and "0123456789abcdef" in page.text


def test_health_fails_when_the_database_is_not_migrated(
    tmp_path: Path, sqlite_url: str, start_web: StartWeb
) -> None:
    web = start_web(write_app(tmp_path / "app"), sqlite_url)
    web.wait_listening()
    health = web.health()
    assert health.status_code == 500
    assert health.json()["status"] == "failing" and "database" in health.json()["reason"]


def test_health_mode_fail(tmp_path: Path, sqlite_url: str, start_web: StartWeb) -> None:
    app_dir = write_app(tmp_path / "app", breaking_change("fail"))
    assert release(app_dir, sqlite_url).returncode == 0
    web = start_web(app_dir, sqlite_url)
    web.wait_listening()
    health = web.health()
    assert health.status_code == 500 and "fail" in health.json()["reason"]


def test_health_mode_fail_on_fails_only_on_the_named_app(
    tmp_path: Path, sqlite_url: str, start_web: StartWeb
) -> None:
    app_dir = write_app(tmp_path / "app", breaking_change("fail-on", app="claims-production"))
    assert release(app_dir, sqlite_url).returncode == 0
    staging = start_web(app_dir, sqlite_url, "claims-staging")
    production = start_web(app_dir, sqlite_url, "claims-production")
    staging.wait_listening()
    production.wait_listening()
    assert staging.health().status_code == 200
    failing = production.health()
    assert failing.status_code == 500 and "claims-production" in failing.json()["reason"]


def test_health_mode_fail_after(tmp_path: Path, sqlite_url: str, start_web: StartWeb) -> None:
    app_dir = write_app(tmp_path / "app", breaking_change("fail-after", 4))
    assert release(app_dir, sqlite_url).returncode == 0
    web = start_web(app_dir, sqlite_url)
    web.wait_listening()
    assert web.health().status_code == 200  # healthy at first
    deadline = time.monotonic() + DEADLINE
    while web.health().status_code == 200:
        assert time.monotonic() < deadline, "the app never started failing"
        time.sleep(0.2)
    assert web.health().status_code == 500  # and it stays failing


def test_health_mode_crash_after(tmp_path: Path, sqlite_url: str, start_web: StartWeb) -> None:
    app_dir = write_app(tmp_path / "app", breaking_change("crash-after", 1))
    assert release(app_dir, sqlite_url).returncode == 0
    web = start_web(app_dir, sqlite_url)
    assert web.wait_exit() == 1
    assert "crash after 1 seconds" in web.output()


def test_health_mode_slow(tmp_path: Path, sqlite_url: str, start_web: StartWeb) -> None:
    app_dir = write_app(tmp_path / "app", breaking_change("slow", 2))
    assert release(app_dir, sqlite_url).returncode == 0
    web = start_web(app_dir, sqlite_url)
    web.wait_listening()
    with pytest.raises(requests.Timeout):
        web.health(timeout=0.5)  # it waits 2 seconds before every answer
    assert web.health(timeout=DEADLINE).status_code == 200


def test_an_unknown_health_mode_stops_the_app(tmp_path: Path, sqlite_url: str, start_web: StartWeb) -> None:
    app_dir = write_app(tmp_path / "app", {"HEALTH": b"sometimes\n"})
    web = start_web(app_dir, sqlite_url)
    assert web.wait_exit() != 0
    assert "sometimes" in web.output()
