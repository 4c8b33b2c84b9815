"""The restore drill's commands and report on a verification host, with ``invoke.MockContext``
standing in for the SSH connection (Fabric's ``Connection`` runs commands with the same ``run``):
canned results per command, in order; the commands sent (quoted, no URL, no password) and the
report built from what they printed. Then the pure helpers: psql output, check verdicts, scratch
names, server URLs, and scrubbing the signed URL."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from typing import Any
from unittest.mock import Mock

import fabric
import pytest
from invoke import MockContext, Result
from invoke.exceptions import CommandTimedOut
from paramiko.ssh_exception import NoValidConnectionsError

from pipeline import restore
from pipeline.adapters import http
from pipeline.restore import CheckOutcome, RestoreReport, restore_drill

HOST = "verify.internal"
NAME = "restore_drill_20260101120000_abc123"
WORKDIR = "/tmp/restore_drill.Zq81xYw0aB"
ARCHIVE = f"{WORKDIR}/archive.dump"
SIGNATURE = "5f" * 32
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" * 4
S3_URL = (
    "https://xfrtu.s3.amazonaws.com/ab12cd34/2026-01-01T11%3A00%3A00Z/5f0c-4f1e?"
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLEKEY1234%2F20260101%2Fus-east-1"
    f"%2Fs3%2Faws4_request&X-Amz-Date=20260101T110000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    f"&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIGNATURE}"
)
SANDBOX_URL = f"http://127.0.0.1:41234/backups/5f0c-4f1e/b003.dump?expires=1767268800&signature={SIGNATURE}"
PASSWORD = "s3:cr\\et"
SERVER = "postgresql://drill:s3%3Acr%5Cet@db.internal:5432/postgres?sslmode=require"
SERVER_URL = "postgresql://drill@db.internal:5432/postgres?sslmode=require&connect_timeout=10"
TARGET_URL = f"postgresql://drill@db.internal:5432/{NAME}?sslmode=require&connect_timeout=10"
CHECKS = ("SELECT count(*) FROM claims", "SELECT count(*) FROM claims WHERE false", "SELECT * FROM nope")


def ok(stdout: str = "") -> Result:
    return Result(stdout=stdout, exited=0)


def failed(exited: int, stderr: str) -> Result:
    return Result(stderr=stderr, exited=exited)


def calls(context: Any) -> list[Any]:
    """Every ``run`` call, with its arguments (MockContext wraps ``run`` in a ``Mock``)."""
    return list(context.run.call_args_list)


def sent(context: Any) -> list[str]:
    """The command lines the drill ran, in order."""
    return [call.args[0] for call in calls(context)]


def argv(command: str) -> list[str]:
    """What a POSIX shell would pass to the program: proves the quoting."""
    return shlex.split(command)


def stdin_of(context: Any, index: int) -> str | None:
    stream = calls(context)[index].kwargs["in_stream"]
    return None if stream is False else str(stream.getvalue())


def drill(context: Any, url: str = S3_URL, **options: Any) -> RestoreReport:
    options.setdefault("server", SERVER)
    options.setdefault("name", NAME)
    options.setdefault("where", HOST)
    return restore_drill(context, url, **options)


def report_text(report: RestoreReport) -> str:
    return "\n".join([report.summary(), repr(report), *report.problems])


# -- the SSH path, through MockContext -------------------------------------------------------------


def test_a_drill_on_a_host_sends_quoted_commands_without_url_or_password_and_reports_what_they_said() -> None:
    context = MockContext(
        run=[
            ok(f"{WORKDIR}\n"),  # mktemp
            ok(),  # pgpass
            ok("48213"),  # curl
            ok(),  # CREATE DATABASE
            ok(),  # pg_restore
            ok('{"claims" : 3, "schema_migrations" : 2}\n'),
            ok("3\n"),
            ok("0\n"),
            failed(1, 'ERROR:  relation "nope" does not exist\nLINE 1: SELECT * FROM nope\n'),
            ok("t\n"),  # terminate + DROP
            ok(),  # rm
        ],
        repeat=False,
    )

    report = drill(context, checks=CHECKS)

    commands = sent(context)
    assert len(commands) == 11
    for command in commands:
        assert S3_URL not in command and SIGNATURE not in command and "X-Amz" not in command
        assert PASSWORD not in command and "s3%3Acr" not in command
    pgpass = f"{WORKDIR}/pgpass"
    env = ["env", f"PGPASSFILE={pgpass}"]
    psql = [*env, "psql", "-X", "-q", "-w"]
    assert argv(commands[0]) == ["mktemp", "-d", "-t", "restore_drill.XXXXXXXXXX"]
    assert commands[1] == f"umask 077 && cat > {pgpass}"
    assert stdin_of(context, 1) == "*:*:*:*:s3\\:cr\\\\et\n"
    assert argv(commands[2]) == [
        "curl", "-fsS", "--proto", "=http,https", "--connect-timeout", "30",
        "-o", ARCHIVE, "-w", "%{size_download}", "-K", "-",
    ]  # fmt: skip
    assert stdin_of(context, 2) == f'url = "{S3_URL}"\n'
    assert argv(commands[3]) == [
        *psql, "-v", "ON_ERROR_STOP=1", "-d", SERVER_URL,
        "-c", f'CREATE DATABASE "{NAME}" TEMPLATE template0',
    ]  # fmt: skip
    assert argv(commands[4]) == [
        *env, "pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--no-password",
        "-d", TARGET_URL, ARCHIVE,
    ]  # fmt: skip
    on_target = [*psql, "-At", "-v", "ON_ERROR_STOP=1", "-d", TARGET_URL]
    assert argv(commands[5]) == [*on_target, "-c", restore.TABLES_QUERY]
    for index, query in enumerate(CHECKS, start=6):
        assert argv(commands[index]) == [*on_target, "-c", query]
    assert argv(commands[9]) == [
        *psql, "-At", "-v", "ON_ERROR_STOP=1", "-d", SERVER_URL,
        "-c", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{NAME}' AND pid <> pg_backend_pid()",
        "-c", f'DROP DATABASE IF EXISTS "{NAME}"',
    ]  # fmt: skip
    assert argv(commands[10]) == ["rm", "-rf", "--", WORKDIR]
    for call in calls(context):
        assert call.kwargs["hide"] is True and call.kwargs["warn"] is True and call.kwargs["pty"] is False
        assert call.kwargs["echo_stdin"] is False
    assert [stdin_of(context, i) is None for i in range(11)] == [i not in (1, 2) for i in range(11)]

    assert (report.where, report.database, report.archive_bytes) == (HOST, NAME, 48213)
    assert report.tables == {"claims": 3, "schema_migrations": 2} and report.rows == 5
    assert report.checks == (
        CheckOutcome(CHECKS[0], True, "3"),
        CheckOutcome(CHECKS[1], False, "0"),
        CheckOutcome(CHECKS[2], False, 'ERROR: relation "nope" does not exist LINE 1: SELECT * FROM nope'),
    )
    assert report.problems == (
        "check 'SELECT count(*) FROM claims WHERE false' failed: returned 0",
        "check 'SELECT * FROM nope' failed: exited with 1: "
        'ERROR: relation "nope" does not exist LINE 1: SELECT * FROM nope',
    )
    assert not report.ok and not report.kept
    assert report.summary().startswith(f"restore drill FAILED on {HOST}: check 'SELECT count(*) FROM claims")
    assert "2 tables (5 rows) from a 48213-byte archive, 1/3 checks passed" in report.summary()
    assert report.summary().endswith(f"({NAME} dropped)")


def test_a_failing_pg_restore_is_a_problem_with_its_error_and_the_database_is_still_dropped() -> None:
    context = MockContext(
        run={
            re.compile(r"mktemp "): ok(f"{WORKDIR}\n"),
            re.compile(r"curl "): ok("1024"),
            re.compile(r"psql .*CREATE DATABASE"): ok(),
            re.compile(r"pg_restore "): failed(
                1,
                "pg_restore: while PROCESSING TOC:\n"
                "pg_restore: from TOC entry 215; 1259 16390 TABLE claims u1a2b3\n"
                'pg_restore: error: could not execute query: ERROR:  type "citext" does not exist\n'
                "LINE 4:     title citext NOT NULL,\n",
            ),
            re.compile(r"psql .*DROP DATABASE"): ok("t\n"),
            re.compile(r"rm "): ok(),
        },
        repeat=False,
    )

    report = drill(context, server="postgresql://postgres@127.0.0.1:5432/postgres", checks=CHECKS)

    programs = [argv(c)[0] for c in sent(context)]
    assert programs == [
        "mktemp",
        "curl",
        "psql",
        "pg_restore",
        "psql",
        "rm",
    ]  # no password: no pgpass, no env
    assert "DROP DATABASE" in sent(context)[4]
    assert report.problems == (
        'pg_restore: exited with 1: pg_restore: error: could not execute query: ERROR: type "citext" '
        "does not exist LINE 4: title citext NOT NULL,",
    )
    assert report.tables == {} and report.checks == () and report.archive_bytes == 1024
    assert not report.ok and report.created and not report.kept
    assert report.summary().endswith(f"({NAME} dropped)")


def test_a_refused_download_creates_nothing_and_its_error_is_scrubbed_of_the_url() -> None:
    context = MockContext(
        run=[
            ok(f"{WORKDIR}\n"),
            failed(22, f"curl: (22) The requested URL returned error: 403\nwhile fetching {SANDBOX_URL}\n"),
            ok(),
        ],
        repeat=False,
    )

    report = drill(context, SANDBOX_URL, server="postgresql://postgres@db.internal/postgres", checks=CHECKS)

    assert [c.split()[0] for c in sent(context)] == ["mktemp", "curl", "rm"]
    (problem,) = report.problems
    assert problem == (
        "download: exited with 22: curl: (22) The requested URL returned error: 403 while fetching [REDACTED]"
    )
    assert report.tables == {} and report.checks == () and not report.ok
    assert not report.created and report.summary().endswith("(no database created)")


def test_a_refused_download_with_a_password_writes_it_then_creates_nothing_and_is_scrubbed() -> None:
    context = MockContext(
        run=[
            ok(f"{WORKDIR}\n"),
            ok(),
            failed(22, f"curl: (22) The requested URL returned error: 403 for {S3_URL}\n"),
            ok(),
        ],
        repeat=False,
    )

    report = drill(context, checks=CHECKS)

    assert [c.split()[0] for c in sent(context)] == ["mktemp", "umask", "curl", "rm"]
    (problem,) = report.problems
    assert problem.startswith("download: exited with 22: curl: (22) The requested URL returned error: 403")
    assert S3_URL not in problem and SIGNATURE not in problem and TOKEN not in problem
    assert report.tables == {} and report.archive_bytes == 0 and not report.ok


def test_keep_leaves_the_database_and_says_so() -> None:
    context = MockContext(
        run=[
            ok(f"{WORKDIR}\n"),
            ok("2048"),
            ok(),
            ok(),
            ok('{"claims" : 3}'),
            ok("t"),
            ok(),
        ],
        repeat=False,
    )

    report = drill(
        context,
        server="postgresql://postgres@db.internal/postgres",
        checks=["SELECT bool_and(true)"],
        keep=True,
    )

    assert "DROP DATABASE" not in " ".join(sent(context)) and sent(context)[-1].startswith("rm -rf -- ")
    assert report.ok and report.created and report.kept
    assert report.checks == (CheckOutcome("SELECT bool_and(true)", True, "t"),)
    assert report.summary() == (
        f"restore drill passed on {HOST}: 1 table (3 rows) from a 2048-byte archive, 1/1 checks passed, "
        f"{report.seconds:.1f} s ({NAME} kept)"
    )


def test_an_existing_database_of_that_name_is_never_dropped() -> None:
    context = MockContext(
        run=[
            ok(f"{WORKDIR}\n"),
            ok("2048"),
            failed(1, f'ERROR:  database "{NAME}" already exists\n'),
            ok(),
        ],
        repeat=False,
    )

    report = drill(context, server="postgresql://postgres@db.internal/postgres")

    assert [c.split()[0] for c in sent(context)] == ["mktemp", "curl", "psql", "rm"]
    assert report.problems == (
        f'creating the scratch database: exited with 1: ERROR: database "{NAME}" already exists',
    )
    assert not report.created and not report.kept


def test_a_failed_drop_is_a_problem_and_the_summary_says_the_database_was_left_behind() -> None:
    context = MockContext(
        run=[
            ok(f"{WORKDIR}\n"),
            ok("2048"),
            ok(),
            ok(),
            ok('{"claims" : 3}'),
            failed(2, 'psql: error: connection to server at "db.internal", port 5432 failed: timeout\n'),
            ok(),
        ],
        repeat=False,
    )

    report = drill(context, server="postgresql://postgres@db.internal/postgres")

    assert report.problems == (
        f'dropping {NAME}: exited with 2: psql: error: connection to server at "db.internal", port 5432 '
        "failed: timeout",
    )
    assert report.created and report.kept and not report.ok
    assert report.summary().endswith(f"({NAME} LEFT BEHIND)")


def test_a_restore_with_no_tables_is_not_ok() -> None:
    context = MockContext(
        run=[ok(f"{WORKDIR}\n"), ok("900"), ok(), ok(), ok("{}\n"), ok(), ok()], repeat=False
    )

    report = drill(context, server="postgresql://postgres@db.internal/postgres")

    assert report.problems == ("pg_restore: the archive restored no tables",) and not report.ok


class Unreachable:
    """A connection whose host does not answer, as Fabric's ``Connection.run`` raises it."""

    host = HOST

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, **kwargs: Any) -> Result | None:
        self.commands.append(command)
        raise NoValidConnectionsError({("10.0.0.9", 22): ConnectionRefusedError(111, "Connection refused")})


