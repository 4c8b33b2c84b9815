"""The ``http`` check: GET one path of the app and judge the answer.

Passes when the answer has ``expect_status``, its body contains ``body_contains`` (when set), its
JSON object has every top-level key of ``expect_json`` with the expected value (when set), and it
came within ``latency_budget`` (when set). Redirects are followed; the status judged is the last one.
Fails with the evidence otherwise; is an ``error`` when no answer came (refused, reset, timeout).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import requests
from pydantic import Field, field_validator

from checks import CheckOptions, Duration, PositiveDuration, Target
from pipeline.model import CheckResult

EXCERPT_CHARS = 200
MAX_BODY_BYTES = 1024 * 1024  # a health answer is small; never hold more than this


class Options(CheckOptions):
    """Keys under ``- http:`` in ``environments/<stage>.yml``."""

    path: str = Field(default="/health", description="path to GET, joined to the app's web URL")
    expect_status: int = Field(default=200, ge=100, le=599, description="the HTTP status that passes")
    body_contains: str | None = Field(default=None, description="text the body must contain")
    expect_json: dict[str, Any] | None = Field(
        default=None,
        description="top-level key -> expected value; the body must be a JSON object matching all",
    )
    timeout: PositiveDuration = Field(default=timedelta(seconds=5), description="give up waiting after this")
    latency_budget: Duration | None = Field(
        default=None, description="fail when the answer (body included) takes longer than this"
    )

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("expected a path starting with / such as /health")
        return value


def run(options: Options, target: Target) -> CheckResult:
    """One GET of ``urljoin(target.web_url, options.path)``: passed, failed (with the status, the
    latency and an excerpt of the body) or error (no answer). Never raises for a failing app."""
    name = f"http {options.path}"
    url = urljoin(target.web_url, options.path)
    started = time.monotonic()
    try:
        with requests.get(
            url,
            timeout=options.timeout.total_seconds(),
            stream=True,
            headers={"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"},
        ) as response:
            body = _read_body(response, deadline=started + options.timeout.total_seconds())
            status = response.status_code
    except _BodyTooSlow:
        return CheckResult(name, "error", f"GET {url}: the body did not arrive within {_ms(options.timeout)}")
    except requests.Timeout:
        return CheckResult(name, "error", f"GET {url}: no answer within {_ms(options.timeout)}")
    except requests.RequestException as exc:
        return CheckResult(name, "error", f"GET {url}: no answer: {_reason(exc)}")
    elapsed = timedelta(seconds=time.monotonic() - started)
    head = f"GET {url} -> {status} in {_ms(elapsed)}"

    if status != options.expect_status:
        return CheckResult(name, "failed", f"{head} (expected {options.expect_status}): {_excerpt(body)}")
    problems: list[str] = []
    if options.body_contains is not None and options.body_contains not in body:
        problems.append(f"body does not contain {options.body_contains!r}")
    if options.expect_json is not None:
        problems.extend(_json_mismatches(body, options.expect_json))
    if options.latency_budget is not None and elapsed > options.latency_budget:
        problems.append(f"over the latency budget of {_ms(options.latency_budget)}")
    if problems:
        return CheckResult(name, "failed", f"{head}: {'; '.join(problems)}: {_excerpt(body)}")
    return CheckResult(name, "passed", head)


class _BodyTooSlow(Exception):
    pass


def _read_body(response: requests.Response, deadline: float) -> str:
    """The body as text, at most MAX_BODY_BYTES, read before ``deadline`` (monotonic seconds)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16384):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY_BYTES:
            break
        if time.monotonic() > deadline:
            raise _BodyTooSlow
    return b"".join(chunks)[:MAX_BODY_BYTES].decode(response.encoding or "utf-8", errors="replace")


def _json_mismatches(body: str, expected: dict[str, Any]) -> list[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(document, dict):
        return [f"body is JSON {type(document).__name__}, not an object"]
    problems = []
    for key, want in expected.items():
        if key not in document:
            problems.append(f"JSON has no key {key!r}")
        elif document[key] != want:
            problems.append(f"JSON {key!r} is {_short(document[key])}, expected {_short(want)}")
    return problems


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    if not text:
        return "(empty body)"
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def _ms(value: timedelta) -> str:
    return f"{round(value.total_seconds() * 1000)} ms"


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause, e.g. "ConnectionRefusedError: [Errno 111] Connection refused", rather
    than requests' and urllib3's wrappings around it."""
    cause: BaseException = exc
    seen = {id(cause)}
    while True:
        inner = cause.__cause__ or cause.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        cause = inner
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
