"""The ``http`` check: GET one path of the app and judge the answer.

Passes when the answer has ``expect_status``, its body contains ``body_contains`` (when set), its
JSON has every path of ``expect_json`` with the expected value (when set), and it came within
``latency_budget`` (when set). Redirects are followed; the status judged is the last one. Fails
with the evidence otherwise; is an ``error`` when no answer came (refused, reset, timeout).

The pieces other checks reuse (``checks.commit`` does) are public here: :func:`get` makes the
request and returns an :class:`Answer` or raises :class:`NoAnswer`; :func:`read_json` and
:func:`json_at` find a value by a JSON path (``status``, ``database.status``, ``checks[0].name``,
``$.status``) or raise :class:`JsonMismatch` saying what is not there; :data:`UrlPath` and
:data:`JsonPath` are the option types that validate a path to GET and a JSON path.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urljoin

import requests
from pydantic import AfterValidator, Field, field_validator

from checks import CheckOptions, Duration, PositiveDuration, Target
from pipeline.model import CheckResult

EXCERPT_CHARS = 200
MAX_BODY_BYTES = 1024 * 1024  # a health answer is small; never hold more than this
JSON_PATH_SYNTAX = "a JSON path such as status, database.status, checks[0].name or $.status"

# A key is any run of characters but ".", "[" and "]"; an index is a whole number in brackets.
_KEY = r"[^.\[\]]+"
_JSON_PATH = re.compile(rf"(?:(?:\$\.)?{_KEY}|\$?\[\d+\])(?:\.{_KEY}|\[\d+\])*")
_STEP = re.compile(rf"({_KEY})|\[(\d+)\]")


# --- Option types -----------------------------------------------------------------------------


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("expected a path starting with / such as /health")
    return value


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """The steps of a JSON path: ``"checks[0].name"`` -> ``("checks", 0, "name")``.

    A path is a key, then ``.key`` or ``[index]`` steps; a leading ``$.`` (or ``$`` before an
    index) names the document itself and is optional. Raises ``ValueError`` naming the path and
    the expected syntax otherwise.
    """
    if text == "$" or not _JSON_PATH.fullmatch(text):
        raise ValueError(f"{text!r} is not {JSON_PATH_SYNTAX}")
    body = text[2:] if text.startswith("$.") else text[1:] if text.startswith("$[") else text
    return tuple(key if key else int(index) for key, index in _STEP.findall(body))


def _json_path(value: str) -> str:
    parse_json_path(value)
    return value


UrlPath = Annotated[str, AfterValidator(_absolute)]
"""A path to GET on the app: text starting with ``/``."""

JsonPath = Annotated[str, AfterValidator(_json_path)]
"""A JSON path (see :func:`parse_json_path`), kept as written."""


class Options(CheckOptions):
    """Keys under ``- http:`` in ``environments/<stage>.yml``."""

    path: UrlPath = Field(default="/health", description="path to GET, joined to the app's web URL")
    expect_status: int = Field(default=200, ge=100, le=599, description="the HTTP status that passes")
    body_contains: str | None = Field(default=None, description="text the body must contain")
    expect_json: dict[str, Any] | None = Field(
        default=None,
        description="JSON path (status, database.status, checks[0].name) -> expected value; each must "
        "exist and equal it",
    )
    timeout: PositiveDuration = Field(default=timedelta(seconds=5), description="give up waiting after this")
    latency_budget: Duration | None = Field(
        default=None, description="fail when the answer (body included) takes longer than this"
    )

    @field_validator("expect_json")
    @classmethod
    def _keys_are_json_paths(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        problems = []
        for path in value or {}:
            try:
                parse_json_path(path)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return value


def run(options: Options, target: Target) -> CheckResult:
    """One GET of ``urljoin(target.web_url, options.path)``: passed, failed (with the status, the
    latency and an excerpt of the body) or error (no answer). Never raises for a failing app."""
    name = f"http {options.path}"
    try:
        answer = get(urljoin(target.web_url, options.path), options.timeout)
    except NoAnswer as exc:
        return CheckResult(name, "error", str(exc))

    if answer.status != options.expect_status:
        return CheckResult(
            name, "failed", f"{answer.head} (expected {options.expect_status}): {excerpt(answer.body)}"
        )
    problems: list[str] = []
    if options.body_contains is not None and options.body_contains not in answer.body:
        problems.append(f"body does not contain {options.body_contains!r}")
    if options.expect_json is not None:
        problems.extend(_json_mismatches(answer.body, options.expect_json))
    if options.latency_budget is not None and answer.elapsed > options.latency_budget:
        problems.append(f"over the latency budget of {_ms(options.latency_budget)}")
    if problems:
        return CheckResult(name, "failed", f"{answer.head}: {'; '.join(problems)}: {excerpt(answer.body)}")
    return CheckResult(name, "passed", answer.head)


# --- The request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one GET brought back: the final status (after redirects), the body as text (at most
    ``MAX_BODY_BYTES``) and how long it took, body included."""

    url: str
    status: int
    body: str
    elapsed: timedelta

    @property
    def head(self) -> str:
        """``GET <url> -> 200 in 12 ms``: how a check's detail starts."""
        return f"GET {self.url} -> {self.status} in {_ms(self.elapsed)}"


