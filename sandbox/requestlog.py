"""What a stand-in answered: one entry per request, oldest first, in bounded memory.

Every ``ServiceServer`` keeps one ``RequestLog`` and records each request it answered (the admin
requests under ``/_sandbox/`` are not recorded, nor requests a ``drop``/``lost`` fault left
unanswered). An entry says when, what, the status and which authentication scheme was used
(``basic``, ``bearer``, ``none``, or ``other`` for anything else); never the credential itself,
nor the query string (signed URLs carry their signature there). Only the last ``limit`` entries
are kept.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

DEFAULT_LIMIT = 100_000


def auth_scheme(authorization: str | None) -> str:
    """``basic``, ``bearer``, ``none`` or ``other``: the scheme alone, never what follows it."""
    if not authorization or not authorization.strip():
        return "none"
    scheme = authorization.strip().split(None, 1)[0].lower()
    return scheme if scheme in ("basic", "bearer") else "other"


class RequestLog:
    """A thread-safe ring of answered requests."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)

    def record(
        self, method: str, path: str, status: int, authorization: str | None, user_agent: str | None
    ) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "method": method,
            "path": path,
            "status": status,
            "auth": auth_scheme(authorization),
            "user_agent": user_agent,
        }
        with self._lock:
            self._entries.append(entry)

    def values(self) -> list[dict[str, Any]]:
        """The entries, oldest first (copies)."""
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
