"""The webhook receiver behind a real ``WebServer`` (waitress on a free port), posted to with
``requests``; and the Flask application alone through Flask's own test client, for what waitress
answers before the application runs (its 413s are plain text)."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
from flask.testing import FlaskClient

from pipeline.store import SqlStore, open_store
from pipeline.web.app import create_app
from pipeline.web.server import OncePer, WebServer
from pipeline.web.webhooks import MAX_BODY, Delivery, WebhookReceiver, signature

SECRET = "whsec-integration-0123456789"
HOOK = "/webhooks/bitbucket"


@dataclass
class Running:
    """A started server, what it received, and how to post to it."""

    server: WebServer
    seen: list[Delivery] = field(default_factory=list)

    @property
    def hook(self) -> str:
        return self.server.url + HOOK

    def post(
        self,
        body: bytes,
        event: str = "repo:push",
        request_uuid: str = "uuid-1",
        *,
        secret: str | None = SECRET,
        extra: dict[str, str] | None = None,
        data: Any = None,
    ) -> requests.Response:
        headers = {"Content-Type": "application/json", "X-Event-Key": event, "X-Request-UUID": request_uuid}
        if secret is not None:
            headers["X-Hub-Signature"] = signature(secret, body)
        headers.update(extra or {})
        return requests.post(self.hook, data=body if data is None else data, headers=headers, timeout=10)


def push(**extra: Any) -> bytes:
    body = {"repository": {"full_name": "whisper/claims"}, "push": {"changes": []}, **extra}
    return json.dumps(body).encode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        yield opened
    finally:
        opened.close()


def serve(store: SqlStore, on_delivery: Callable[[Delivery], None] | None = None) -> Running:
    seen: list[Delivery] = []
    receiver = WebhookReceiver(
        SECRET,
        "whisper",
        "claims",
        lambda uuid, event: store.record_delivery("claims", uuid, event, datetime.now(UTC)),
        on_delivery or seen.append,
    )
    app = create_app(receiver, lambda: {"status": "ok", "pipeline": "claims"})
    return Running(WebServer(app, "127.0.0.1", 0).start(), seen)


@pytest.fixture
def running(store: SqlStore) -> Iterator[Running]:
    started = serve(store)
    try:
        yield started
    finally:
        started.server.stop()


# -- through the server --------------------------------------------------------------------------


def test_port_0_gives_a_real_port_and_the_url_names_it(running: Running) -> None:
    assert running.server.port > 0
    assert running.server.url == f"http://127.0.0.1:{running.server.port}"


def test_healthz_answers_health(running: Running) -> None:
    answer = requests.get(running.server.url + "/healthz", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "pipeline": "claims"}


def test_a_signed_delivery_is_accepted_and_handed_over(running: Running) -> None:
    body = push()
    answer = running.post(body, extra={"X-Attempt-Number": "1", "User-Agent": "Bitbucket-Webhooks/2.0"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"accepted": True, "event": "repo:push", "request_uuid": "uuid-1"}
    assert running.seen == [Delivery("repo:push", "uuid-1", 1, json.loads(body))]


def test_unsigned_and_wrongly_signed_deliveries_are_401(running: Running) -> None:
    body = push()
    unsigned = running.post(body, secret=None)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"] == "unauthorized"
    wrong = running.post(body, secret="not-the-secret")
    assert wrong.status_code == 401
    assert SECRET not in wrong.text and signature(SECRET, body) not in wrong.text
    assert running.seen == []


def test_a_repeated_delivery_is_a_duplicate(running: Running) -> None:
    body = push()
    assert running.post(body, request_uuid="uuid-rep").json()["accepted"] is True
    again = running.post(body, request_uuid="uuid-rep", extra={"X-Attempt-Number": "2"})
    assert again.status_code == 200
    assert again.json() == {"duplicate": True, "event": "repo:push", "request_uuid": "uuid-rep"}
    assert len(running.seen) == 1


def test_a_malformed_body_is_400(running: Running) -> None:
    answer = running.post(b'{"repository": ')
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad request", "detail": "the body is not a JSON object"}


def test_an_unused_event_is_202_ignored(running: Running) -> None:
    answer = running.post(push(), event="pullrequest:comment_created")
    assert answer.status_code == 202
    assert answer.json()["ignored"] is True
    assert running.seen == []


def test_an_oversized_body_with_content_length_is_413(running: Running) -> None:
    body = push(padding="x" * MAX_BODY)
    answer = running.post(body)
    assert answer.status_code == 413
    assert running.seen == []


def test_an_oversized_chunked_body_is_413(running: Running) -> None:
    body = push(padding="x" * MAX_BODY)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    answer = running.post(body, data=chunks())
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in answer.request.headers
    assert answer.status_code == 413
    assert running.seen == []


def test_a_signed_chunked_body_within_the_limit_arrives_whole(running: Running) -> None:
    body = push(padding="y" * 200_000)
    answer = running.post(body, data=iter([body[:1000], body[1000:150_000], body[150_000:]]))
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 200, answer.text
    assert running.seen[0].payload == json.loads(body)


def test_a_body_of_exactly_max_body_bytes_is_taken(running: Running) -> None:
    empty = len(push(padding=""))
    body = push(padding="z" * (MAX_BODY - empty))
    assert len(body) == MAX_BODY
    answer = running.post(body)
    assert answer.status_code == 200, answer.text
    assert len(running.seen) == 1


def test_other_paths_and_methods_are_json_404_and_405(running: Running) -> None:
    missing = requests.post(running.server.url + "/webhooks/github", data=b"{}", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not found"
    assert requests.get(running.server.url + "/", timeout=10).status_code == 404
    wrong = requests.get(running.hook, timeout=10)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method not allowed"
    assert "POST" in wrong.headers["Allow"]
    assert requests.post(running.server.url + "/healthz", timeout=10).status_code == 405


# -- the server's life ---------------------------------------------------------------------------


def test_a_taken_port_is_an_oserror_naming_host_and_port(running: Running) -> None:
    app = flask.Flask("other")
    with pytest.raises(OSError, match=f"127.0.0.1:{running.server.port}"):
        WebServer(app, "127.0.0.1", running.server.port)


def test_stop_is_quick_idempotent_and_closes_the_port(store: SqlStore) -> None:
    started = serve(store)
    url = started.server.url
    assert requests.get(url + "/healthz", timeout=10).status_code == 200
    begun = time.monotonic()
    started.server.stop()
    assert time.monotonic() - begun < 2.0
    started.server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=2)
    with pytest.raises(RuntimeError):
        started.server.start()
    with socket.create_server(("127.0.0.1", started.server.port)):  # the port is free again
        pass


def test_stop_before_start_closes_the_socket() -> None:
    server = WebServer(flask.Flask("idle"), "127.0.0.1", 0)
    port = server.port
    server.stop()
    server.stop()
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_stop_returns_within_a_couple_of_seconds_while_a_request_is_being_served(store: SqlStore) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(delivery: Delivery) -> None:
        entered.set()
        release.wait(10)

    started = serve(store, on_delivery=slow)
    errors: list[BaseException] = []

    def post() -> None:
        try:
            started.post(push())
        except requests.RequestException as exc:
            errors.append(exc)

    client = threading.Thread(target=post)
    client.start()
    try:
        assert entered.wait(10)
        begun = time.monotonic()
        started.server.stop()
        assert time.monotonic() - begun < 3.0
    finally:
        release.set()
        client.join(timeout=15)


def test_the_busy_queue_warning_is_let_through_once_a_minute() -> None:
    logger = logging.getLogger("test.web.queue")
    once = OncePer(60.0)
    logger.addFilter(once)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        for depth in range(5):
            logger.warning("Task queue depth is %d", depth)
        assert [r.getMessage() for r in records] == ["Task queue depth is 0"]
        assert any(isinstance(f, OncePer) for f in logging.getLogger("waitress.queue").filters)
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(once)


# -- the application alone (Flask's test client) ---------------------------------------------------


@pytest.fixture
def client(store: SqlStore) -> tuple[FlaskClient, list[Delivery]]:
    seen: list[Delivery] = []
    receiver = WebhookReceiver(
        SECRET,
        "whisper",
        "claims",
        lambda uuid, event: store.record_delivery("claims", uuid, event, datetime.now(UTC)),
        seen.append,
    )

    def health() -> dict[str, Any]:
        raise RuntimeError("the store is gone: postgresql://user:hunter2@db/claims")

    app = create_app(receiver, health)
    return app.test_client(), seen


def test_the_app_refuses_an_announced_oversized_body_with_json_413(
    client: tuple[FlaskClient, list[Delivery]],
) -> None:
    test_client, seen = client
    body = push(padding="x" * MAX_BODY)
    answer = test_client.post(HOOK, data=body, headers={"X-Hub-Signature": signature(SECRET, body)})
    assert answer.status_code == 413
    assert answer.get_json()["error"] == "request entity too large"
    assert seen == []


def test_the_app_stops_reading_an_oversized_chunked_body_with_json_413(
    client: tuple[FlaskClient, list[Delivery]],
) -> None:
    test_client, seen = client
    body = push(padding="x" * MAX_BODY)
    stream = io.BytesIO(body)
    answer = test_client.post(
        HOOK,
        input_stream=stream,
        headers={"Transfer-Encoding": "chunked", "X-Hub-Signature": signature(SECRET, body)},
        environ_overrides={"wsgi.input_terminated": True},  # as a dechunking server (waitress) says
    )
    assert answer.status_code == 413
    assert answer.get_json()["error"] == "request entity too large"
    assert stream.tell() <= MAX_BODY + 64 * 1024  # stopped near the limit, not read to the end
    assert seen == []


def test_the_app_takes_a_chunked_body_within_the_limit(
    client: tuple[FlaskClient, list[Delivery]],
) -> None:
    test_client, seen = client
    body = push()
    answer = test_client.post(
        HOOK,
        input_stream=io.BytesIO(body),
        headers={
            "Transfer-Encoding": "chunked",
            "X-Hub-Signature": signature(SECRET, body),
            "X-Event-Key": "repo:push",
            "X-Request-UUID": "uuid-app-chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert [d.request_uuid for d in seen] == ["uuid-app-chunked"]


def test_a_failing_health_is_a_json_500_without_the_exception_text(
    client: tuple[FlaskClient, list[Delivery]],
) -> None:
    test_client, _ = client
    answer = test_client.get("/healthz")
    assert answer.status_code == 500
    assert answer.get_json()["error"] == "internal server error"
    assert "hunter2" not in answer.get_data(as_text=True)
