"""Hostile webhook deliveries: headers of absurd length or shape and signed bodies of absurd shape are
answered 400 (or 401) before anything is noted; any body and any headers get a verdict, never an
exception (property tests, with hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
PAYLOAD = {"repository": {"full_name": f"{WS}/{REPO}"}, "actor": {"nickname": "dev"}}
PROPERTIES = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Deliveries:
    """What a receiver noted and acted on (a stand-in for the store and the scheduler)."""

    def __init__(self) -> None:
        self.noted: list[tuple[str, str]] = []
        self.acted: list[Delivery] = []

    def note(self, request_uuid: str, event: str) -> bool:
        first = all(noted != request_uuid for noted, _ in self.noted)
        self.noted.append((request_uuid, event))
        return first

    def receiver(self) -> WebhookReceiver:
        return WebhookReceiver(SECRET, WS, REPO, self.note, self.acted.append)


def signed(body: bytes, **headers: str) -> dict[str, str]:
    found = {"X-Hub-Signature": signature(SECRET, body), "X-Event-Key": "repo:push"}
    found["X-Request-UUID"] = "5f0c6e4a-1b2c-4d3e-8f90-a1b2c3d4e5f6"
    return found | {name.replace("_", "-"): value for name, value in headers.items()}


def deliver(body: bytes, **headers: str) -> tuple[Answer, Deliveries]:
    deliveries = Deliveries()
    return deliveries.receiver().receive(signed(body, **headers), body), deliveries


BODY = json.dumps(PAYLOAD).encode()


def test_a_genuine_delivery_with_a_braced_uuid_is_accepted() -> None:
    answer, deliveries = deliver(BODY, X_Request_UUID="{5f0c6e4a-1b2c-4d3e-8f90-a1b2c3d4e5f6}")
    assert answer.status == 200 and answer.body["accepted"] is True
    assert deliveries.noted == [("{5f0c6e4a-1b2c-4d3e-8f90-a1b2c3d4e5f6}", "repo:push")]


@pytest.mark.parametrize(
    "request_uuid",
    [
        "x" * 100_000,
        "a" * 65,
        "5f0c6e4a 1b2c",
        "id\nInjected: header",
        "<script>",
        "../../etc/passwd",
        "é" * 10,
    ],
    ids=["100KB", "65 chars", "a space", "a newline", "markup", "a path", "not ascii"],
)
def test_a_request_uuid_that_is_not_a_uuid_like_token_is_400_and_nothing_is_noted(request_uuid: str) -> None:
    answer, deliveries = deliver(BODY, X_Request_UUID=request_uuid)
    assert answer == Answer(
        400,
        {
            "error": "bad request",
            "detail": "X-Request-UUID is not a delivery id: a UUID (at most 64 letters, digits, '-', '{}')",
        },
    )
    assert deliveries.noted == [] and deliveries.acted == []


@pytest.mark.parametrize("event", ["e" * 100_000, "repo:push;reboot", "repo push", "a" * 65])
def test_an_event_key_that_is_not_one_is_400(event: str) -> None:
    answer, deliveries = deliver(BODY, X_Event_Key=event)
    assert answer == Answer(
        400, {"error": "bad request", "detail": "X-Event-Key is not an event key such as repo:push"}
    )
    assert deliveries.noted == []


def test_a_signature_of_100kb_does_not_match() -> None:
    answer, deliveries = deliver(BODY, X_Hub_Signature="sha256=" + "0" * 100_000)
    assert answer.status == 401 and deliveries.noted == []


@pytest.mark.parametrize("attempt", ["9" * 100_000, "1" * 10, "-3", "1e9", "٣"])
def test_an_absurd_attempt_number_counts_as_the_first(attempt: str) -> None:
    answer, deliveries = deliver(BODY, X_Attempt_Number=attempt)
    assert answer.status == 200
    assert [d.attempt for d in deliveries.acted] == [1 if attempt != "٣" else 3]


def nested(depth: int) -> Any:
    value: Any = {"repository": {"full_name": f"{WS}/{REPO}"}}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (json.dumps([PAYLOAD]).encode(), "the body is not a JSON object"),
        (json.dumps(nested(100)).encode(), "the body is nested deeper than 64 levels"),
        (b'{"a": ' + b"[" * 500 + b"]" * 500 + b"}", "the body is nested deeper than 64 levels"),
        (b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "the body is not a JSON object"),
        (b'{"id": ' + b"9" * 31 + b"}", "the body holds a number of more than 30 digits"),
        (b'{"id": -' + b"9" * 5000 + b"}", "the body holds a number of more than 30 digits"),
        (b'{"id": NaN}', "the body holds NaN, which is not JSON"),
        (b'{"id": -Infinity}', "the body holds -Infinity, which is not JSON"),
        (b'{"id": 1e999}', None),  # a float that is infinite: a number still, and no harm
    ],
    ids=[
        "a list",
        "100 levels",
        "500 levels",
        "200,000 levels",
        "31 digits",
        "5000 digits",
        "NaN",
        "-inf",
        "1e999",
    ],
)
def test_a_signed_body_of_an_absurd_shape_is_400_never_500(body: bytes, detail: str | None) -> None:
    answer, deliveries = deliver(body)
    if detail is None:
        assert answer.status == 202  # no repository named: ignored
        return
    assert answer == Answer(400, {"error": "bad request", "detail": detail})
    assert deliveries.noted == []


def test_nesting_up_to_the_limit_is_taken() -> None:
    answer, _ = deliver(json.dumps(nested(62)).encode())  # 63 levels with the repository's own
    assert answer.status == 202  # about no repository at its top: ignored, not refused


# --- Properties ---------------------------------------------------------------------------------

HEADER_NAMES = st.sampled_from(
    ["X-Hub-Signature", "X-Event-Key", "X-Request-UUID", "X-Attempt-Number", "Content-Type", "x-event-key"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@PROPERTIES
@given(
    body=st.binary(max_size=2048),
    headers=st.dictionaries(HEADER_NAMES | st.text(max_size=30), st.text(max_size=300), max_size=6),
)
def test_any_delivery_gets_a_verdict_never_an_exception(body: bytes, headers: dict[str, str]) -> None:
    answer = Deliveries().receiver().receive(headers, body)
    assert answer.status in (200, 202, 400, 401, 413)
    json.dumps(answer.body)


@PROPERTIES
@given(
    payload=JSON,
    repository=st.sampled_from([f"{WS}/{REPO}", "other/repo", None]),
    event=st.sampled_from(USED_EVENTS) | st.text(max_size=80),
    request_uuid=st.uuids().map(str) | st.text(max_size=100),
    attempt=st.text(max_size=20),
)
def test_any_signed_delivery_gets_a_verdict_never_a_500(
    payload: Any, repository: str | None, event: str, request_uuid: str, attempt: str
) -> None:
    if isinstance(payload, dict) and repository is not None:
        payload["repository"] = {"full_name": repository}
    body = json.dumps(payload).encode()
    deliveries = Deliveries()
    answer = deliveries.receiver().receive(
        signed(body, X_Event_Key=event, X_Request_UUID=request_uuid, X_Attempt_Number=attempt), body
    )
    assert answer.status in (200, 202, 400), answer
    for noted, _ in deliveries.noted:
        assert len(noted) <= 64
    if answer.status == 200:
        assert deliveries.noted == [(request_uuid.strip(), event.strip())]


@PROPERTIES
@given(secret=st.text(min_size=1), body=st.binary(max_size=MAX_BODY // 256))
def test_a_valid_signature_of_the_body_always_passes(secret: str, body: bytes) -> None:
    assert verify(secret, body, signature(secret, body))
    assert verify(secret, body, f"  {signature(secret, body)}\n")


@PROPERTIES
@given(secret=st.text(min_size=1), body=st.binary(max_size=1024), given_=st.text())
def test_any_other_signature_fails(secret: str, body: bytes, given_: str) -> None:
    if given_.strip() != signature(secret, body):
        assert not verify(secret, body, given_)


@PROPERTIES
@given(
    secret=st.text(min_size=1),
    other=st.text(min_size=1),
    body=st.binary(max_size=1024),
    extra=st.binary(min_size=1),
)
def test_a_signature_under_another_secret_or_of_another_body_fails(
    secret: str, other: str, body: bytes, extra: bytes
) -> None:
    if other != secret:
        assert not verify(secret, body, signature(other, body))
    assert not verify(secret, body + extra, signature(secret, body))
