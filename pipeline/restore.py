"""The backup restore drill: restore a backup into a scratch database and check it.

``restore_drill(context, url, server=..., checks=...)`` runs the same shell commands through an
invoke-style context, so the drill runs on this machine (``invoke.Context()``, real processes) or
on a verification host (``fabric.Connection(host)``, over SSH) alike. On that machine it

1. makes a private working directory (``mktemp -d``, mode 0700);
2. downloads the archive (``curl -fsS``) into it; the signed URL reaches curl on its standard
   input as a curl config (``-K -``), so it is on no command line (``ps``, shell history, the SSH
   exec request, invoke's echo) and in no file;
3. creates the scratch database on ``server`` (``CREATE DATABASE ... TEMPLATE template0``: a
   pristine template, so nothing added to ``template1`` collides with the archive);
4. restores into it (``pg_restore --no-owner --no-acl --exit-on-error``);
5. reads every restored table with its exact row count (one ``psql -At`` query answering JSON);
6. runs each check query (one row whose first value is true or a non-zero number passes);
7. drops the scratch database (always, unless ``keep``) and removes the working directory.

A password in ``server`` is kept off the command lines too: it is written, through standard input,
to a 0600 ``pgpass`` file in the working directory that ``PGPASSFILE`` names. Every step that fails
(download refused, server unreachable, pg_restore error, SSH down) becomes a one-line problem in
the ``RestoreReport``, with an excerpt of what the command said, scrubbed of the URL and of the
password; only programming errors (a bad scratch name, a server that is not a PostgreSQL URL)
raise.

The machine that runs the commands needs a POSIX shell, ``mktemp``, ``curl``, ``psql`` and
``pg_restore`` (at least as new as the ``pg_dump`` that made the archive), and must reach both the
URL and ``server``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from invoke.exceptions import CommandTimedOut, Failure, ThreadException
from invoke.runners import Result
from paramiko.ssh_exception import SSHException

from pipeline.adapters import http

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "restore_drill"
DEFAULT_TIMEOUT = 3600.0  # seconds any one command may take (a big archive takes a while to restore)
CONNECT_TIMEOUT = 10  # seconds psql and pg_restore wait for the server, unless ``server`` says
EXCERPT_CHARS = 300
ARCHIVE = "archive.dump"
PGPASS = "pgpass"

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MIN_SECRET_PART = 16  # query values at least this long are scrubbed on their own too

# Every ordinary table outside the system schemas, with its exact row count, as one JSON object.
# query_to_xml runs a count(*) per table inside the one query (the server needs XML support, as
# the usual builds have); public tables are named bare (claims), others schema.table.
TABLES_QUERY = (
    "SELECT coalesce(json_object_agg(t.name, t.n ORDER BY t.name), '{}') FROM ("
    " SELECT CASE WHEN table_schema = 'public' THEN table_name"
    " ELSE table_schema || '.' || table_name END AS name,"
    " (xpath('/row/n/text()', query_to_xml("
    "format('SELECT count(*) AS n FROM %I.%I', table_schema, table_name), false, true, '')"
    "))[1]::text::bigint AS n"
    " FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
    " AND table_schema <> 'information_schema' AND left(table_schema, 3) <> 'pg_'"
    ") AS t"
)


class WholeInput(io.StringIO):
    """Standard input for a command that hands over everything at the first read. invoke reads an
    ``in_stream`` that is not a terminal one character per ``Runner.input_sleep`` (10 ms): a 1.5 KB
    signed S3 URL would take 15 s to reach curl."""

    def read(self, size: int | None = -1, /) -> str:
        return super().read()


class Shell(Protocol):
    """What the drill needs of an ``invoke.Context`` or a ``fabric.Connection``: ``run``."""

    def run(self, command: str, **kwargs: Any) -> Result | None: ...


@dataclass(frozen=True)
class CheckOutcome:
    """One check query: ``ok`` when it passed; ``returned`` is what it printed (trimmed), or an
    excerpt of its error."""

    query: str
    ok: bool
    returned: str


@dataclass(frozen=True)
class RestoreReport:
    """What one drill found. ``where`` is ``local`` or the verification host; ``database`` the
    scratch database: ``created`` when the drill made it, ``kept`` when it still exists afterwards
    (asked with ``keep``, or its drop failed: a problem says so); ``tables`` name -> rows
    (``claims``, ``other_schema.table``); ``problems`` one line each, scrubbed of the URL and of
    passwords."""

    where: str
    database: str
    archive_bytes: int
    tables: Mapping[str, int]
    checks: tuple[CheckOutcome, ...]
    problems: tuple[str, ...]
    seconds: float
    created: bool = False
    kept: bool = False

    @property
    def ok(self) -> bool:
        """No problems, and at least one table restored."""
        return not self.problems and bool(self.tables)

    @property
    def rows(self) -> int:
        """Rows in every restored table together."""
        return sum(self.tables.values())

    def lines(self) -> list[str]:
        """The report for people: the summary, then each check and what it returned."""
        return [self.summary()] + [
            f"  {'ok  ' if c.ok else 'FAIL'} {c.query} -> {c.returned}" for c in self.checks
        ]

    def summary(self) -> str:
        """One line for people: the verdict, what was restored, the checks, the first problems."""
        passed = sum(1 for c in self.checks if c.ok)
        tables = _count(len(self.tables), "table")
        found = (
            f"{tables} ({_count(self.rows, 'row')}) from a {self.archive_bytes}-byte archive, "
            f"{passed}/{len(self.checks)} checks passed, {self.seconds:.1f} s"
        )
        if not self.created:
            fate = "no database created"
        elif not self.kept:
            fate = f"{self.database} dropped"
        elif any(p.startswith(f"dropping {self.database}:") for p in self.problems):
            fate = f"{self.database} LEFT BEHIND"
        else:
            fate = f"{self.database} kept"
        if self.ok:
            return f"restore drill passed on {self.where}: {found} ({fate})"
        if not self.problems:
            return f"restore drill FAILED on {self.where}: no tables restored; {found} ({fate})"
        more = len(self.problems) - 3
        shown = "; ".join(self.problems[:3]) + (f"; and {more} more" if more > 0 else "")
        return f"restore drill FAILED on {self.where}: {shown}; {found} ({fate})"


# -- pure helpers ----------------------------------------------------------------------------------


def scratch_name(now: datetime, token: str | None = None) -> str:
    """``restore_drill_<UTC yyyymmddHHMMSS>_<6 random hex>``: a valid, unquoted-safe identifier."""
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{SCRATCH_PREFIX}_{stamp}_{token if token is not None else secrets.token_hex(3)}"


def check_scratch_name(name: str) -> str:
    """``name`` when it is a lower-case identifier of at most 63 characters (letters, digits,
    underscores), so it is the same in SQL, in a URL and in ``pg_database``; ValueError otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"scratch database name {name!r}: a-z, 0-9 and _ (at most 63), not 0-9 first")
    return name


