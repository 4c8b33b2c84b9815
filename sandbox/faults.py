"""Faults on demand: make a stand-in answer 5xx, 429, slowly, not at all, or act and not answer;
or make a Bitbucket merge time out (555) while it still happens in the background.

A fault matches requests by service, HTTP method and a glob over the request path
(``fnmatch``: ``*`` also matches ``/``). It fires ``times`` times (or until removed when
``times`` is None), then disappears. Tests switch faults through this Python API
(``sandbox.faults.add(...)``) or, from another process, through the admin endpoint every
stand-in serves at ``/_sandbox/faults`` (see ``sandbox.server``).
"""

from __future__ import annotations

import fnmatch
import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

FaultKind = Literal["error", "rate_limit", "slow", "drop", "lost", "merge_timeout"]
KINDS: tuple[str, ...] = ("error", "rate_limit", "slow", "drop", "lost", "merge_timeout")
SERVICES: tuple[str, ...] = ("bitbucket", "bitbucket-web", "heroku", "heroku-data")
# Kinds the server hands to the stand-in's app instead of answering them itself.
APP_FAULTS: frozenset[str] = frozenset({"merge_timeout"})
MERGE_TIMEOUT_STATUS = 555
MERGE_PATH = "/2.0/repositories/*/pullrequests/*/merge"


class FaultError(ValueError):
    """A fault was described wrongly; the message names the field."""


@dataclass
class Fault:
    id: int
    service: str | None
    method: str | None
    path: str
    kind: str
    status: int
    delay: float
    times: int | None
    hits: int = 0

    def matches(self, service: str, method: str, path: str) -> bool:
        if self.service is not None and self.service != service:
            return False
        if self.method is not None and self.method != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The registry every stand-in consults before it answers a request. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(
        self,
        *,
        kind: str,
        path: str = "*",
        service: str | None = None,
        method: str | None = None,
        status: int | None = None,
        delay: float = 0.0,
        times: int | None = 1,
    ) -> Fault:
        """Add a fault. ``kind`` is one of error (``status``, default 503), rate_limit (429),
        slow (wait ``delay`` seconds, then answer normally), drop (close the connection
        without an answer), lost (do what was asked, then close the connection without an
        answer: the request took effect but the client never hears so) or merge_timeout
        (Bitbucket only: a pull request merge answers 555 while the merge goes on in the
        background as a pending task; the path defaults to every merge, the method to POST)."""
        if kind not in KINDS:
            raise FaultError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "merge_timeout":
            if service not in (None, "bitbucket"):
                raise FaultError(f"service: a merge_timeout fault is for bitbucket, not {service!r}")
            service, method = "bitbucket", method or "POST"
            path = MERGE_PATH if path == "*" else path
        if service is not None and service not in SERVICES:
            raise FaultError(f"service: {service!r} is not one of {', '.join(SERVICES)}")
        if not isinstance(path, str) or not path.startswith(("/", "*")):
            raise FaultError(f"path: {path!r} must be a glob over the request path, such as '/apps/*/builds'")
        if kind == "error":
            status = 503 if status is None else status
            if not isinstance(status, int) or not 500 <= status <= 599:
                raise FaultError(f"status: {status!r} must be a 5xx status code for an error fault")
        elif kind == "rate_limit":
            status = 429
        elif kind == "merge_timeout":
            status = MERGE_TIMEOUT_STATUS
        else:
            status = 0
        if kind == "slow" and (not isinstance(delay, int | float) or delay <= 0):
            raise FaultError(f"delay: {delay!r} must be a positive number of seconds for a slow fault")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise FaultError(f"times: {times!r} must be a positive whole number, or null for 'until removed'")
        fault = Fault(
            id=next(self._ids),
            service=service,
            method=method.upper() if method else None,
            path=path,
            kind=kind,
            status=status,
            delay=float(delay),
            times=times,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, service: str, method: str, path: str) -> Fault | None:
        """The first fault matching this request, counted as fired (and dropped when used up)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, method, path):
                    fault.hits += 1
                    if fault.times is not None and fault.hits >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self, service: str | None = None) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if service is not None and f.service != service]

    def list(self, service: str | None = None) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if service is None or f.service in (None, service)]