class NoAnswer(Exception):
    """No answer came (refused, reset, timeout, a body too slow); the message says which, ready to
    be an ``error`` result's detail."""


def get(url: str, timeout: timedelta) -> Answer:
    """GET ``url``, following redirects, waiting at most ``timeout`` for the answer and its body.

    Raises :class:`NoAnswer` when there was none; any status is an :class:`Answer`.
    """
    started = time.monotonic()
    try:
        with requests.get(
            url,
            timeout=timeout.total_seconds(),
            stream=True,
            headers={"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"},
        ) as response:
            body = _read_body(response, deadline=started + timeout.total_seconds())
            status = response.status_code
    except _BodyTooSlow:
        raise NoAnswer(f"GET {url}: the body did not arrive within {_ms(timeout)}") from None
    except requests.Timeout:
        raise NoAnswer(f"GET {url}: no answer within {_ms(timeout)}") from None
    except requests.RequestException as exc:
        raise NoAnswer(f"GET {url}: no answer: {_reason(exc)}") from exc
    return Answer(url, status, body, timedelta(seconds=time.monotonic() - started))


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


# --- JSON paths -------------------------------------------------------------------------------


class JsonMismatch(Exception):
    """The body is not JSON, or a JSON path leads nowhere; the message says where and why
    ("JSON has no key 'release'", "JSON 'checks' has 2 items, no [5] (path 'checks[5].name')")."""


def read_json(body: str) -> Any:
    """The body parsed as JSON; :class:`JsonMismatch` ("body is not JSON") when it is not."""
    try:
        return json.loads(body)
    except ValueError:
        raise JsonMismatch("body is not JSON") from None


def json_at(document: Any, path: str) -> Any:
    """The value at JSON path ``path`` (see :func:`parse_json_path`) in ``document``.

    Raises :class:`JsonMismatch` naming the step that leads nowhere: a missing key, an index past
    the end, or an object where a list was expected (or the other way round), with what is there.
    """
    steps = parse_json_path(path)
    node = document
    for depth, step in enumerate(steps):
        at = "JSON" if depth == 0 else f"JSON {_render(steps[:depth])!r}"
        if isinstance(step, str):
            if isinstance(node, dict) and step in node:
                node = node[step]
                continue
            problem = f"{at} has no key {step!r}" if isinstance(node, dict) else _not(node, "an object", at)
        else:
            if isinstance(node, list) and step < len(node):
                node = node[step]
                continue
            problem = (
                f"{at} has {len(node)} item{'' if len(node) == 1 else 's'}, no [{step}]"
                if isinstance(node, list)
                else _not(node, "a list", at)
            )
        whole_path = len(steps) > 1 and not problem.startswith("body ")  # the body's own kind says it all
        raise JsonMismatch(f"{problem} (path {path!r})" if whole_path else problem)
    return node


def json_equal(found: Any, expected: Any) -> bool:
    """Whether two JSON values are the same: as ``==``, except that ``true`` is not ``1``."""
    if isinstance(found, bool) or isinstance(expected, bool):
        return type(found) is type(expected) and found == expected
    if isinstance(found, dict) and isinstance(expected, dict):
        return found.keys() == expected.keys() and all(json_equal(found[k], expected[k]) for k in found)
    if isinstance(found, list) and isinstance(expected, list):
        return len(found) == len(expected) and all(map(json_equal, found, expected))
    return bool(found == expected)


def _json_mismatches(body: str, expected: dict[str, Any]) -> list[str]:
    """One line per path of ``expected`` the body does not match (each said once)."""
    try:
        document = read_json(body)
    except JsonMismatch as exc:
        return [str(exc)]
    problems: list[str] = []
    for path, want in expected.items():
        try:
            found = json_at(document, path)
        except JsonMismatch as exc:
            problem = str(exc)
        else:
            if json_equal(found, want):
                continue
            problem = f"JSON {path!r} is {short(found)}, expected {short(want)}"
        if problem not in problems:
            problems.append(problem)
    return problems


def _not(node: Any, wanted: str, at: str) -> str:
    """ "body is JSON list, not an object", "JSON 'db' is string "up", not an object"."""
    if at == "JSON":
        return f"body is JSON {_kind(node)}, not {wanted}"
    return f"{at} is {_kind(node)} {short(node)}, not {wanted}"


def _render(steps: tuple[str | int, ...]) -> str:
    """("checks", 0, "name") -> "checks[0].name"."""
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _kind(value: Any) -> str:
    """The JSON name of a value's type ("object", "list", "string"...)."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    kinds = {dict: "object", list: "list", str: "string", int: "number", float: "number"}
    return kinds.get(type(value), type(value).__name__)


# --- Wording ----------------------------------------------------------------------------------


def short(value: Any) -> str:
    """A JSON value as JSON, cut to 60 characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def excerpt(body: str) -> str:
    """The body on one line, at most ``EXCERPT_CHARS`` characters, or "(empty body)"."""
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
