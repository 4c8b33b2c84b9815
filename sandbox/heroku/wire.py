"""Wire rules of the Platform API: errors, Accept, auth, the rate-limit budget and Range paging.

Everything here is independent of the resources: ``api`` applies these rules to every request
under the API (not to the blob and stream URLs, which stand in for S3 and build-output URLs).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

ENDPOINT_NOT_FOUND = (
    "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), "
    "and did you specify your intended version with the `Accept` header?"
)
RATE_LIMIT_MESSAGE = (
    "Your account reached the API rate limit\nPlease wait a few minutes before making new requests"
)
# What Heroku answers an API key whose account needs a second factor for the request (403).
TWO_FACTOR_MESSAGE = (
    "A second authentication factor or pre-authorization is required for this request. "
    "Your account has either two-factor or a Yubikey registered."
)
TWO_FACTOR_URL = "https://devcenter.heroku.com/articles/two-factor-authentication"
REFILL_PER_SECOND = 75 / 60  # Heroku refills about 75 tokens a minute
DEFAULT_PAGE = 200
MAX_PAGE = 1000


class ApiError(Exception):
    """An error answer: ``{"id", "message"}`` (plus ``resource`` for not_found and ``url`` where
    Heroku points at its documentation, like Heroku)."""

    def __init__(
        self, status: int, error_id: str, message: str, *, resource: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.resource = resource
        self.url = url

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.error_id, "message": self.message}
        if self.resource is not None:
            body["resource"] = self.resource
        if self.url is not None:
            body["url"] = self.url
        return body


def not_found(resource: str) -> ApiError:
    return ApiError(404, "not_found", f"Couldn't find that {resource}.", resource=resource)


def invalid(field: str, problem: str) -> ApiError:
    return ApiError(422, "invalid_params", f"Invalid params: {field} {problem}.")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def request_id() -> str:
    return str(uuid.uuid4())


# -- Accept ---------------------------------------------------------------------------------------

_VERSION = re.compile(r"^3(\.[A-Za-z0-9_-]+)*$")


def acceptable(accept: str | None) -> bool:
    """True for ``application/vnd.heroku+json; version=3`` and its variants (``3.cedar-acm``...)."""
    if not accept:
        return False
    for media_range in accept.split(","):
        parts = [p.strip() for p in media_range.split(";")]
        if parts[0].lower() != "application/vnd.heroku+json":
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        version = params.get("version", "").strip().strip('"')
        if _VERSION.match(version):
            return True
    return False


# -- auth -----------------------------------------------------------------------------------------


def token_from(authorization: str | None) -> str | None:
    """The API key in ``Bearer <key>`` or HTTP Basic ``<any user>:<key>`` (heroku3 sends an empty user)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


# -- rate limit -----------------------------------------------------------------------------------


class RateBudget:
    """The account's request budget: ``capacity`` tokens, refilled ~75 a minute, one per request."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        t = self._clock()
        self._tokens = min(float(self.capacity), self._tokens + (t - self._at) * REFILL_PER_SECOND)
        self._at = t

    def remaining(self) -> int:
        with self._lock:
            self._refill()
            return int(self._tokens)

    def spend(self) -> bool:
        """Take one token; False (and nothing taken) when fewer than one is left."""
        with self._lock:
            self._refill()
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


# -- Range ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    field: str
    start: str | None = None
    start_exclusive: bool = False
    end: str | None = None
    max: int = DEFAULT_PAGE
    order: str = "asc"


def parse_range(header: str | None, fields: Sequence[str]) -> Range:
    """Parse ``<field> [[|]start]..[end][; max=N[, order=asc|desc]]``.

    Tolerates what heroku3 sends (``version ..; ;``, ``id ..; order=desc,max=10;``). No header:
    the first of ``fields``, ascending, 200 a page. A field the list cannot be ordered on, or a
    ``max``/``order`` that makes no sense, is 416 requested_range_not_satisfiable.
    """
    if header is None or not header.strip():
        return Range(field=fields[0])
    head, _, rest = header.strip().partition(";")
    head = head.strip()
    field, _, bounds = head.partition(" ")
    bounds = bounds.strip()
    if field not in fields:
        raise ApiError(
            416,
            "requested_range_not_satisfiable",
            f"Invalid range: this list can be ordered on {', '.join(fields)}, not {field!r}.",
        )
    start: str | None = None
    end: str | None = None
    exclusive = False
    if bounds:
        if ".." not in bounds:
            raise ApiError(416, "requested_range_not_satisfiable", f"Invalid range: {header!r}.")
        first, _, last = bounds.partition("..")
        if first.startswith("]"):
            exclusive, first = True, first[1:]
        elif first.startswith("["):
            first = first[1:]
        start = first or None
        end = last.rstrip("]").rstrip("[") or None
    page, order = DEFAULT_PAGE, "asc"
    for token in re.split(r"[;,]", rest):
        token = token.strip()
        if not token:
            continue
        key, _, value = token.partition("=")
        key, value = key.strip(), value.strip()
        if key == "max":
            if not value.isdigit() or int(value) < 1:
                raise ApiError(416, "requested_range_not_satisfiable", f"Invalid range: max={value!r}.")
            page = min(int(value), MAX_PAGE)
        elif key == "order":
            if value not in ("asc", "desc"):
                raise ApiError(416, "requested_range_not_satisfiable", f"Invalid range: order={value!r}.")
            order = value
    return Range(field=field, start=start, start_exclusive=exclusive, end=end, max=page, order=order)


def _key(value: Any) -> tuple[int, Any]:
    if isinstance(value, int):
        return (0, value)
    return (1, "" if value is None else str(value))


def _bound(value: str, sample: Any) -> tuple[int, Any]:
    if isinstance(sample, int) and value.lstrip("-").isdigit():
        return (0, int(value))
    return (1, value)


def page(
    items: list[dict[str, Any]], rng: Range, fields_map: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, str], int]:
    """One page of ``items`` (JSON shapes) ordered by ``rng``: (items, headers, status 200|206)."""
    attr = (fields_map or {}).get(rng.field, rng.field)
    desc = rng.order == "desc"
    ordered = sorted(items, key=lambda i: _key(i.get(attr)), reverse=desc)
    if ordered and rng.start is not None:
        lo = _bound(rng.start, ordered[0].get(attr))

        def after_start(item: dict[str, Any]) -> bool:
            k = _key(item.get(attr))
            if k == lo:
                return not rng.start_exclusive
            return k < lo if desc else k > lo

        ordered = [i for i in ordered if after_start(i)]
    if ordered and rng.end is not None:
        hi = _bound(rng.end, ordered[0].get(attr))
        ordered = [i for i in ordered if (_key(i.get(attr)) >= hi if desc else _key(i.get(attr)) <= hi)]
    chunk = ordered[: rng.max]
    headers: dict[str, str] = {}
    status = 200
    if chunk:
        headers["Content-Range"] = f"{rng.field} {chunk[0].get(attr)}..{chunk[-1].get(attr)}"
    if len(ordered) > rng.max:
        status = 206
        headers["Next-Range"] = f"{rng.field} ]{chunk[-1].get(attr)}..; max={rng.max}, order={rng.order}"
    return chunk, headers, status