def test_an_unreachable_host_is_a_problem_and_nothing_else_is_tried() -> None:
    host = Unreachable()

    report = restore_drill(host, S3_URL, server=SERVER, checks=CHECKS)

    assert [c.split()[0] for c in host.commands] == ["mktemp"]
    (problem,) = report.problems
    assert problem.startswith(f"working directory: could not reach {HOST}: NoValidConnectionsError")
    assert "port 22 on 10.0.0.9" in problem
    assert report.where == HOST and not report.ok


class TimesOut(MockContext):
    """MockContext whose pg_restore does not finish in time (invoke raises even with warn)."""

    def run(self, command: str, *args: Any, **kwargs: Any) -> Result:
        if command.startswith("pg_restore"):
            raise CommandTimedOut(Result(stderr="pg_restore: processing data for table claims\n"), timeout=5)
        return super().run(command, *args, **kwargs)


def test_a_command_that_times_out_is_a_problem_and_cleanup_still_runs() -> None:
    context = TimesOut(run=[ok(f"{WORKDIR}\n"), ok("9"), ok(), ok("t"), ok()], repeat=False)

    report = drill(context, server="postgresql://postgres@db.internal/postgres", timeout=5)

    assert report.problems == (
        "pg_restore: did not finish within 5 s: pg_restore: processing data for table claims",
    )


