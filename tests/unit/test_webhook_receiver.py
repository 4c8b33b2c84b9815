"""``WebhookReceiver`` with plain values, and a real ``SqlStore`` (SQLite in tmp_path) noting the
deliveries: every answer, in the order the checks run, the HMAC test vector, duplicates, and a
failed action whose retry is acted on again."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.store import SqlStore, open_store
from pipeline.web import webhooks
from pipeline.web.webhooks import (
    MAX_BODY,
    USED_EVENTS,
    Answer,
    Delivery,
    WebhookReceiver,
    signature,
    verify,
)

SECRET = "It's a Secret to Everybody"
WS, REPO = "whisper", "claims"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def note(store: SqlStore) -> Callable[[str, str], bool]:
    return lambda uuid, event: store.record_delivery("claims", uuid, event, NOW)


@pytest.fixture
def seen() -> list[Delivery]:
    return []


@pytest.fixture
def receiver(note: Callable[[str, str], bool], seen: list[Delivery]) -> WebhookReceiver:
    return WebhookReceiver(SECRET, WS, REPO, note, seen.append)


def payload(full_name: str | None = f"{WS}/{REPO}", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"actor": {"nickname": "dev"}, **extra}
    if full_name is not None:
        body["repository"] = {"type": "repository", "full_name": full_name, "name": full_name.split("/")[-1]}
    return body


def encoded(body: Any) -> bytes:
    return json.dumps(body).encode()


def headers(
    body: bytes,
    event: str | None = "repo:push",
    request_uuid: str | None = "9d5a2b1c-0001",
    *,
    secret: str | None = SECRET,
    attempt: str | None = "1",
) -> dict[str, str]:
    found = {"Content-Type": "application/json", "User-Agent": "Bitbucket-Webhooks/2.0"}
    if secret is not None:
        found["X-Hub-Signature"] = signature(secret, body)
    if event is not None:
        found["X-Event-Key"] = event
    if request_uuid is not None:
        found["X-Request-UUID"] = request_uuid
    if attempt is not None:
        found["X-Attempt-Number"] = attempt
    return found


def deliver(receiver: WebhookReceiver, body: Any = None, **kwargs: Any) -> Answer:
    raw = body if isinstance(body, bytes) else encoded(payload() if body is None else body)
    return receiver.receive(headers(raw, **kwargs), raw)


def assert_no_secret(answer: Answer, raw: bytes = b"") -> None:
    text = json.dumps(answer.body)
    assert SECRET not in text
    if raw:
        assert signature(SECRET, raw) not in text
        assert signature(SECRET, raw).removeprefix("sha256=") not in text


# -- the signature -------------------------------------------------------------------------------


def test_the_signature_matches_the_documented_test_vector() -> None:
    expected = "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"
    assert signature(SECRET, b"Hello World!") == expected
    assert verify(SECRET, b"Hello World!", expected)
    assert not verify(SECRET, b"Hello World?", expected)
    assert not verify("another secret", b"Hello World!", expected)
    assert not verify(SECRET, b"Hello World!", expected.removeprefix("sha256="))
    # any header text is refused, not a crash (compare_digest takes only ASCII str: bytes are compared)
    assert not verify(SECRET, b"Hello World!", "sha256=" + "é" * 64)


def test_the_signature_is_compared_in_constant_time() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(webhooks.verify)))
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "hmac.compare_digest" in calls
    compared = [node for node in ast.walk(tree) if isinstance(node, ast.Compare)]
    assert not compared, "verify must not compare with == or !="


# -- every answer, in order ------------------------------------------------------------------------


def test_a_genuine_new_delivery_is_handed_over_and_accepted(
    receiver: WebhookReceiver, seen: list[Delivery]
) -> None:
    body = payload(push={"changes": []})
    answer = deliver(receiver, body, request_uuid="uuid-accepted", attempt="2")
    assert answer == Answer(200, {"accepted": True, "event": "repo:push", "request_uuid": "uuid-accepted"})
    assert seen == [Delivery("repo:push", "uuid-accepted", 2, body)]


@pytest.mark.parametrize("event", USED_EVENTS)
def test_every_used_event_is_accepted(receiver: WebhookReceiver, seen: list[Delivery], event: str) -> None:
    body = payload(commit_status={"key": "tests", "state": "SUCCESSFUL"})
    assert deliver(receiver, body, event=event, request_uuid=f"uuid-{event}").status == 200
    assert [d.event for d in seen] == [event]


def test_header_names_are_case_insensitive(receiver: WebhookReceiver, seen: list[Delivery]) -> None:
    raw = encoded(payload())
    lower = {name.lower(): value for name, value in headers(raw, request_uuid="uuid-lower").items()}
    assert receiver.receive(lower, raw).status == 200
    upper = {name.upper(): value for name, value in headers(raw, request_uuid="uuid-upper").items()}
    assert receiver.receive(upper, raw).status == 200
    assert [d.request_uuid for d in seen] == ["uuid-lower", "uuid-upper"]


def test_a_body_larger_than_max_body_is_413_before_anything_else(
    note: Callable[[str, str], bool], seen: list[Delivery]
) -> None:
    small = WebhookReceiver(SECRET, WS, REPO, note, seen.append, max_body=256)
    raw = encoded(payload(padding="x" * 300))
    answer = small.receive(headers(raw), raw)
    assert answer.status == 413
    assert answer.body["error"] == "payload too large"
    assert small.receive({}, raw).status == 413  # unsigned too: the size is looked at first
    assert seen == []
    exact = encoded(payload(padding=""))
    exact = encoded(payload(padding="x" * (256 - len(exact))))
    assert len(exact) == 256
    assert small.receive(headers(exact), exact).status == 200
    assert WebhookReceiver(SECRET, WS, REPO, note, seen.append).max_body == MAX_BODY == 1024 * 1024


def test_a_missing_signature_is_401_and_nothing_else_is_looked_at(
    receiver: WebhookReceiver, seen: list[Delivery]
) -> None:
    for raw in (encoded(payload()), b"not json at all", b"[1, 2]"):
        answer = receiver.receive(headers(raw, secret=None), raw)
        assert answer.status == 401, raw
        assert "X-Hub-Signature" in answer.body["detail"]
    assert receiver.receive({}, b"{").status == 401  # no event, no uuid, no JSON: still 401
    assert seen == []


def test_a_wrong_signature_is_401_and_is_not_repeated(
    receiver: WebhookReceiver, seen: list[Delivery]
) -> None:
    raw = encoded(payload())
    for given in (
        signature("a guessed secret", raw),
        signature(SECRET, raw + b" "),  # signed another body
        signature(SECRET, raw).upper(),
        "sha1=" + signature(SECRET, raw).removeprefix("sha256="),
        "garbage",
    ):
        sent = headers(raw)
        sent["X-Hub-Signature"] = given
        answer = receiver.receive(sent, raw)
        assert answer.status == 401
        assert "does not match" in answer.body["detail"]
        assert given not in json.dumps(answer.body)
        assert_no_secret(answer, raw)
    broken = b"{not json"
    sent = headers(broken)
    sent["X-Hub-Signature"] = signature("a guessed secret", broken)
    assert receiver.receive(sent, broken).status == 401  # not 400: the body is not parsed
    assert seen == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"[1, 2, 3]", b'"a string"', b"null", b"\xff\xfe\x00garbage", b"[" * 100_000],
    ids=["empty", "malformed", "array", "string", "null", "not-utf8", "too-deep"],
)
def test_a_signed_body_that_is_not_a_json_object_is_400(
    receiver: WebhookReceiver, seen: list[Delivery], raw: bytes
) -> None:
    answer = receiver.receive(headers(raw), raw)
    assert answer == Answer(400, {"error": "bad request", "detail": "the body is not a JSON object"})
    assert seen == []


def test_no_event_key_is_400(receiver: WebhookReceiver, seen: list[Delivery]) -> None:
    answer = deliver(receiver, event=None)
    assert answer.status == 400
    assert "X-Event-Key" in answer.body["detail"]
    assert seen == []


@pytest.mark.parametrize(
    "event", ["pullrequest:comment_created", "repo:fork", "issue:created", "repo:updated", "nonsense"]
)
def test_an_event_that_cannot_move_a_release_is_ignored(
    receiver: WebhookReceiver, seen: list[Delivery], event: str
) -> None:
    answer = deliver(receiver, event=event, request_uuid=None)  # ignored before the uuid is needed
    assert answer == Answer(
        202, {"ignored": True, "event": event, "reason": "not an event the controller acts on"}
    )
    assert seen == []


@pytest.mark.parametrize("full_name", ["whisper/other", "someone/claims", "whisper/claims-fork"])
def test_another_repositorys_event_is_ignored(
    receiver: WebhookReceiver, seen: list[Delivery], full_name: str
) -> None:
    answer = deliver(receiver, payload(full_name))
    assert answer.status == 202
    assert answer.body["ignored"] is True
    assert full_name in answer.body["reason"] and "whisper/claims" in answer.body["reason"]
    assert seen == []


def test_a_payload_naming_no_repository_is_ignored(receiver: WebhookReceiver, seen: list[Delivery]) -> None:
    answer = deliver(receiver, payload(None))
    assert answer.status == 202
    assert "no repository" in answer.body["reason"]
    assert seen == []


def test_the_repository_is_matched_by_full_name_or_workspace_slug_and_name_in_any_case(
    receiver: WebhookReceiver, seen: list[Delivery]
) -> None:
    by_parts = {"repository": {"name": "claims", "workspace": {"slug": "whisper"}}}
    assert deliver(receiver, by_parts, request_uuid="uuid-parts").status == 200
    other = {"repository": {"name": "claims", "workspace": {"slug": "elsewhere"}}}
    assert deliver(receiver, other, request_uuid="uuid-other").status == 202
    assert deliver(receiver, payload("Whisper/Claims"), request_uuid="uuid-case").status == 200
    assert [d.request_uuid for d in seen] == ["uuid-parts", "uuid-case"]


@pytest.mark.parametrize("event", ["repo:commit_status_created", "repo:commit_status_updated"])
def test_the_controllers_own_commit_status_is_ignored_and_ci_statuses_are_not(
    receiver: WebhookReceiver, seen: list[Delivery], event: str
) -> None:
    own = payload(commit_status={"key": "pipeline/staging", "state": "SUCCESSFUL"})
    answer = deliver(receiver, own, event=event, request_uuid="uuid-own")
    assert answer == Answer(
        202, {"ignored": True, "event": event, "reason": "the controller's own commit status"}
    )
    ci = payload(commit_status={"key": "tests", "state": "FAILED"})
    assert deliver(receiver, ci, event=event, request_uuid="uuid-ci").status == 200
    assert [d.request_uuid for d in seen] == ["uuid-ci"]


def test_no_request_uuid_is_400(receiver: WebhookReceiver, seen: list[Delivery]) -> None:
    answer = deliver(receiver, request_uuid=None)
    assert answer.status == 400
    assert "X-Request-UUID" in answer.body["detail"]
    assert seen == []


def test_an_unreadable_attempt_number_counts_as_the_first(
    receiver: WebhookReceiver, seen: list[Delivery]
) -> None:
    deliver(receiver, request_uuid="uuid-a", attempt=None)
    deliver(receiver, request_uuid="uuid-b", attempt="three")
    deliver(receiver, request_uuid="uuid-c", attempt="0")
    assert [d.attempt for d in seen] == [1, 1, 1]


# -- duplicates, and failures --------------------------------------------------------------------


def test_a_repeated_delivery_is_a_duplicate_and_not_acted_on_again(
    receiver: WebhookReceiver, seen: list[Delivery], store: SqlStore
) -> None:
    assert deliver(receiver, request_uuid="uuid-twice").status == 200
    again = deliver(receiver, request_uuid="uuid-twice", attempt="2")
    assert again == Answer(200, {"duplicate": True, "event": "repo:push", "request_uuid": "uuid-twice"})
    assert deliver(receiver, request_uuid="uuid-other").status == 200
    assert [d.request_uuid for d in seen] == ["uuid-twice", "uuid-other"]
    # the store remembers: another receiver (a restarted serve) also calls it a duplicate
    later = WebhookReceiver(
        SECRET, WS, REPO, lambda u, e: store.record_delivery("claims", u, e, NOW), seen.append
    )
    assert deliver(later, request_uuid="uuid-twice").body.get("duplicate") is True
    assert len(seen) == 2


def test_of_concurrent_copies_of_one_delivery_exactly_one_is_acted_on(
    receiver: WebhookReceiver, seen: list[Delivery]
) -> None:
    raw = encoded(payload())
    sent = headers(raw, request_uuid="uuid-race")
    start = threading.Barrier(8)
    answers: list[Answer] = []

    def copy() -> None:
        start.wait()
        answers.append(receiver.receive(sent, raw))

    threads = [threading.Thread(target=copy) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(a.body.get("accepted", False) for a in answers) == [False] * 7 + [True]
    assert all(a.status == 200 for a in answers)
    assert len(seen) == 1


def test_a_failed_action_is_500_logged_and_its_retry_is_acted_on_again(
    note: Callable[[str, str], bool], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Delivery] = []

    def flaky(delivery: Delivery) -> None:
        calls.append(delivery)
        if len(calls) == 1:
            raise RuntimeError("the scheduler is not running")

    receiver = WebhookReceiver(SECRET, WS, REPO, note, flaky)
    with caplog.at_level(logging.ERROR, logger="pipeline.web.webhooks"):
        failed = deliver(receiver, request_uuid="uuid-flaky", attempt="1")
    assert failed.status == 500
    assert "retries" in failed.body["detail"]
    assert "the scheduler is not running" not in json.dumps(failed.body)
    assert any("uuid-flaky" in r.getMessage() and r.exc_info for r in caplog.records)
    retried = deliver(receiver, request_uuid="uuid-flaky", attempt="2")
    assert retried.status == 200 and retried.body["accepted"] is True
    assert [d.attempt for d in calls] == [1, 2]
    third = deliver(receiver, request_uuid="uuid-flaky", attempt="3")  # acted on now: a duplicate
    assert third.body.get("duplicate") is True
    assert len(calls) == 2


def test_a_delivery_that_cannot_be_noted_is_500_and_not_acted_on(
    seen: list[Delivery], caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable(request_uuid: str, event: str) -> bool:
        raise ConnectionError("database is locked")

    receiver = WebhookReceiver(SECRET, WS, REPO, unavailable, seen.append)
    with caplog.at_level(logging.ERROR, logger="pipeline.web.webhooks"):
        answer = deliver(receiver)
    assert answer.status == 500
    assert seen == []
    assert caplog.records


def test_no_answer_repeats_the_secret_or_the_signature(receiver: WebhookReceiver) -> None:
    raw = encoded(payload())
    for answer in (
        receiver.receive(headers(raw), raw),
        receiver.receive(headers(raw), raw),
        receiver.receive(headers(raw, secret="wrong"), raw),
        receiver.receive(headers(raw, secret=None), raw),
        receiver.receive(headers(raw, event="repo:fork"), raw),
        receiver.receive(headers(raw, request_uuid=None), raw),
    ):
        assert_no_secret(answer, raw)
    assert SECRET not in repr(receiver)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookReceiver("", WS, REPO, lambda u, e: True, lambda d: None)
