"""What the adapter tests share: waiting on the sandbox, and checking an error holds no secret."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from pipeline.errors import ExternalError

T = TypeVar("T")


def poll(what: str, read: Callable[[], T], until: Callable[[T], bool], timeout: float = 90.0) -> T:
    """``read()`` again and again until ``until`` holds for what it returns; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {value!r}")
        time.sleep(0.25)


def assert_secret_free(error: ExternalError, secret: str) -> None:
    assert secret not in str(error)
    assert secret not in error.evidence
    assert secret not in repr(error.args)