def test_an_unusable_url_runs_nothing_and_is_not_shown() -> None:
    for url in ("file:///etc/passwd", "https://h/x?signature=abc\nout = /etc/x", "", "not a url"):
        context = MockContext(run=[], repeat=False)
        report = drill(context, url)
        assert calls(context) == []
        assert report.problems == ("download: the backup URL is not a usable http(s) URL",)
        assert not url or url not in report_text(report)


def test_where_defaults_to_the_connections_host_or_local() -> None:
    connection = fabric.Connection("verify.internal", user="drill")  # not connected: nothing is run
    assert drill(connection, "ftp://x", where=None).where == "verify.internal"
    assert drill(MockContext(), "ftp://x", where=None).where == "local"


def test_programming_errors_raise() -> None:
    with pytest.raises(ValueError, match="scratch database name"):
        drill(MockContext(), name='x"; DROP DATABASE postgres; --')
    with pytest.raises(ValueError, match="PostgreSQL URL") as caught:
        drill(MockContext(), server="host=db password=hunter2")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(TypeError, match="sequence of queries"):
        drill(MockContext(), checks="SELECT 1")
    disowning = Mock()
    disowning.run.return_value = None
    with pytest.raises(TypeError):
        drill(disowning)


# -- pure helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ("t\n", None),
        ("true", None),
        ("1\n", None),
        ("42|extra|values\n", None),
        ("-3.5\n", None),
        ("f\n", "returned 'f', not true or a number"),
        ("0\n", "returned 0"),
        ("0.000\n", "returned 0.000"),
        ("NaN\n", "returned NaN"),
        ("\n", "returned 0 rows, not 1"),
        ("", "returned 0 rows, not 1"),
        ("1\n1\n", "returned 2 rows, not 1"),
        ("|1\n", "returned '', not true or a number"),
        ("yes\n", "returned 'yes', not true or a number"),
    ],
)
def test_a_check_passes_on_one_row_whose_first_value_is_true_or_non_zero(
    output: str, verdict: str | None
) -> None:
    assert restore.judge_check(output) == verdict