def quote_ident(name: str) -> str:
    """An SQL identifier, double-quoted (``"a""b"``)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """An SQL string literal (standard conforming: only ``'`` is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def split_server(server: str) -> tuple[str, str]:
    """``server`` (a libpq URL, ``postgresql://user:password@host:5432/postgres``) as the URL to
    give psql - without its password (from the user info or a ``password`` parameter) and with
    ``connect_timeout`` unless it has one - and that password ("" when none). ValueError unless it
    is a ``postgresql://`` or ``postgres://`` URL; the message never shows the password."""
    parts = urlsplit(server)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            "server: a PostgreSQL URL is needed, such as postgresql://postgres@127.0.0.1:5432/postgres"
        )
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    password = unquote(password)
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            password = password or value
        else:
            query.append((key, value))
    if not any(key == "connect_timeout" for key, _ in query):
        query.append(("connect_timeout", str(CONNECT_TIMEOUT)))
    netloc = f"{user}@{hostport}" if at and user else hostport
    if "\n" in password or "\r" in password:
        raise ValueError("server: the password cannot hold a line break")
    return _url(parts.scheme, netloc, parts.path, query), password


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name`` instead (its ``dbname`` parameter dropped, as
    it would win over the path)."""
    parts = urlsplit(server_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return _url(parts.scheme, parts.netloc, "/" + quote(name, safe=""), query)


def _url(scheme: str, netloc: str, path: str, query: Sequence[tuple[str, str]]) -> str:
    """A URL that keeps ``//`` with an empty host (``postgresql:///db?host=/run/postgresql``), as
    ``urlunsplit`` does not."""
    return f"{scheme}://{netloc}{path}" + (f"?{urlencode(query)}" if query else "")


def usable_url(url: str) -> bool:
    """An absolute http(s) URL without blanks or control characters (anything else could change
    the meaning of curl's config)."""
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.netloc)


