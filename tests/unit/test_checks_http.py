"""The ``http`` check and the plugin interface, against a real HTTP server on loopback (no mocks)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

import checks
from checks import Target, http

NESTED = {
    "status": "ok",
    "database": {"status": "up", "latency_ms": 3},
    "checks": [{"name": "db", "ok": True}, {"name": "cache", "ok": False}],
    "flag": True,
    "count": 1,
}


class _App(BaseHTTPRequestHandler):
    """A tiny app with one route per behaviour the check must judge."""

    routes: dict[str, tuple[int, str, str, float]] = {
        # path: (status, content type, body, seconds to sleep first)
        "/health": (200, "application/json", json.dumps({"status": "ok", "db": "up", "schema": 3}), 0),
        "/down": (503, "text/plain", "database unreachable: connection refused by 10.0.0.5", 0),
        "/text": (200, "text/plain", "all good here", 0),
        "/list": (200, "application/json", "[1, 2, 3]", 0),
        "/nested": (200, "application/json", json.dumps(NESTED), 0),
        "/big": (500, "text/html", "<p>" + "x" * 5000 + "</p>", 0),
        "/empty": (204, "text/plain", "", 0),
        "/slow": (200, "text/plain", "ok", 0.3),
        "/hang": (200, "text/plain", "ok", 2.0),
    }

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, content_type, body, delay = self.routes.get(self.path, (404, "text/plain", "no such page", 0))
        time.sleep(delay)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # The check may have given up waiting (the timeout tests): nothing to tell then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
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


def target(web_url: str) -> Target:
    return Target(stage="staging", app="claims-staging", web_url=web_url, release_version=7, commit="a" * 40)


def check(web_url: str, **options: Any) -> tuple[str, str]:
    result = http.run(http.Options(**options), target(web_url))
    return result.outcome, result.detail


def test_a_healthy_answer_passes_and_says_what_it_saw(web_url: str) -> None:
    result = http.run(http.Options(), target(web_url))
    assert result.name == "http /health"
    assert result.outcome == "passed" and result.passed
    assert result.detail.startswith(f"GET {web_url}health -> 200 in ")
    assert result.detail.endswith(" ms")


def test_the_path_is_joined_to_a_web_url_without_trailing_slash(web_url: str) -> None:
    outcome, detail = check(web_url.rstrip("/"), path="/text")
    assert outcome == "passed"
    assert f"GET {web_url}text -> 200" in detail


def test_a_wrong_status_fails_with_the_status_and_an_excerpt_of_the_body(web_url: str) -> None:
    outcome, detail = check(web_url, path="/down")
    assert outcome == "failed"
    assert f"GET {web_url}down -> 503 in " in detail
    assert "(expected 200)" in detail
    assert "database unreachable" in detail


def test_the_expected_status_may_be_another_one(web_url: str) -> None:
    assert check(web_url, path="/down", expect_status=503)[0] == "passed"
    assert check(web_url, path="/empty", expect_status=204)[0] == "passed"


def test_the_body_excerpt_is_200_characters_at_most(web_url: str) -> None:
    outcome, detail = check(web_url, path="/big")
    assert outcome == "failed"
    excerpt = detail.split("(expected 200): ", 1)[1]
    assert len(excerpt) == 200 + len("...")
    assert excerpt.startswith("<p>xxx") and excerpt.endswith("...")


def test_redirects_are_followed(web_url: str) -> None:
    outcome, detail = check(web_url, path="/redirect")
    assert outcome == "passed"
    assert "-> 200" in detail


@pytest.mark.parametrize(
    ("path", "body_contains", "outcome"),
    [
        ("/text", "all good", "passed"),
        ("/health", '"status": "ok"', "passed"),
        ("/text", "healthy", "failed"),
        ("/empty", "ok", "failed"),
    ],
)
def test_body_contains(web_url: str, path: str, body_contains: str, outcome: str) -> None:
    expect_status = 204 if path == "/empty" else 200
    got, detail = check(web_url, path=path, body_contains=body_contains, expect_status=expect_status)
    assert got == outcome
    if outcome == "failed":
        assert f"body does not contain {body_contains!r}" in detail


@pytest.mark.parametrize(
    ("path", "expect_json", "outcome", "says"),
    [
        ("/health", {"status": "ok"}, "passed", ""),
        ("/health", {"status": "ok", "db": "up", "schema": 3}, "passed", ""),
        ("/health", {"status": "down"}, "failed", 'JSON \'status\' is "ok", expected "down"'),
        ("/health", {"schema": 4}, "failed", "JSON 'schema' is 3, expected 4"),
        ("/health", {"release": 7}, "failed", "JSON has no key 'release'"),
        ("/text", {"status": "ok"}, "failed", "body is not JSON"),
        ("/list", {"status": "ok"}, "failed", "body is JSON list, not an object"),
    ],
)
def test_expect_json(web_url: str, path: str, expect_json: dict[str, Any], outcome: str, says: str) -> None:
    got, detail = check(web_url, path=path, expect_json=expect_json)
    assert got == outcome
    assert says in detail


@pytest.mark.parametrize(
    "expect_json",
    [
        {"database.status": "up"},
        {"$.database.status": "up", "$.status": "ok"},
        {"checks[0].name": "db", "checks[1].ok": False},
        {"$.checks[1].name": "cache"},
        {"database": {"status": "up", "latency_ms": 3}},
        {"checks": [{"name": "db", "ok": True}, {"name": "cache", "ok": False}]},
    ],
)
def test_expect_json_paths_reach_into_objects_and_lists(web_url: str, expect_json: dict[str, Any]) -> None:
    outcome, detail = check(web_url, path="/nested", expect_json=expect_json)
    assert outcome == "passed", detail


@pytest.mark.parametrize(
    ("expect_json", "says"),
    [
        ({"database.status": "down"}, 'JSON \'database.status\' is "up", expected "down"'),
        ({"$.database.status": "down"}, 'JSON \'$.database.status\' is "up", expected "down"'),
        ({"database.version": 1}, "JSON 'database' has no key 'version' (path 'database.version')"),
        ({"release.version": 1}, "JSON has no key 'release' (path 'release.version')"),
        ({"checks[5].name": "x"}, "JSON 'checks' has 2 items, no [5] (path 'checks[5].name')"),
        ({"checks[1].id": 2}, "JSON 'checks[1]' has no key 'id' (path 'checks[1].id')"),
        ({"status.code": 200}, "JSON 'status' is string \"ok\", not an object (path 'status.code')"),
        ({"checks.name": "db"}, 'JSON \'checks\' is list [{"name": "db", '),
        ({"database[0]": 1}, 'JSON \'database\' is object {"status": "up", '),
        ({"[0]": 1}, "body is JSON object, not a list"),
        ({"flag": 1}, "JSON 'flag' is true, expected 1"),  # JSON's true is not the number 1
        ({"count": True}, "JSON 'count' is 1, expected true"),
        ({"checks[0]": {"name": "db"}}, 'JSON \'checks[0]\' is {"name": "db", "ok": true}, expected'),
    ],
)
def test_expect_json_paths_that_do_not_match_say_where_and_what(
    web_url: str, expect_json: dict[str, Any], says: str
) -> None:
    outcome, detail = check(web_url, path="/nested", expect_json=expect_json)
    assert outcome == "failed"
    assert says in detail


def test_a_path_may_start_with_an_index_when_the_body_is_a_list(web_url: str) -> None:
    assert check(web_url, path="/list", expect_json={"$[0]": 1, "[2]": 3})[0] == "passed"
    outcome, detail = check(web_url, path="/list", expect_json={"$[3]": 4})
    assert outcome == "failed" and "JSON has 3 items, no [3]" in detail


def test_a_root_of_the_wrong_kind_is_said_once(web_url: str) -> None:
    outcome, detail = check(web_url, path="/list", expect_json={"status": "ok", "db.status": "up"})
    assert outcome == "failed"
    assert detail.count("body is JSON list, not an object") == 1


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("status", ("status",)),
        ("$.status", ("status",)),
        ("database.status", ("database", "status")),
        ("checks[0].name", ("checks", 0, "name")),
        ("$.checks[12][3]", ("checks", 12, 3)),
        ("$[1].name", (1, "name")),
        ("[0]", (0,)),
        ("db-status", ("db-status",)),
        ("$schema", ("$schema",)),
    ],
)
def test_json_paths_are_read_into_steps(text: str, steps: tuple[str | int, ...]) -> None:
    assert http.parse_json_path(text) == steps


@pytest.mark.parametrize(
    "path",
    ["", "$", "$.", ".status", "status.", "a..b", "checks[x]", "checks[-1]", "checks[0]name", "a[0", "a]"],
)
def test_a_bad_json_path_is_refused_when_options_are_read(path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        http.Options.model_validate({"expect_json": {"status": "ok", path: 1}})
    (error,) = caught.value.errors()
    assert error["loc"] == ("expect_json",)
    message = str(error["ctx"]["error"])
    assert repr(path) in message
    assert http.JSON_PATH_SYNTAX in message
    assert "'status'" not in message  # only the bad ones are named


def test_every_mismatch_is_reported_at_once(web_url: str) -> None:
    outcome, detail = check(web_url, expect_json={"status": "down", "db": "down"}, body_contains="nope")
    assert outcome == "failed"
    assert "body does not contain 'nope'" in detail
    assert "JSON 'status'" in detail and "JSON 'db'" in detail


def test_an_answer_slower_than_the_latency_budget_fails(web_url: str) -> None:
    outcome, detail = check(web_url, path="/slow", latency_budget="50ms")
    assert outcome == "failed"
    assert "over the latency budget of 50 ms" in detail
    assert check(web_url, path="/slow", latency_budget="5s")[0] == "passed"


def test_no_answer_within_the_timeout_is_an_error(web_url: str) -> None:
    started = time.monotonic()
    outcome, detail = check(web_url, path="/hang", timeout="200ms")
    assert outcome == "error"
    assert detail == f"GET {web_url}hang: no answer within 200 ms"
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_an_error_not_a_failure() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        result = http.run(http.Options(timeout=timedelta(seconds=2)), target(f"http://127.0.0.1:{port}/"))
    assert result.outcome == "error"
    assert result.detail.startswith(f"GET http://127.0.0.1:{port}/health: no answer: ")
    assert "Connection refused" in result.detail


# --- Options ----------------------------------------------------------------------------------


def test_options_defaults_and_durations() -> None:
    options = http.Options()
    assert (options.path, options.expect_status, options.retries, options.interval) == (
        "/health",
        200,
        3,
        timedelta(seconds=2),
    )
    assert options.timeout == timedelta(seconds=5)
    options = http.Options.model_validate({"interval": "1m30s", "timeout": 2.5, "latency_budget": "250ms"})
    assert options.interval == timedelta(seconds=90)
    assert options.timeout == timedelta(seconds=2.5)
    assert options.latency_budget == timedelta(milliseconds=250)
    assert options.model_dump(mode="json")["interval"] == "1m30s"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"path": "health"}, "path"),
        ({"expect_status": 42}, "expect_status"),
        ({"retries": -1}, "retries"),
        ({"interval": "soon"}, "interval"),
        ({"timeout": "0s"}, "timeout"),
        ({"latency_budget": "fast"}, "latency_budget"),
        ({"expect_json": ["status"]}, "expect_json"),
        ({"json": {"status": "ok"}}, "json"),
        ({"method": "POST"}, "method"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        http.Options.model_validate(options)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def test_options_are_frozen() -> None:
    with pytest.raises(ValidationError):
        http.Options().retries = 9


# --- The plugin interface ---------------------------------------------------------------------


def test_known_plugins_lists_the_modules_of_the_package() -> None:
    assert "http" in checks.known_plugins()
    assert checks.known_plugins() == sorted(checks.known_plugins())


def test_load_plugin_returns_the_module() -> None:
    plugin = checks.load_plugin("http")
    assert plugin is http
    assert issubclass(plugin.Options, checks.CheckOptions)


@pytest.mark.parametrize("name", ["smoke", "", "__init__", "os", "../http"])
def test_an_unknown_plugin_is_a_clear_error(name: str) -> None:
    with pytest.raises(checks.UnknownCheck) as caught:
        checks.load_plugin(name)
    assert f"unknown check {name!r}; known checks: " in str(caught.value)
    assert "http" in str(caught.value)


def test_run_check_runs_one_attempt_of_the_named_plugin(web_url: str) -> None:
    result = checks.run_check("http", http.Options(path="/down"), target(web_url))
    assert (result.name, result.outcome) == ("http /down", "failed")


def test_run_check_refuses_options_of_another_plugin(web_url: str) -> None:
    with pytest.raises(TypeError):
        checks.run_check("http", checks.CheckOptions(), target(web_url))