def test_the_tables_are_read_from_psql_json() -> None:
    assert restore.parse_tables('{ "claims" : 3, "s.we|ird" : 0 }\n') == {"claims": 3, "s.we|ird": 0}
    assert restore.parse_tables("{}") == {}
    for bad in ("", "[1]", '{"a": "3"}', '{"a": true}', "claims|3"):
        with pytest.raises(ValueError):
            restore.parse_tables(bad)


def test_scratch_names_are_timestamped_random_identifiers() -> None:
    now = datetime(2026, 1, 1, 13, 0, 5, tzinfo=UTC)
    assert restore.scratch_name(now, "abc123") == "restore_drill_20260101130005_abc123"
    names = {restore.scratch_name(now) for _ in range(50)}
    assert len(names) == 50
    assert all(restore.check_scratch_name(name) == name and len(name) <= 63 for name in names)
    for bad in ("", "Restore", "1abc", "a" * 64, "a-b", 'a"b', "a b"):
        with pytest.raises(ValueError):
            restore.check_scratch_name(bad)
    assert restore.quote_ident('a"b') == '"a""b"' and restore.quote_literal("o'k") == "'o''k'"


@pytest.mark.parametrize(
    ("server", "url", "password"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/postgres?connect_timeout=10",
            "",
        ),
        (SERVER, SERVER_URL, PASSWORD),
        (
            "postgres://u@[::1]:5433/db?password=p%40ss&connect_timeout=3",
            "postgres://u@[::1]:5433/db?connect_timeout=3",
            "p@ss",
        ),
        (
            "postgresql:///postgres?host=/var/run/postgresql",
            "postgresql:///postgres?host=%2Fvar%2Frun%2Fpostgresql&connect_timeout=10",
            "",
        ),
    ],
)  # fmt: skip
def test_the_server_loses_its_password_and_gains_a_connect_timeout(
    server: str, url: str, password: str
) -> None:
    assert restore.split_server(server) == (url, password)


