"""Webhook delivery the way Bitbucket Cloud does it: one background thread, in order, retried.

Each delivery is a POST of the JSON payload with ``X-Event-Key``, ``X-Hook-UUID``,
``X-Request-UUID``, ``X-Attempt-Number``, ``User-Agent: Bitbucket-Webhooks/2.0`` and, when the hook
has a secret, ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``. A connection error,
a timeout or a 5xx is retried, up to ``attempts`` tries in all (Bitbucket: 3); any other answer
ends the delivery. Every try is kept in a per-hook delivery log (``Deliverer.deliveries``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from sandbox.bitbucket.shapes import now

USER_AGENT = "Bitbucket-Webhooks/2.0"
LOG_LIMIT = 500


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    """One event sent to one hook, with every attempt made so far."""

    hook_uuid: str
    url: str
    event: str
    body: bytes
    secret: str | None
    request_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=now)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "pending"  # pending | delivered | failed

    def headers(self, attempt: int) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Event-Key": self.event,
            "X-Hook-UUID": self.hook_uuid.strip("{}"),
            "X-Request-UUID": self.request_uuid,
            "X-Attempt-Number": str(attempt),
        }
        if self.secret:
            headers["X-Hub-Signature"] = signature(self.secret, self.body)
        return headers

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook_uuid": self.hook_uuid,
            "url": self.url,
            "event": self.event,
            "request_uuid": self.request_uuid,
            "created_at": self.created_at,
            "outcome": self.outcome,
            "attempts": [dict(a) for a in self.attempts],
            "payload": json.loads(self.body),
        }


class Deliverer:
    """The background sender. ``enqueue`` never blocks on the network; ``close`` stops the thread."""

    def __init__(self, *, timeout: float = 10.0, retry_delay: float = 0.5, attempts: int = 3) -> None:
        self.timeout = timeout
        self.retry_delay = retry_delay
        self.max_attempts = attempts
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._log: dict[str, list[Delivery]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._session = requests.Session()
        self._session.trust_env = False
        self._thread = threading.Thread(target=self._run, name="bitbucket-webhooks", daemon=True)
        self._thread.start()

    def enqueue(
        self, hook_uuid: str, url: str, secret: str | None, event: str, payload: dict[str, Any]
    ) -> None:
        delivery = Delivery(hook_uuid, url, event, json.dumps(payload).encode(), secret)
        with self._lock:
            self._log.setdefault(hook_uuid, []).append(delivery)
            del self._log[hook_uuid][:-LOG_LIMIT]
            self._pending += 1
        self._queue.put(delivery)

    def deliveries(self, hook_uuid: str | None = None) -> list[dict[str, Any]]:
        """The delivery log, oldest first: every hook's, or one hook's (uuid with or without braces)."""
        with self._lock:
            if hook_uuid is None:
                items = [d for log in self._log.values() for d in log]
            else:
                key = "{" + hook_uuid.strip("{}") + "}"
                items = list(self._log.get(key, []))
            return [d.to_dict() for d in sorted(items, key=lambda d: d.created_at)]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued delivery has finished (delivered or given up)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=self.timeout + 5)
        self._session.close()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None or self._stop.is_set():
                return
            try:
                self._deliver(delivery)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(1, self.max_attempts + 1):
            record: dict[str, Any] = {"attempt": attempt, "at": now(), "status": None, "error": None}
            retry = False
            try:
                resp = self._session.post(
                    delivery.url,
                    data=delivery.body,
                    headers=delivery.headers(attempt),
                    timeout=self.timeout,
                    allow_redirects=False,
                )
                record["status"] = resp.status_code
                retry = resp.status_code >= 500
            except requests.RequestException as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
                retry = True
            with self._lock:
                delivery.attempts.append(record)
                if not retry:
                    delivery.outcome = "delivered" if 200 <= (record["status"] or 0) < 300 else "failed"
            if not retry:
                return
            if attempt < self.max_attempts and self._stop.wait(self.retry_delay * attempt):
                break
        with self._lock:
            delivery.outcome = "failed"
