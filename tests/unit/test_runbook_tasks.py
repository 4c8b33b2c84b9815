"""The restore-drill runbook's SSH path, in-process: ``fab -H user@host restore-drill`` hands the task
a ``fabric.Connection``; here an ``invoke.MockContext`` with a ``host`` stands for it, its ``run``
answering canned ``invoke.Result`` s. The task is the real one (loaded from runbooks/fabfile.py),
building its real services from the shipped configuration against the session sandbox, as the
``fab`` process would from the environment; a real backup of production is captured first. The
drill's commands must all go through that context (nothing runs here), and the report, the exit
and the history must say what the host answered."""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from invoke import Exit, MockContext, Result

from pipeline import bootstrap
from pipeline.adapters.heroku_data import HerokuBackups
from pipeline.model import Backup
from sandbox.core import Sandbox

ROOT = Path(__file__).resolve().parents[2]
HOST = "verify.internal"
WORKDIR = "/tmp/restore_drill.Zq81xYw0aB"  # no such directory here: only the "host" has it
APP = "claims-production"


class Connection(MockContext):
    """What the drill sees of a ``fabric.Connection``: ``run`` (canned) and ``host``."""

    host = HOST


def answers(pg_restore: Result) -> dict[Any, Result]:
    """The host's answers, by command: a working directory, a download, the database, ``pg_restore``
    as given, the restored tables, the drop and the clean-up."""
    return {
        re.compile(r"mktemp "): Result(stdout=f"{WORKDIR}\n"),
        re.compile(r"curl "): Result(stdout="48213"),
        re.compile(r"psql .*CREATE DATABASE"): Result(),
        re.compile(r"pg_restore "): pg_restore,
        re.compile(r"psql .*json_object_agg"): Result(stdout='{"claims" : 3, "schema_migrations" : 2}\n'),
        re.compile(r"psql .*DROP DATABASE"): Result(stdout="t\n"),
        re.compile(r"rm -rf "): Result(),
    }


def calls(context: Any) -> list[Any]:
    """Every ``run`` call, with its arguments (MockContext wraps ``run`` in a ``Mock``)."""
    return list(context.run.call_args_list)


def sent(context: Any) -> list[str]:
    """The command lines run through ``context``, in order."""
    return [call.args[0] for call in calls(context)]


@pytest.fixture(scope="module")
def fabfile() -> ModuleType:
    """runbooks/fabfile.py, loaded as Fabric loads it (by path: runbooks is no package)."""
    spec = importlib.util.spec_from_file_location("runbooks_fabfile", ROOT / "runbooks" / "fabfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def backup(sandbox: Sandbox) -> Backup:
    """A completed backup of production in the session sandbox."""
    info = sandbox.info()["heroku"]
    backups = HerokuBackups(info["data_url"], info["url"], info["api_key"])
    started = backups.capture(APP)
    deadline = time.monotonic() + 60
    while (done := backups.backup(APP, started.id)).status in ("pending", "running"):
        assert time.monotonic() < deadline, "the backup did not finish within 60 s"
        time.sleep(0.2)
    assert done.status == "completed", done.logs
    return done


@pytest.fixture
def config_path(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped configuration, and the environment a ``fab`` run on the sandbox would have."""
    for name, value in sandbox.info()["env"].items():
        monkeypatch.setenv(name, value)
    (tmp_path / "store").mkdir()  # the configuration wants the store's directory to exist
    monkeypatch.setenv("PIPELINE_DATABASE_URL", f"sqlite:///{tmp_path / 'store' / 'pipeline.sqlite3'}")
    monkeypatch.setenv("PIPELINE_ACTOR", "tests")
    monkeypatch.delenv("PIPELINE_RESTORE_DATABASE_URL", raising=False)
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path / "pipeline.yml"


def history(config_path: Path) -> list[dict[str, Any]]:
    return bootstrap.services(bootstrap.settings(config_path), connect=False).log("production")


def test_on_a_host_the_drill_runs_every_command_through_the_connection_and_passes(
    fabfile: ModuleType, backup: Backup, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = Connection(run=answers(pg_restore=Result()))

    fabfile.restore_drill(connection, backup=backup.name, config=str(config_path))

    commands = sent(connection)
    assert commands[0].startswith("mktemp -d") and commands[-1] == f"rm -rf -- {WORKDIR}"
    programs = [command.split()[0] for command in commands]
    assert programs == ["mktemp", "curl", "psql", "pg_restore", "psql", "psql", "rm"], commands
    (download,) = [call for call in calls(connection) if call.args[0].startswith("curl ")]
    assert f"{WORKDIR}/archive.dump" in download.args[0]
    given = download.kwargs["in_stream"].getvalue()  # the signed URL reaches curl on its stdin only
    assert given.startswith('url = "http') and backup.id in given
    assert all(backup.id not in command for command in commands)
    printed = capsys.readouterr().out
    assert printed.startswith(f"restore drill passed on {HOST}: 2 tables (5 rows) from a 48213-byte archive")
    (noted,) = [e for e in history(config_path) if e["kind"] == "BackupRestoreVerified"]
    assert noted["refs"]["backup"] == backup.id and f'"where": "{HOST}"' in noted["detail"]


def test_a_drill_failing_on_the_host_exits_1_and_still_drops_the_database(
    fabfile: ModuleType, backup: Backup, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = Result(stderr="pg_restore: error: unsupported version (1.16) in file header\n", exited=1)
    connection = Connection(run=answers(pg_restore=broken))

    with pytest.raises(Exit) as exited:
        fabfile.restore_drill(connection, backup=backup.name, config=str(config_path))

    assert exited.value.code == 1
    commands = sent(connection)
    assert any("DROP DATABASE" in command for command in commands) and commands[-1].startswith("rm -rf")
    printed = capsys.readouterr().out
    assert printed.startswith(f"restore drill FAILED on {HOST}: pg_restore: exited with 1")
    assert "unsupported version" in printed
    (noted,) = [e for e in history(config_path) if e["kind"] == "BackupRestoreFailed"]
    assert noted["refs"]["backup"] == backup.id
