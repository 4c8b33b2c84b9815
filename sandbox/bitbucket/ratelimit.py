"""Bitbucket's per-user rolling-hour budget on ``/2.0/repositories/*``.

Each authenticated request under that prefix costs one unit; once ``limit`` units were spent in the
last hour the request gets Bitbucket's plain-text 429. Every such answer carries
``X-RateLimit-Limit``, ``X-RateLimit-Resource`` and ``X-RateLimit-NearLimit`` (true when less than
a fifth of the budget is left).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

RESOURCE = "api/repositories"
WINDOW_SECONDS = 3600.0


class RollingLimiter:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def spend(self, who: str) -> tuple[bool, int]:
        """Spend one unit for ``who``: (allowed, remaining after this request)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(who, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= self.limit:
                return False, 0
            hits.append(now)
            return True, self.limit - len(hits)

    def used(self, who: str) -> int:
        """Requests ``who`` made in the rolling window (what the budget has spent)."""
        with self._lock:
            return len(self._hits.get(who, ()))

    def headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Resource": RESOURCE,
            "X-RateLimit-NearLimit": "true" if remaining < self.limit / 5 else "false",
        }