def test_the_scratch_url_points_at_the_scratch_database_whatever_dbname_said() -> None:
    assert restore.database_url("postgresql://u@h:5432/postgres?dbname=postgres&sslmode=require", NAME) == (
        f"postgresql://u@h:5432/{NAME}?sslmode=require"
    )
    with pytest.raises(ValueError, match="line break"):
        restore.split_server("postgresql://u:a%0Ab@h/postgres")


def test_curl_and_pgpass_files_escape_what_their_formats_need() -> None:
    assert restore.curl_config('https://h/a"b\\c') == 'url = "https://h/a\\"b\\\\c"\n'
    assert restore.pgpass_line("a:b\\c") == "*:*:*:*:a\\:b\\\\c\n"
    assert restore.usable_url(S3_URL) and restore.usable_url(SANDBOX_URL)
    for bad in ("file:///etc/passwd", "https://", "https://h/a b", "https://h/\t", "https://h/\x7f", "//h/x"):
        assert not restore.usable_url(bad)


@pytest.mark.parametrize("url", [S3_URL, SANDBOX_URL], ids=["s3", "sandbox"])
def test_signed_urls_are_scrubbed_whole_and_in_parts(url: str) -> None:
    # http.redact alone already blanks the signature of both shapes (and the S3 credentials).
    redacted = http.redact(f"GET {url} failed")
    assert SIGNATURE not in redacted and TOKEN not in redacted and "[REDACTED]" in redacted
    assert "ASIAEXAMPLEKEY1234" not in redacted
    secrets = restore.url_secrets(url)
    query = url.split("?", 1)[1]
    for text in (url, query, f"sig {SIGNATURE}", url.replace("https://", "http://")):
        scrubbed = restore.scrub(f"curl: error at {text} here", secrets)
        assert SIGNATURE not in scrubbed and TOKEN not in scrubbed and url not in scrubbed
    assert restore.scrub("postgresql://u:pw@h/db", ()) == "postgresql://[REDACTED]@h/db"


def test_excerpts_are_one_scrubbed_line_from_the_first_error() -> None:
    said = "pg_restore: while PROCESSING TOC:\npg_restore: error: boom\n  at line 3\n"
    assert restore.excerpt(said) == "pg_restore: error: boom at line 3"
    assert restore.excerpt(said, from_error=False).startswith("pg_restore: while PROCESSING TOC:")
    long = restore.excerpt("error " + "x" * 1000)
    assert len(long) == restore.EXCERPT_CHARS and long.endswith("...")
    assert restore.excerpt(f"error: {PASSWORD} refused", [PASSWORD]) == "error: [REDACTED] refused"
