"""Bitbucket Cloud webhook deliveries: which ones are genuine, new, and worth a pass.

``WebhookReceiver.receive(headers, body)`` judges one delivery and answers it; it knows nothing of
HTTP servers (``pipeline.web.app`` hands it the raw bytes and the headers). The checks run in this
order, and the first that fails answers:

====== ============================================================================================
status when
====== ============================================================================================
413    the body is larger than ``max_body`` (nothing else is looked at)
401    ``X-Hub-Signature`` is missing or is not ``sha256=<hex HMAC-SHA256(secret, body)>`` (compared
       with ``hmac.compare_digest``); the body is not parsed before the signature checks out
400    the body is not a JSON object, or one of an absurd shape (nested deeper than ``MAX_DEPTH``
       levels, a number of more than ``MAX_DIGITS`` digits, ``NaN`` or ``Infinity``); there is no
       ``X-Event-Key``, or it is not an event key (``EVENT_KEY``: at most 64 letters, digits, ``_``,
       ``.``, ``:`` and ``-``)
202    ignored: an event that cannot move a release (not in ``USED_EVENTS``), another repository's
       event, or a ``repo:commit_status_*`` of one of the controller's own statuses (``pipeline/``)
400    there is no ``X-Request-UUID``, or it is not a UUID-like id (``REQUEST_ID``: at most 64
       letters, digits, ``-``, ``_``, ``.``, ``:``, ``{`` and ``}``): nothing is noted
200    ``{"duplicate": true}``: this delivery was taken in before (``on_delivery`` is not called)
200    ``{"accepted": true}``: ``on_delivery`` was called and returned
500    ``note_delivery`` or ``on_delivery`` raised (logged): Bitbucket retries 5xx answers
====== ============================================================================================

Every answer is a small JSON object saying why; none repeats the secret or the signature. Every
header read is bounded: a signature longer than ``MAX_HEADER`` characters does not match, an
``X-Attempt-Number`` longer than 9 digits is unreadable (the first attempt), an event key or request
id is refused unless it is a short token, so nothing long is ever answered, noted or logged.

**Noting a delivery, and acting on it.** Bitbucket repeats a delivery (same ``X-Request-UUID``)
when an attempt failed or timed out, so each is noted through ``note_delivery`` (the store's
atomic ``record_delivery``: True the first time) *before* acting, and a repeat is answered as a
duplicate without acting: of two concurrent copies exactly one acts. A delivery counts as seen only
once it was acted on, though: when ``on_delivery`` raises, the answer is 500 and the receiver
remembers the request id (in memory, the last ``UNFINISHED_MEMORY`` of them), so Bitbucket's retry
of that delivery, which ``note_delivery`` calls a repeat, is acted on again; once acting succeeds it
is forgotten. Acting is idempotent (it asks for a reconcile pass, which observes everything itself),
so the rare double action this allows (two concurrent retries of a failed delivery) is harmless.
What this memory cannot cover: a process that stopped between noting and acting, or after a failed
action, loses it; the retry is then answered as a duplicate. Nothing is lost by that, since a
starting ``serve`` runs a pass and polling observes everything webhooks would have said, only later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pipeline.web.webhooks")

USED_EVENTS: tuple[str, ...] = (
    "repo:push",
    "repo:commit_status_created",
    "repo:commit_status_updated",
    "pullrequest:created",
    "pullrequest:updated",
    "pullrequest:approved",
    "pullrequest:unapproved",
    "pullrequest:changes_request_created",
    "pullrequest:changes_request_removed",
    "pullrequest:rejected",
    "pullrequest:fulfilled",
)
"""The events that can move a release; ``pipeline webhooks install`` subscribes to exactly these."""

MAX_BODY = 1024 * 1024  # bytes; Bitbucket's payloads are a few kilobytes (push lists 5 commits)
OWN_STATUS_PREFIX = "pipeline/"  # the commit status keys the controller sets itself
UNFINISHED_MEMORY = 1024  # failed deliveries remembered, so that their retries are acted on

MAX_HEADER = 256  # characters of a signature read: Bitbucket's are 71
MAX_DEPTH = 64  # levels of a JSON body; Bitbucket's nest about 8
MAX_DIGITS = 30  # digits of a number in a JSON body; Bitbucket's ids are far shorter
EVENT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # repo:push, pullrequest:approved
REQUEST_ID = re.compile(r"[A-Za-z0-9{}._:-]{1,64}")  # a UUID, with or without braces

SIGNATURE_HEADER = "X-Hub-Signature"
EVENT_HEADER = "X-Event-Key"
REQUEST_HEADER = "X-Request-UUID"
ATTEMPT_HEADER = "X-Attempt-Number"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` Bitbucket sends for ``body`` under ``secret``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, given: str) -> bool:
    """True when ``given`` is the signature of ``body`` under ``secret``.

    Compared in constant time (``hmac.compare_digest``, on bytes, so any header text is safe).
    """
    expected = signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, given.strip().encode("utf-8", "replace"))


@dataclass(frozen=True)
class Delivery:
    """A genuine, new delivery of an event the controller acts on."""

    event: str  # X-Event-Key, one of USED_EVENTS
    request_uuid: str  # X-Request-UUID: the same on every attempt of one delivery
    attempt: int  # X-Attempt-Number (1 when absent or unreadable)
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Answer:
    """What to answer a delivery: the HTTP status and a small JSON object saying why."""

    status: int
    body: dict[str, Any]


def _error(status: int, error: str, detail: str) -> Answer:
    return Answer(status, {"error": error, "detail": detail})


def _ignored(event: str, reason: str) -> Answer:
    return Answer(202, {"ignored": True, "event": event, "reason": reason})


def _attempt(value: str | None) -> int:
    text = (value or "").strip()
    if len(text) > 9:
        return 1
    try:
        number = int(text)
    except ValueError:
        return 1
    return number if number >= 1 else 1


class _Absurd(ValueError):
    """A JSON body of a shape no webhook delivery has: the message says which."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Absurd(f"the body holds a number of more than {MAX_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _Absurd(f"the body holds {name}, which is not JSON")


def _payload(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """The body as a JSON object, or (None, what is wrong with it)."""
    try:
        payload = json.loads(body, parse_int=_bounded_int, parse_constant=_no_constant)
    except _Absurd as exc:
        return None, str(exc)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "the body is not a JSON object"
    if not isinstance(payload, dict):
        return None, "the body is not a JSON object"
    if _deeper_than(payload, MAX_DEPTH):
        return None, f"the body is nested deeper than {MAX_DEPTH} levels"
    return payload, ""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays deeper than ``limit`` levels (walked without
    recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _repository_name(payload: Mapping[str, Any]) -> str | None:
    """``workspace/repository`` as the payload names it (``full_name``, else the workspace slug
    and the repository name), or None when it names none."""
    repository = payload.get("repository")
    if not isinstance(repository, Mapping):
        return None
    full_name = repository.get("full_name")
    if isinstance(full_name, str) and full_name:
        return full_name
    workspace = repository.get("workspace")
    slug = workspace.get("slug") if isinstance(workspace, Mapping) else None
    name = repository.get("name")
    if isinstance(slug, str) and slug and isinstance(name, str) and name:
        return f"{slug}/{name}"
    return None


def _status_key(payload: Mapping[str, Any]) -> str:
    status = payload.get("commit_status")
    key = status.get("key") if isinstance(status, Mapping) else None
    return key if isinstance(key, str) else ""


class WebhookReceiver:
    """Judges Bitbucket deliveries for ``workspace/repository`` (see the module docstring).

    ``secret`` is the webhook's secret (not empty: an empty key would let anyone sign).
    ``note_delivery(request_uuid, event)`` records a delivery id atomically and returns False when it
    was recorded before; ``on_delivery(delivery)`` acts on a new one (for the controller: ask for a
    pass soon) and should return quickly, since Bitbucket waits for the answer. Thread-safe when both
    callables are: a server calls ``receive`` from several threads.
    """

    def __init__(
        self,
        secret: str,
        workspace: str,
        repository: str,
        note_delivery: Callable[[str, str], bool],
        on_delivery: Callable[[Delivery], None],
        max_body: int = MAX_BODY,
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret must not be empty: anyone could sign a delivery")
        if max_body <= 0:
            raise ValueError(f"max_body must be a positive number of bytes, not {max_body!r}")
        self._secret = secret
        self.full_name = f"{workspace}/{repository}"
        self.max_body = max_body
        self._note = note_delivery
        self._act = on_delivery
        self._lock = threading.Lock()
        self._unfinished: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"WebhookReceiver({self.full_name}, secret=<hidden>)"

    def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """Judge one delivery (header names in any case) and, when it is genuine, new and about
        this repository, act on it. Never raises for anything the delivery holds; a failure to note
        or act is answered 500 and logged."""
        fields = {str(name).lower(): str(value) for name, value in headers.items()}
        if len(body) > self.max_body:
            return _error(
                413, "payload too large", f"the body is {len(body)} bytes; at most {self.max_body} are taken"
            )
        given = fields.get(SIGNATURE_HEADER.lower(), "")[: MAX_HEADER + 1]  # longer never matches
        if not given:
            log.info("refused a webhook delivery without %s", SIGNATURE_HEADER)
            return _error(
                401, "unauthorized", f"no {SIGNATURE_HEADER}: give the webhook the secret the controller has"
            )
        if not verify(self._secret, body, given):
            log.info("refused a webhook delivery whose %s does not match", SIGNATURE_HEADER)
            return _error(
                401, "unauthorized", f"{SIGNATURE_HEADER} does not match the body: check the webhook's secret"
            )
        payload, wrong = _payload(body)
        if payload is None:
            return _error(400, "bad request", wrong)
        event = fields.get(EVENT_HEADER.lower(), "").strip()
        if not event:
            return _error(400, "bad request", f"no {EVENT_HEADER} header")
        if not EVENT_KEY.fullmatch(event):
            return _error(400, "bad request", f"{EVENT_HEADER} is not an event key such as repo:push")
        if event not in USED_EVENTS:
            return _ignored(event, "not an event the controller acts on")
        named = _repository_name(payload)
        if named is None or named.lower() != self.full_name.lower():
            watched = f"this controller watches {self.full_name}"
            reason = (
                f"another repository ({named}); {watched}" if named else f"no repository named; {watched}"
            )
            return _ignored(event, reason)
        if event.startswith("repo:commit_status_") and _status_key(payload).startswith(OWN_STATUS_PREFIX):
            return _ignored(event, "the controller's own commit status")
        request_uuid = fields.get(REQUEST_HEADER.lower(), "").strip()
        if not request_uuid:
            return _error(400, "bad request", f"no {REQUEST_HEADER} header")
        if not REQUEST_ID.fullmatch(request_uuid):
            return _error(
                400,
                "bad request",
                f"{REQUEST_HEADER} is not a delivery id: a UUID (at most 64 letters, digits, '-', '{{}}')",
            )
        delivery = Delivery(event, request_uuid, _attempt(fields.get(ATTEMPT_HEADER.lower())), payload)
        return self._take(delivery)

    def _take(self, delivery: Delivery) -> Answer:
        """Note, then act (see "Noting a delivery, and acting on it" above)."""
        done = {"event": delivery.event, "request_uuid": delivery.request_uuid}
        try:
            first = self._note(delivery.request_uuid, delivery.event)
        except Exception:
            log.exception("could not note webhook delivery %s (%s)", delivery.request_uuid, delivery.event)
            return _error(500, "internal error", "the delivery could not be recorded; Bitbucket retries it")
        if not first:
            with self._lock:
                retried = delivery.request_uuid in self._unfinished
            if not retried:
                return Answer(200, {"duplicate": True, **done})
        try:
            self._act(delivery)
        except Exception:
            with self._lock:
                self._unfinished[delivery.request_uuid] = None
                self._unfinished.move_to_end(delivery.request_uuid)
                while len(self._unfinished) > UNFINISHED_MEMORY:
                    self._unfinished.popitem(last=False)
            log.exception(
                "acting on webhook delivery %s (%s, attempt %d) failed",
                delivery.request_uuid,
                delivery.event,
                delivery.attempt,
            )
            return _error(500, "internal error", "the delivery could not be handled; Bitbucket retries it")
        with self._lock:
            self._unfinished.pop(delivery.request_uuid, None)
        return Answer(200, {"accepted": True, **done})
