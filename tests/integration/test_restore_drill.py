"""The restore drill for real, on this machine (``invoke.Context()``, real curl, psql and
pg_restore): a real backup of claims-production captured in the session sandbox through
``HerokuBackups``, downloaded through its signed URL and restored into a scratch database on the
local PostgreSQL server, its tables counted, checks judged, and the scratch database dropped.
Skips, saying why, without PostgreSQL, without the client programs, or when the sandbox's app
databases are SQLite files (their backups are not ``pg_dump`` archives)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import invoke
import psycopg
import pytest
import requests
from adapter_support import poll

from pipeline.adapters.heroku_data import HerokuBackups
from pipeline.model import Backup
from pipeline.restore import RestoreReport, restore_drill
from sandbox.core import Sandbox

APP = "claims-production"
SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSING = "SELECT count(*) FROM claims"
FAILING = "SELECT count(*) FROM claims WHERE false"
ERRING = "SELECT * FROM nope"


def root_helper(config: pytest.Config) -> Callable[[], str | None]:
    """``postgres_unavailable`` of tests/conftest.py. It cannot be imported by name (this
    directory's conftest.py shadows the module name ``conftest``), so it is found among the
    loaded conftest plugins."""
    for plugin in config.pluginmanager.get_plugins():
        helper = getattr(plugin, "postgres_unavailable", None)
        if callable(helper):
            return helper
    raise RuntimeError("tests/conftest.py is not loaded: postgres_unavailable is missing")


@dataclass(frozen=True)
class Captured:
    """A completed backup of APP, and the row counts of its source database just after it."""

    backup: Backup
    source_rows: dict[str, int]


@pytest.fixture(scope="module")
def backups(request: pytest.FixtureRequest, sandbox: Sandbox) -> HerokuBackups:
    """``HerokuBackups`` on the session sandbox, once PostgreSQL and the programs are known here."""
    reason = root_helper(request.config)()
    if reason is not None:
        pytest.skip(reason)
    missing = [program for program in ("curl", "psql", "pg_restore") if shutil.which(program) is None]
    if missing:
        pytest.skip(f"the restore drill needs {', '.join(missing)} on this machine")
    if sandbox.databases is None or sandbox.databases.kind != "postgres":
        pytest.skip("the sandbox's app databases are SQLite here (it found no PostgreSQL or no pg_dump)")
    info = sandbox.info()
    return HerokuBackups(info["heroku"]["data_url"], info["heroku"]["url"], info["heroku"]["api_key"])


@pytest.fixture(scope="module")
def captured(backups: HerokuBackups, sandbox: Sandbox) -> Captured:
    """A real backup of claims-production, awaited; the source's row counts read right after."""
    started = backups.capture(APP)
    done = poll(
        "the backup",
        lambda: backups.backup(APP, started.id),
        lambda b: b.status not in ("pending", "running"),
    )
    assert done.status == "completed", done.logs
    info = sandbox.info()
    config = requests.get(
        f"{info['heroku']['url']}/apps/{APP}/config-vars",
        headers={
            "Authorization": f"Bearer {info['heroku']['api_key']}",
            "Accept": "application/vnd.heroku+json; version=3",
        },
        timeout=10,
    )
    config.raise_for_status()
    with psycopg.connect(config.json()["DATABASE_URL"]) as conn:
        rows = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("claims", "schema_migrations")
        }
    return Captured(done, rows)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TMPDIR for the drill's ``mktemp``, so a test can see that nothing is left behind."""
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    yield work


def database_exists(name: str) -> bool:
    with psycopg.connect(SERVER, connect_timeout=5) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def report_text(report: RestoreReport) -> str:
    """Everything a report could show: its summary, its repr, every problem and check."""
    return "\n".join([report.summary(), repr(report), *report.problems, *map(repr, report.checks)])