def curl_config(url: str) -> str:
    """The curl config (``-K``) that names ``url``: ``url = "..."`` with ``\\`` and ``"`` escaped."""
    return 'url = "' + url.replace("\\", "\\\\").replace('"', '\\"') + '"\n'


def pgpass_line(password: str) -> str:
    """A ``.pgpass`` line giving ``password`` for any host, port, database and user."""
    return "*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n"


def url_secrets(url: str) -> tuple[str, ...]:
    """What of a signed URL must never be shown: the URL itself, its query and every long query
    value (signatures, credentials, tokens), also percent-decoded."""
    found = {url}
    try:
        query = urlsplit(url).query
    except ValueError:
        return (url,)
    if query:
        found.add(query)
        for raw in re.split(r"[&;]", query):
            value = raw.partition("=")[2]
            if len(value) >= _MIN_SECRET_PART:
                found.update((value, unquote(value)))
    return tuple(found)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without ``secrets`` (longest first, so a URL goes before its parts), and without
    anything ``http.redact`` recognises (``signature=``, ``X-Amz-Signature=``, ``user:pw@``)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    return http.redact(text)


def excerpt(text: str, secrets: Iterable[str] = (), *, from_error: bool = True) -> str:
    """One scrubbed line of at most ``EXCERPT_CHARS`` characters from a command's output; with
    ``from_error``, from its first line that says ``error`` when there is one (pg_restore's context
    lines come before it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "error" in line.lower()), 0) if from_error else 0
    line = " ".join(scrub(" ".join(lines[start:]), secrets).split())
    return line if len(line) <= EXCERPT_CHARS else line[: EXCERPT_CHARS - 3] + "..."


def parse_tables(output: str) -> dict[str, int]:
    """The restored tables from ``TABLES_QUERY``'s output (a JSON object name -> rows).
    ValueError on anything else."""
    data = json.loads(output.strip())
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in data.items()
    ):
        raise ValueError("not a JSON object of table names and row counts")
    return dict(data)


def judge_check(output: str) -> str | None:
    """None when ``output`` (``psql -At``: one line per row, ``|`` between values) is exactly one
    row whose first value is true (``t``) or a finite non-zero number; otherwise why it fails.
    (A value holding a line break reads as several rows, so it fails.)"""
    rows = output.rstrip("\n").split("\n") if output.strip() else []
    if len(rows) != 1:
        return f"returned {len(rows)} rows, not 1"
    first = rows[0].split("|", 1)[0].strip()
    if first.lower() in ("t", "true"):
        return None
    try:
        number = Decimal(first)
    except InvalidOperation:
        return f"returned {first!r}, not true or a number"
    if not number.is_finite() or number == 0:
        return f"returned {first}"
    return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def one_line(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut at ``limit`` characters (for naming a query in a problem)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- the drill -------------------------------------------------------------------------------------


def restore_drill(
    context: Shell,
    url: str,
    *,
    server: str,
    checks: Sequence[str] = (),
    keep: bool = False,
    name: str | None = None,
    where: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> RestoreReport:
    """Restore the archive at ``url`` (a backup's signed URL, ``Backups.public_url``) into a new
    scratch database on ``server`` and check it, running every command through ``context``; see
    the module's docstring for the steps.

    ``server``: a libpq URL of a server where the drill may create databases, as reached from the
    machine ``context`` runs commands on. ``checks``: SQL queries, each passing when it returns one
    row whose first value is true or a non-zero number. ``keep``: leave the scratch database (the
    report says so). ``name``: the scratch database (default ``scratch_name(now)``); a database that
    already exists is never dropped. ``where``: what the report calls the machine (default: the
    context's ``host``, else ``local``). ``timeout``: seconds per command.

    Never raises for what the machine, the URL or the server do: every failure is a problem in the
    report. ValueError for a bad ``name`` or ``server``; TypeError for ``checks`` given as one string.
    """
    started = time.monotonic()
    if isinstance(checks, str):
        raise TypeError("checks: a sequence of queries, not one query")
    database = check_scratch_name(name if name is not None else scratch_name(datetime.now(UTC)))
    server_url, password = split_server(server)
    drill = _Drill(
        context,
        where or _host(context) or "local",
        secrets=(*url_secrets(url), *((password, quote(password, safe="")) if password else ())),
        timeout=timeout,
    )
    log.info("restore drill on %s into %s", drill.where, database)
    try:
        drill.run(url, server_url, password, database, checks)
    finally:
        drill.clean_up(server_url, database, keep)
    report = RestoreReport(
        where=drill.where,
        database=database,
        archive_bytes=drill.archive_bytes,
        tables=drill.tables,
        checks=tuple(drill.checks),
        problems=tuple(drill.problems),
        seconds=round(time.monotonic() - started, 3),
        created=drill.made,
        kept=drill.created,
    )
    (log.info if report.ok else log.warning)("%s", report.summary())
    return report


def _host(context: Shell) -> str | None:
    host = getattr(context, "host", None)
    return host if isinstance(host, str) and host else None


class _Drill:
    """One drill's commands and what they found so far (mutable while it runs)."""

    def __init__(self, context: Shell, where: str, *, secrets: Sequence[str], timeout: float | None) -> None:
        self.context = context
        self.where = where
        self.secrets = tuple(secrets)
        self.timeout = timeout
        self.workdir: str | None = None
        self.env = ""  # "env PGPASSFILE=... " when the server has a password
        self.made = False  # this drill created the scratch database
        self.created = False  # ... and it exists now
        self.archive_bytes = 0
        self.tables: dict[str, int] = {}
        self.checks: list[CheckOutcome] = []
        self.problems: list[str] = []

    # -- running one command -----------------------------------------------------------------------

    def attempt(self, command: str, stdin: str | None = None) -> tuple[Result | None, str | None]:
        """Run ``command`` (``stdin`` on its standard input); the Result and None when it exited 0,
        else what went wrong (scrubbed; the Result too when it ran to an exit)."""
        log.debug("on %s: %s", self.where, command)
        try:
            result = self.context.run(
                command,
                hide=True,
                warn=True,
                pty=False,
                in_stream=WholeInput(stdin) if stdin is not None else False,
                echo_stdin=False,
                timeout=self.timeout,
            )
        except CommandTimedOut as exc:
            return None, f"did not finish within {exc.timeout:g} s" + self._said(exc.result)
        except Failure as exc:  # nothing else should escape warn=True; keep it a problem anyway
            return None, f"failed ({type(exc).__name__})" + self._said(exc.result)
        except ThreadException as exc:
            kinds = ", ".join(sorted({type(e.value).__name__ for e in exc.exceptions}))
            return None, f"its input or output broke ({kinds})"
        except (OSError, EOFError, SSHException) as exc:  # SSH: refused, unknown host, auth, dropped
            said = excerpt(f"{type(exc).__name__}: {exc}", self.secrets)
            return None, f"could not reach {self.where}: {said}"
        if result is None:
            raise TypeError("context.run returned no Result (was it asked to disown the command?)")
        if result.exited != 0:
            hint = f" (a program not installed on {self.where}?)" if result.exited == 127 else ""
            return result, f"exited with {result.exited}{hint}" + self._said(result)
        return result, None

    def _said(self, result: Result | None) -> str:
        if result is None:
            return ""
        said = excerpt(result.stderr or result.stdout or "", self.secrets)
        return f": {said}" if said else ""

    def step(self, what: str, command: str, stdin: str | None = None) -> Result | None:
        """``attempt``; on failure a problem ``<what>: <why>`` and None."""
        result, why = self.attempt(command, stdin)
        if why is not None:
            self.problem(f"{what}: {why}")
            return None
        return result

    def problem(self, line: str) -> None:
        line = scrub(line, self.secrets)
        log.warning("restore drill on %s: %s", self.where, line)
        self.problems.append(line)

    def psql(self, url: str, *sql: str, tuples: bool = False) -> str:
        """A ``psql`` command line: no ~/.psqlrc, never prompting, stopping at the first error."""
        flags = "-X -q -w -At" if tuples else "-X -q -w"
        commands = " ".join(f"-c {shlex.quote(s)}" for s in sql)
        return f"{self.env}psql {flags} -v ON_ERROR_STOP=1 -d {shlex.quote(url)} {commands}"

    # -- the steps ----------------------------------------------------------------------------------

    def run(self, url: str, server_url: str, password: str, database: str, checks: Sequence[str]) -> None:
        """Every step in turn, stopping at the first that fails (the checks each run regardless)."""
        if not usable_url(url):
            self.problem("download: the backup URL is not a usable http(s) URL")
            return
        made = self.step("working directory", f"mktemp -d -t {SCRATCH_PREFIX}.XXXXXXXXXX")
        if made is None:
            return
        workdir = made.stdout.strip()
        if not (workdir.startswith("/") and f"/{SCRATCH_PREFIX}." in workdir and "\n" not in workdir):
            self.problem(f"working directory: mktemp printed {one_line(workdir)!r}, not a new directory")
            return
        self.workdir = workdir
        if password:
            pgpass = f"{workdir}/{PGPASS}"
            write = f"umask 077 && cat > {shlex.quote(pgpass)}"
            written = self.step("password file", write, pgpass_line(password))
            if written is None:
                return
            self.env = f"env PGPASSFILE={shlex.quote(pgpass)} "
        archive = f"{workdir}/{ARCHIVE}"
        if not self.download(url, archive):
            return
        create = f"CREATE DATABASE {quote_ident(database)} TEMPLATE template0"
        if self.step("creating the scratch database", self.psql(server_url, create)) is None:
            return
        self.made = self.created = True
        target = database_url(server_url, database)
        restore = (
            f"{self.env}pg_restore --no-owner --no-acl --exit-on-error --no-password"
            f" -d {shlex.quote(target)} {shlex.quote(archive)}"
        )
        if self.step("pg_restore", restore) is None:
            return
        listed = self.step("reading the restored tables", self.psql(target, TABLES_QUERY, tuples=True))
        if listed is None:
            return
        try:
            self.tables = parse_tables(listed.stdout)
        except ValueError:
            printed = excerpt(listed.stdout, self.secrets, from_error=False)
            self.problem(f"reading the restored tables: unexpected output {printed!r}")
            return
        if not self.tables:
            self.problem("pg_restore: the archive restored no tables")
        for query in checks:
            self.check(target, query)

    def download(self, url: str, archive: str) -> bool:
        """curl the archive to ``archive``, the URL given on standard input; its size recorded."""
        command = (
            "curl -fsS --proto =http,https --connect-timeout 30"
            f" -o {shlex.quote(archive)} -w {shlex.quote('%{size_download}')} -K -"
        )
        fetched = self.step("download", command, curl_config(url))
        if fetched is None:
            return False
        try:
            self.archive_bytes = int(fetched.stdout.strip().split()[-1])
        except (ValueError, IndexError):
            self.problem(f"download: curl printed {excerpt(fetched.stdout, self.secrets)!r}, not a size")
            return False
        if self.archive_bytes == 0:
            self.problem("download: the archive is empty (0 bytes)")
            return False
        return True

    def check(self, target: str, query: str) -> None:
        """Run one check query; its outcome, and a problem when it does not pass."""
        result, why = self.attempt(self.psql(target, query, tuples=True))
        if why is None and result is not None:
            verdict = judge_check(result.stdout)
            printed = excerpt(result.stdout, self.secrets, from_error=False)
            self.checks.append(CheckOutcome(query, verdict is None, printed))
            if verdict is None:
                return
            why = verdict
        elif why is not None:
            said = excerpt(result.stderr or result.stdout, self.secrets) if result is not None else ""
            self.checks.append(CheckOutcome(query, False, said or why))
        self.problem(f"check {one_line(query)!r} failed: {why}")

    def clean_up(self, server_url: str, database: str, keep: bool) -> None:
        """Drop the scratch database (when this drill created it, unless ``keep``), then remove the
        working directory. Each failure is a problem (a leftover database is worth knowing)."""
        if self.created and not keep:
            terminate = (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = {quote_literal(database)} AND pid <> pg_backend_pid()"
            )
            drop = f"DROP DATABASE IF EXISTS {quote_ident(database)}"
            dropped = self.step(f"dropping {database}", self.psql(server_url, terminate, drop, tuples=True))
            if dropped is not None:
                self.created = False
        if self.workdir is not None:
            self.step("removing the working directory", f"rm -rf -- {shlex.quote(self.workdir)}")
