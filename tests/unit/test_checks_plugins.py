"""The ``release_phase``, ``dynos`` and ``commit`` checks with plain values, and what every plugin
shares. Heroku is a small fake of plain values here (``Heroku`` below: what the API would report);
the commit check talks to a tiny app on loopback. tests/integration/test_checks_platform.py runs
them against the sandbox's Heroku."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from pydantic import ValidationError

import checks
from checks import Target, commit, dynos, release_phase
from pipeline.errors import ExternalError, NotFound, Temporary
from pipeline.model import Dyno, Formation, HerokuRelease
from pipeline.ports import Platform

APP = "claims-staging"
COMMIT = "3f9c2a41be07d5c8a9e6f1b2c3d4e5f6a7b8c9d0"
OUTPUT_URL = "https://release-output.example/streams/v12?token=t"


@dataclass
class Heroku:
    """What the Heroku Platform API reports, as plain values; ``down`` makes every read fail.

    It implements the part of ``pipeline.ports.Platform`` the checks read."""

    releases: dict[int, HerokuRelease] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # release id -> release phase output
    formations: list[Formation] = field(default_factory=list)
    running: list[Dyno] = field(default_factory=list)
    down: ExternalError | None = None
    output_down: ExternalError | None = None

    def release(self, app: str, id_or_version: str | int) -> HerokuRelease:
        self._answer()
        found = self.releases.get(int(id_or_version))
        if found is None:
            raise NotFound("heroku", f"reading release {id_or_version} of {app}", status=404)
        return found

    def release_output(self, release: HerokuRelease) -> str:
        self._answer()
        if self.output_down is not None:
            raise self.output_down
        return self.outputs.get(release.id, "")

    def formation(self, app: str) -> list[Formation]:
        self._answer()
        return list(self.formations)

    def dynos(self, app: str) -> list[Dyno]:
        self._answer()
        return list(self.running)

    def _answer(self) -> None:
        if self.down is not None:
            raise self.down


def a_release(
    version: int = 12, status: str = "succeeded", output_url: str | None = OUTPUT_URL
) -> HerokuRelease:
    return HerokuRelease(
        id=f"release-{version}",
        version=version,
        status=status,
        slug_id="slug-1",
        current=status == "succeeded",
        description=f"Deploy {COMMIT[:8]}",
        created_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        output_stream_url=output_url,
    )


def on(heroku: Heroku | None, version: int | None = 12, web_url: str = "http://127.0.0.1:9/") -> Target:
    platform = cast(Platform, heroku) if heroku is not None else None
    return Target(
        stage="staging", app=APP, web_url=web_url, release_version=version, commit=COMMIT, platform=platform
    )


MIGRATED = "release: applying 003_add_note.sql\nrelease: done, schema at 003_add_note\n"
BROKEN = (
    "release: applying 003_break_release.sql\n"
    'release: 003_break_release.sql failed: relation "no_such_table" does not exist\n'
    "\n"
    "Release command exited with status 1; release v12 failed\n"
)


# --- release_phase ----------------------------------------------------------------------------


def test_a_succeeded_release_passes_and_keeps_its_release_phase_output() -> None:
    heroku = Heroku(releases={12: a_release()}, outputs={"release-12": MIGRATED})
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert (result.name, result.outcome) == ("release_phase", "passed")
    assert result.detail == "v12 succeeded; release phase printed 2 lines"
    assert result.evidence == MIGRATED


def test_one_line_is_one_line() -> None:
    heroku = Heroku(releases={12: a_release()}, outputs={"release-12": "release: nothing to do"})
    assert release_phase.run(release_phase.Options(), on(heroku)).detail.endswith("printed 1 line")


@pytest.mark.parametrize(
    ("output_url", "output", "says"),
    [
        (None, "", "v12 succeeded; it has no release phase"),
        (OUTPUT_URL, "", "v12 succeeded; its release phase printed nothing"),
    ],
)
def test_a_release_without_release_phase_output_passes_saying_so(
    output_url: str | None, output: str, says: str
) -> None:
    heroku = Heroku(releases={12: a_release(output_url=output_url)}, outputs={"release-12": output})
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert (result.outcome, result.detail, result.evidence) == ("passed", says, "")


def test_a_pending_release_fails_so_the_controller_tries_again() -> None:
    heroku = Heroku(releases={12: a_release(status="pending")}, outputs={"release-12": "release: applying"})
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert (result.outcome, result.detail) == ("failed", "v12 is still running its release phase")
    assert result.evidence == ""  # a running release phase's log is not followed


@pytest.mark.parametrize("status", ["failed", "expired"])
def test_a_failed_release_fails_quoting_the_end_of_its_output(status: str) -> None:
    heroku = Heroku(releases={12: a_release(status=status)}, outputs={"release-12": BROKEN})
    result = release_phase.run(release_phase.Options(tail_lines=2), on(heroku))
    assert result.outcome == "failed"
    assert result.detail == (
        f"v12 {status}; release phase printed 4 lines, ending: "
        'release: 003_break_release.sql failed: relation "no_such_table" does not exist | '
        "Release command exited with status 1; release v12 failed"
    )
    assert result.evidence == BROKEN


def test_the_detail_quotes_three_lines_by_default_or_none() -> None:
    heroku = Heroku(releases={12: a_release(status="failed")}, outputs={"release-12": BROKEN})
    detail = release_phase.run(release_phase.Options(), on(heroku)).detail
    assert detail.count(" | ") == 2 and "applying 003_break_release.sql" in detail
    bare = release_phase.run(release_phase.Options(tail_lines=0), on(heroku)).detail
    assert bare == "v12 failed; release phase printed 4 lines"


def test_a_failed_release_with_unreadable_output_still_fails_and_says_why() -> None:
    unreadable = Temporary("heroku", "reading the release phase output of v12", status=503)
    heroku = Heroku(releases={12: a_release(status="failed")}, output_down=unreadable)
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert result.outcome == "failed"
    assert result.detail.startswith("v12 failed; its output is unreadable: heroku: ")
    assert "HTTP 503" in result.detail


def test_a_succeeded_release_with_unreadable_output_is_an_error_tried_again() -> None:
    unreadable = Temporary("heroku", "reading the release phase output of v12", status=503)
    heroku = Heroku(releases={12: a_release()}, output_down=unreadable)
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert result.outcome == "error"
    assert result.detail.startswith("v12 succeeded, but its output is unreadable: heroku: ")


def test_a_long_output_keeps_its_last_16_kb_and_says_so() -> None:
    lines = [f"release: step {n:05d} {'é' * 20}" for n in range(2000)]  # about 80 KB, not all ASCII
    output = "\n".join(lines) + "\n"
    heroku = Heroku(releases={12: a_release()}, outputs={"release-12": output})
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert result.detail == "v12 succeeded; release phase printed 2000 lines"
    assert len(result.evidence.encode()) <= 16 * 1024
    note, kept = result.evidence.split("\n", 1)
    assert note.startswith("[trimmed: the first ") and note.endswith(
        f" of {len(output.encode())} bytes are left out]"
    )
    assert output.endswith(kept) and kept.startswith("release: step ")  # from the start of a line
    assert kept.endswith("release: step 01999 " + "é" * 20 + "\n")
    dropped = int(note.split()[3])
    assert dropped + len(kept.encode()) == len(output.encode())


def test_a_release_status_it_does_not_know_is_an_error() -> None:
    heroku = Heroku(releases={12: a_release(status="cancelled")})
    result = release_phase.run(release_phase.Options(), on(heroku))
    assert (result.outcome, result.detail) == ("error", "v12 has status 'cancelled', unknown to this check")


@pytest.mark.parametrize(
    ("heroku", "version", "says"),
    [
        (None, 12, "this check reads Heroku, and the target has no platform"),
        (Heroku(releases={12: a_release()}), None, f"no release version of {APP} to look at"),
        (Heroku(), 12, f"could not read v12 of {APP}: heroku: reading release 12 of {APP} (HTTP 404)"),
        (
            Heroku(down=Temporary("heroku", "reading release 12", status=503)),
            12,
            f"could not read v12 of {APP}: heroku: reading release 12 (HTTP 503)",
        ),
    ],
)
def test_release_phase_is_an_error_when_it_cannot_look(
    heroku: Heroku | None, version: int | None, says: str
) -> None:
    result = release_phase.run(release_phase.Options(), on(heroku, version))
    assert (result.name, result.outcome, result.detail) == ("release_phase", "error", says)


@pytest.mark.parametrize("options", [{"tail_lines": -1}, {"tail_lines": 21}, {"lines": 3}])
def test_release_phase_refuses_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        release_phase.Options.model_validate(options)


# --- dynos ------------------------------------------------------------------------------------


def web(quantity: int = 1) -> Formation:
    return Formation(type="web", quantity=quantity, size="Standard-1X", command="python app.py")


def worker(quantity: int = 2) -> Formation:
    return Formation(type="worker", quantity=quantity, size="Standard-1X", command="python worker.py")


def dyno(name: str, state: str = "up", version: int | None = 12) -> Dyno:
    return Dyno(name=name, type=name.split(".")[0], state=state, release_version=version)


@pytest.mark.parametrize(
    ("formation", "running", "types", "says"),
    [
        ([web()], [dyno("web.1")], None, "v12: web 1 of 1 up"),
        (
            [web(2), worker()],
            [dyno("web.1"), dyno("web.2"), dyno("worker.1"), dyno("worker.2")],
            None,
            "v12: web 2 of 2 up, worker 2 of 2 up",
        ),
        # An old dyno still up during the restart does not matter once enough new ones are up.
        ([web()], [dyno("web.1", version=11), dyno("web.1")], None, "v12: web 1 of 1 up"),
        # Types of quantity 0 are not looked at by default...
        ([web(), worker(0)], [dyno("web.1")], None, "v12: web 1 of 1 up"),
        # ...nor types left out of ``types``, even crashed ones.
        ([web(), worker()], [dyno("web.1"), dyno("worker.1", "crashed")], ("web",), "v12: web 1 of 1 up"),
        ([web(0)], [], None, "v12: the formation runs no dynos (every quantity is 0)"),
    ],
)
def test_enough_dynos_up_on_the_release_pass(
    formation: list[Formation], running: list[Dyno], types: tuple[str, ...] | None, says: str
) -> None:
    heroku = Heroku(formations=formation, running=running)
    result = dynos.run(dynos.Options(types=types), on(heroku))
    assert (result.name, result.outcome, result.detail, result.evidence) == ("dynos", "passed", says, "")


@pytest.mark.parametrize(
    ("formation", "running", "types", "says"),
    [
        ([web()], [dyno("web.1", "crashed")], None, "v12: web: 0 of 1 up on v12 (web.1 crashed on v12)"),
        ([web()], [dyno("web.1", version=11)], None, "v12: web: 0 of 1 up on v12 (web.1 is up on v11)"),
        ([web()], [dyno("web.1", version=13)], None, "v12: web: 0 of 1 up on v12 (web.1 is up on v13)"),
        ([web()], [dyno("web.1", "starting")], None, "v12: web: 0 of 1 up on v12 (web.1 is starting on v12)"),
        ([web()], [dyno("web.1", version=None)], None, "(web.1 is up on an unknown release)"),
        ([web()], [], None, "v12: web: 0 of 1 up on v12 (no web dyno at all)"),
        (
            [web(2)],
            [dyno("web.1"), dyno("web.2", "crashed")],
            None,
            "v12: web: 1 of 2 up on v12 (web.2 crashed on v12)",
        ),
        # A crash on the release fails it even when enough others are up.
        (
            [web(2)],
            [dyno("web.1"), dyno("web.2"), dyno("web.3", "crashed")],
            None,
            "v12: web: 2 of 2 up on v12 (web.3 crashed on v12)",
        ),
        (
            [web(), worker()],
            [dyno("web.1"), dyno("worker.1"), dyno("worker.2", "idle", 11)],
            None,
            "v12: worker: 1 of 2 up on v12 (worker.2 is idle on v11)",
        ),
        (
            [web()],
            [dyno("web.1")],
            ("web", "worker", "clock"),
            "v12: no process type 'worker' in the formation (it has web); "
            "no process type 'clock' in the formation (it has web)",
        ),
    ],
)
def test_missing_crashed_or_behind_dynos_fail_saying_which(
    formation: list[Formation], running: list[Dyno], types: tuple[str, ...] | None, says: str
) -> None:
    heroku = Heroku(formations=formation, running=running)
    result = dynos.run(dynos.Options(types=types), on(heroku))
    assert (result.name, result.outcome) == ("dynos", "failed")
    assert says in result.detail
    assert result.evidence.startswith("formation: web x")


def test_a_failure_keeps_the_formation_and_every_dyno_as_evidence() -> None:
    heroku = Heroku(formations=[web(), worker(1)], running=[dyno("worker.1"), dyno("web.1", "crashed")])
    result = dynos.run(dynos.Options(), on(heroku))
    assert result.evidence == (
        "formation: web x1 (Standard-1X)\n"
        "formation: worker x1 (Standard-1X)\n"
        "dyno: web.1 is crashed on v12\n"
        "dyno: worker.1 is up on v12"
    )


@pytest.mark.parametrize(
    ("heroku", "version", "says"),
    [
        (None, 12, "this check reads Heroku, and the target has no platform"),
        (Heroku(formations=[web()]), None, f"no release version of {APP} to look at"),
        (
            Heroku(down=Temporary("heroku", f"listing the dynos of {APP}", status=429)),
            12,
            f"could not read the dynos of {APP}: heroku: listing the dynos of {APP} (HTTP 429)",
        ),
    ],
)
def test_dynos_is_an_error_when_it_cannot_look(heroku: Heroku | None, version: int | None, says: str) -> None:
    result = dynos.run(dynos.Options(), on(heroku, version))
    assert (result.name, result.outcome, result.detail) == ("dynos", "error", says)


def test_dynos_options() -> None:
    assert dynos.Options().types is None
    assert dynos.Options.model_validate({"types": ["web", "worker"]}).types == ("web", "worker")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"types": []}, "at least 1"),
        ({"types": "web"}, "tuple"),
        ({"types": ["web", "web"]}, "each process type at most once"),
        ({"types": ["web worker"]}, "expected a process type such as web or worker"),
        ({"types": [""]}, "expected a process type such as web or worker"),
        ({"type": ["web"]}, "Extra inputs"),
    ],
)
def test_dynos_refuses_bad_options(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        dynos.Options.model_validate(options)
    assert says in str(caught.value)


# --- commit -----------------------------------------------------------------------------------


class _App(BaseHTTPRequestHandler):
    """An app that reports a commit in a few ways."""

    routes: dict[str, tuple[int, str]] = {
        "/health": (200, json.dumps({"status": "ok", "release": "v12", "commit": COMMIT, "schema": "002"})),
        "/twelve": (200, json.dumps({"commit": COMMIT[:12]})),
        "/seven": (200, json.dumps({"commit": COMMIT[:7].upper()})),
        "/six": (200, json.dumps({"commit": COMMIT[:6]})),
        "/other": (200, json.dumps({"commit": "0123456789abcdef0123456789abcdef01234567"})),
        "/unknown": (200, json.dumps({"commit": "unknown"})),
        "/number": (200, json.dumps({"commit": 3913})),
        "/failing": (500, json.dumps({"status": "failing", "commit": COMMIT})),
        "/version": (200, json.dumps({"build": {"sha": COMMIT, "at": "2026-03-02"}})),
        "/text": (200, f"commit {COMMIT}"),
    }

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, json.dumps({"error": "no such page"})))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def commit_check(web_url: str, **options: Any) -> tuple[str, str, str]:
    result = commit.run(commit.Options(**options), on(None, web_url=web_url))
    return result.name, result.outcome, result.detail


@pytest.mark.parametrize(
    ("path", "reported"),
    [("/health", COMMIT), ("/twelve", COMMIT[:12]), ("/seven", COMMIT[:7].upper()), ("/failing", COMMIT)],
)
def test_the_app_reporting_the_commit_or_a_prefix_passes(web_url: str, path: str, reported: str) -> None:
    name, outcome, detail = commit_check(web_url, path=path)
    assert (name, outcome) == (f"commit {path}", "passed")
    assert detail.startswith(f"GET {web_url}{path[1:]} -> ")
    assert detail.endswith(f": commit is {reported}")


def test_the_field_is_a_json_path(web_url: str) -> None:
    assert commit_check(web_url, path="/version", field="build.sha")[1] == "passed"
    assert commit_check(web_url, path="/version", field="$.build.sha")[1] == "passed"
    _, outcome, detail = commit_check(web_url, path="/version", field="build.commit")
    assert outcome == "failed"
    assert "JSON 'build' has no key 'commit' (path 'build.commit')" in detail


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/other", "JSON 'commit' is \"0123456789abcdef0123456789abcdef01234567\", expected "),
        ("/six", f"JSON 'commit' is \"{COMMIT[:6]}\", expected {COMMIT} or its first 7 characters or more"),
        ("/unknown", "JSON 'commit' is \"unknown\", expected "),
        ("/number", "JSON 'commit' is 3913, expected "),
        ("/text", "body is not JSON: commit 3f9c"),
        ("/nowhere", "-> 404 in "),
    ],
)
def test_another_commit_or_none_fails_saying_what_the_app_reports(web_url: str, path: str, says: str) -> None:
    _, outcome, detail = commit_check(web_url, path=path)
    assert outcome == "failed"
    assert says in detail


def test_no_answer_is_an_error() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        _, outcome, detail = commit_check(f"http://127.0.0.1:{port}/", timeout="2s")
    assert outcome == "error"
    assert detail.startswith(f"GET http://127.0.0.1:{port}/health: no answer: ")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"path": "health"}, "expected a path starting with / such as /health"),
        ({"field": "build..sha"}, "'build..sha' is not a JSON path such as"),
        ({"timeout": "0s"}, "greater than zero"),
        ({"expect_status": 200}, "Extra inputs"),
    ],
)
def test_commit_refuses_bad_options(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        commit.Options.model_validate(options)
    assert says in str(caught.value)


# --- What every plugin shares -----------------------------------------------------------------

PLUGINS = ["commit", "dynos", "http", "release_phase"]


def test_the_plugins_are_known_and_load() -> None:
    assert set(PLUGINS) <= set(checks.known_plugins())
    for name in PLUGINS:
        plugin = checks.load_plugin(name)
        assert issubclass(plugin.Options, checks.CheckOptions)


@pytest.mark.parametrize("name", PLUGINS)
def test_every_option_says_what_it_does_and_options_are_strict(name: str) -> None:
    options = checks.load_plugin(name).Options
    for key, info in options.model_fields.items():
        assert info.description, f"checks.{name}.Options.{key} has no description"
    assert options.model_config.get("extra") == "forbid" and options.model_config.get("frozen")
    assert options.__doc__ and checks.load_plugin(name).run.__doc__
    defaults = options()
    assert (defaults.retries, defaults.backoff) == (3, 1.0)
    with pytest.raises(ValidationError):
        options.model_validate({"retry": 1})


@pytest.mark.parametrize("name", ["release_phase", "dynos"])
def test_run_check_runs_the_heroku_reading_plugins(name: str) -> None:
    heroku = Heroku(releases={12: a_release()}, formations=[web()], running=[dyno("web.1")])
    result = checks.run_check(name, checks.load_plugin(name).Options(), on(heroku))
    assert (result.name, result.outcome) == (name, "passed")