def signature(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["signature"]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_real_backup_restores_its_tables_judges_the_checks_and_is_dropped(
    backups: HerokuBackups, captured: Captured, private_tmp: Path
) -> None:
    url = backups.public_url(APP, captured.backup.id)

    report = restore_drill(invoke.Context(), url, server=SERVER, checks=[PASSING, FAILING, ERRING])

    assert report.where == "local" and report.database.startswith("restore_drill_")
    assert report.archive_bytes == captured.backup.size_bytes > 0
    assert {t: report.tables.get(t) for t in captured.source_rows} == captured.source_rows
    assert report.tables["claims"] > 0 and report.tables["schema_migrations"] > 0
    passing, failing, erring = report.checks
    assert (passing.query, passing.ok, passing.returned) == (PASSING, True, str(report.tables["claims"]))
    assert (failing.query, failing.ok, failing.returned) == (FAILING, False, "0")
    assert erring.query == ERRING and not erring.ok
    assert 'relation "nope" does not exist' in erring.returned
    assert len(report.problems) == 2, report.problems
    assert "returned 0" in report.problems[0] and "does not exist" in report.problems[1]
    assert not report.ok and report.created and not report.kept
    assert report.summary().startswith("restore drill FAILED on local")
    assert 0 < report.seconds < 120

    assert not database_exists(report.database)
    assert list(private_tmp.iterdir()) == []  # the archive and its directory are gone
    text = report_text(report)
    assert url not in text and signature(url) not in text


def test_a_clean_drill_passes_and_keeps_the_database_when_asked_with_a_password_kept_off(
    backups: HerokuBackups, captured: Captured, private_tmp: Path
) -> None:
    # The local server trusts postgres, so the password is not needed; it still goes the way a
    # real one would: into a 0600 pgpass file named by PGPASSFILE, never onto a command line.
    password = "not-needed-Hunter2"
    url = backups.public_url(APP, captured.backup.name)
    server = SERVER.replace("postgres@", f"postgres:{password}@")
    report = restore_drill(invoke.Context(), url, server=server, checks=[PASSING], keep=True)
    try:
        assert report.ok, report.problems
        assert report.created and report.kept
        assert report.summary().startswith("restore drill passed on local")
        assert f"{report.database} kept" in report.summary()
        assert database_exists(report.database)
        restored = SERVER.rsplit("/", 1)[0] + f"/{report.database}"
        with psycopg.connect(restored) as conn:
            titles = conn.execute("SELECT count(*) FROM claims WHERE title <> ''").fetchone()
        assert titles == (report.tables["claims"],)
        assert password not in report_text(report) and url not in report_text(report)
        assert list(private_tmp.iterdir()) == []
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{report.database}"')


def test_a_garbled_or_expired_url_is_a_download_problem_and_leaves_nothing(
    backups: HerokuBackups, captured: Captured, sandbox: Sandbox, private_tmp: Path
) -> None:
    url = backups.public_url(APP, str(captured.backup.num))
    garbled = with_query(url, signature="0" * 64)
    info = sandbox.info()
    expiring = requests.post(
        f"{info['heroku']['data_url']}/client/v11/apps/{APP}/transfers/{captured.backup.num}/actions/public-url",
        json={"ttl": 1},
        headers={"Authorization": f"Bearer {info['heroku']['api_key']}"},
        timeout=10,
    ).json()["url"]
    time.sleep(1.5)

    for bad in (garbled, expiring):
        report = restore_drill(invoke.Context(), bad, server=SERVER, checks=[PASSING])
        assert not report.ok and report.tables == {} and report.checks == ()
        (problem,) = report.problems
        assert problem.startswith("download: exited with 22") and "403" in problem, problem
        assert not database_exists(report.database)
        assert list(private_tmp.iterdir()) == []
        text = report_text(report)
        assert bad not in text and signature(bad) not in text


@pytest.fixture
def not_an_archive() -> Iterator[str]:
    """The URL of a file that is no pg_dump archive, served over real HTTP on the loopback."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"no pg_dump archive, just some bytes\n" * 10
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/b001.dump?signature={'ab' * 32}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_archive_pg_restore_refuses_is_a_problem_and_the_database_is_dropped(
    backups: HerokuBackups, not_an_archive: str, private_tmp: Path
) -> None:
    report = restore_drill(invoke.Context(), not_an_archive, server=SERVER, checks=[PASSING])

    (problem,) = report.problems
    assert problem.startswith("pg_restore: exited with 1: pg_restore: error:"), problem
    assert "does not appear to be a valid archive" in problem
    assert report.archive_bytes > 0 and report.tables == {} and report.checks == ()
    assert not database_exists(report.database)
    assert list(private_tmp.iterdir()) == []


def test_an_unreachable_server_is_a_problem_not_an_exception(
    backups: HerokuBackups, captured: Captured, private_tmp: Path
) -> None:
    url = backups.public_url(APP, captured.backup.id)
    password = "pw-for-nowhere"

    report = restore_drill(
        invoke.Context(),
        url,
        server=f"postgresql://postgres:{password}@127.0.0.1:1/postgres",
        checks=[PASSING],
    )

    (problem,) = report.problems
    assert problem.startswith("creating the scratch database: exited with 2: psql: error:"), problem
    assert "127.0.0.1" in problem and "port 1 failed" in problem
    assert report.archive_bytes == captured.backup.size_bytes and report.tables == {}
    assert list(private_tmp.iterdir()) == []
    text = report_text(report)
    assert password not in text and url not in text
