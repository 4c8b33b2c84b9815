"""What every adapter shares: sessions that cannot hang, and the one translation of failures.

``session(timeout)`` makes a ``requests.Session`` whose every request is bounded by ``timeout``
seconds (to connect, and between two bytes of the answer) whatever the calling library passes,
sends our User-Agent and retries nothing: retrying is the controller's decision, made on the
``retry_after`` of a ``Temporary`` error.

``error_for(service, what, failure)`` is the only place an HTTP answer or a ``requests`` exception
becomes one of ``pipeline.errors``:

- 429, 5xx (Bitbucket's 555 too), connection failures and timeouts -> ``Temporary``, with
  ``retry_after`` read from ``Retry-After`` / ``RateLimit-Reset`` / ``X-RateLimit-Reset`` when the
  answer has one, else a default (60 s after a 429, 30 s otherwise);
- 404 -> ``NotFound``; 401 and 403 -> ``Permanent`` naming the credential's environment variable;
  any other answer -> ``Permanent``.

The evidence is the status and a short excerpt of the body. Messages are built from the caller's
``what`` (ids and names), never from request headers or URLs, and every given secret plus anything
that looks like a credential in a URL (``token=``, ``signature=``, ``user:password@``) is scrubbed
from the excerpt.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from pipeline.errors import ExternalError, NotFound, Permanent, Temporary


def _user_agent() -> str:
    """``release-controller/<version> (+python-requests/<version>)``: who calls, for the services' logs."""
    try:
        ours = metadata.version("release-controller")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        ours = "0+unknown"
    return f"release-controller/{ours} python-requests/{requests.__version__}"


USER_AGENT = _user_agent()
DEFAULT_TIMEOUT = 30.0
RATE_LIMIT_RETRY = 60.0  # no header says when: Heroku refills ~75 requests a minute, Bitbucket hourly
SERVER_RETRY = 30.0  # 5xx, connection refused, timeouts
MAX_RETRY_AFTER = 3600.0
EVIDENCE_CHARS = 300

Timeout = float | tuple[float, float] | tuple[float, None] | None

_CREDENTIAL_IN_QUERY = re.compile(
    r"(?i)([?&;](?:token|access_token|api_key|key|signature|sig|password|secret|x-amz-[a-z-]+)=)[^&\s\"'<>]+"
)
_CREDENTIAL_IN_AUTHORITY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")


class TimeoutAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that never waits longer than ``timeout`` seconds to connect or to read.

    A caller may ask for less (a float or a ``(connect, read)`` pair); more, or no timeout at all
    (heroku3 passes none, atlassian-python-api's sub-objects pass 75), is cut down to ``timeout``.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=0)
        self.timeout = float(timeout)

    def bounded(self, asked: Timeout) -> tuple[float, float]:
        """The ``(connect, read)`` timeout to use when ``asked`` was asked for."""
        if asked is None:
            return (self.timeout, self.timeout)
        if isinstance(asked, tuple):
            connect, read = asked
            return (
                self.timeout if connect is None else min(float(connect), self.timeout),
                self.timeout if read is None else min(float(read), self.timeout),
            )
        return (min(float(asked), self.timeout), min(float(asked), self.timeout))

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request, stream=stream, timeout=self.bounded(timeout), verify=verify, cert=cert, proxies=proxies
        )


class NoAuth(AuthBase):
    """Send no credentials, and keep requests from adding some from ``~/.netrc``.

    For capability URLs (signed upload and output URLs) that must never see an API key.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request (and nothing from ``~/.netrc``).

    Its ``repr`` does not show the token.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"


def session(timeout: float = DEFAULT_TIMEOUT, *, auth: AuthBase | None = None) -> requests.Session:
    """A session bounded by ``timeout`` seconds per connect and per read, sending our User-Agent,
    retrying nothing. ``auth`` is set on it when given (libraries set their own otherwise)."""
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    s = requests.Session()
    adapter = TimeoutAdapter(timeout)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.headers["User-Agent"] = USER_AGENT
    if auth is not None:
        s.auth = auth
    return s


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets and without credentials embedded in URLs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    text = _CREDENTIAL_IN_QUERY.sub(r"\1[REDACTED]", text)
    return _CREDENTIAL_IN_AUTHORITY.sub(r"\1[REDACTED]@", text)


def excerpt(response: requests.Response, secrets: Iterable[str] = ()) -> str:
    """A short, one-line, secret-free excerpt of an answer's body.

    Understands the error bodies of the three services (Heroku and the Data API's ``{"id",
    "message"}``, Bitbucket's ``{"type": "error", "error": {"message", "detail"}}``); anything else
    is shown as text.
    """
    try:
        raw = response.text
    except Exception:  # undecodable body: the status says enough
        return ""
    text = raw
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
            if error.get("detail"):
                text += f" ({error['detail']})"
            if error.get("fields"):
                text += f" {json.dumps(error['fields'], sort_keys=True)}"
        elif body.get("message"):
            text = f"{body['id']}: {body['message']}" if body.get("id") else str(body["message"])
        elif isinstance(error, str):
            text = error
    text = " ".join(redact(text, secrets).split())
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 3] + "..."


def retry_after(headers: Mapping[str, str], default: float, now: float | None = None) -> float:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date), ``RateLimit-Reset`` (seconds)
    or ``X-RateLimit-Reset`` (seconds, or a Unix time); ``default`` when none says. Bounded to
    1 second .. 1 hour."""
    current = time.time() if now is None else now
    for name in ("Retry-After", "RateLimit-Reset", "X-RateLimit-Reset"):
        value = headers.get(name)
        if not value:
            continue
        seconds: float | None
        try:
            seconds = float(value.strip())
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - current
            except (TypeError, ValueError, IndexError):
                seconds = None
        else:
            if seconds > 1e9:  # a Unix time, not a delay
                seconds -= current
        if seconds is not None and math.isfinite(seconds):
            return min(max(seconds, 1.0), MAX_RETRY_AFTER)
    return default


def error_for(
    service: str,
    what: str,
    failure: requests.Response | requests.RequestException,
    *,
    credential: str = "",
    secrets: Iterable[str] = (),
) -> ExternalError:
    """The error to raise for ``failure`` (an unsuccessful answer, or the exception a request
    raised) while doing ``what`` ("reading branch develop"). ``credential`` names the environment
    variable holding the key that was used; ``secrets`` are scrubbed from the evidence.

    Callers write ``raise error_for(...) from exc``.
    """
    secrets = tuple(secrets)
    response = failure if isinstance(failure, requests.Response) else failure.response
    if response is not None:
        return _for_response(service, what, response, credential, secrets)
    assert isinstance(failure, requests.RequestException)
    kind = type(failure).__name__
    if isinstance(failure, requests.Timeout):
        return Temporary(service, f"no answer in time while {what} ({kind})", retry_after=SERVER_RETRY)
    if isinstance(failure, requests.exceptions.SSLError):
        return Permanent(service, f"the TLS handshake failed while {what} ({kind}); check the URL")
    if isinstance(failure, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return Temporary(service, f"the connection failed while {what} ({kind})", retry_after=SERVER_RETRY)
    if isinstance(
        failure,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.URLRequired,
    ):
        return Permanent(service, f"the URL is not usable while {what} ({kind}); check the configuration")
    return Temporary(service, f"the request failed while {what} ({kind})", retry_after=SERVER_RETRY)


def _for_response(
    service: str, what: str, response: requests.Response, credential: str, secrets: tuple[str, ...]
) -> ExternalError:
    status = response.status_code
    evidence = excerpt(response, secrets)
    key = credential or "the credentials"
    if status == 429:
        wait = retry_after(response.headers, RATE_LIMIT_RETRY)
        return Temporary(
            service, f"rate limited while {what}", status=status, evidence=evidence, retry_after=wait
        )
    if status >= 500:
        wait = retry_after(response.headers, SERVER_RETRY)
        return Temporary(
            service, f"server error while {what}", status=status, evidence=evidence, retry_after=wait
        )
    if status == 401:
        message = f"{key} was refused while {what}: check that it is set, valid and not expired"
        return Permanent(service, message, status=status, evidence=evidence)
    if status == 403:
        message = f"{key} is not allowed to do this ({what}): check its permissions"
        return Permanent(service, message, status=status, evidence=evidence)
    if status == 404:
        return NotFound(service, f"not found while {what}", status=status, evidence=evidence)
    if status >= 400:
        return Permanent(service, f"refused while {what}", status=status, evidence=evidence)
    return Permanent(service, f"unexpected answer while {what}", status=status, evidence=evidence)


def parse_time(value: str) -> datetime:
    """An aware UTC datetime from ISO 8601 (``2024-05-01T12:00:00.123456+00:00``, ``...Z``, any
    number of fraction digits) or the Data API's ``2026-11-24 07:54:24 +0000``.

    Raises ValueError on anything else.
    """
    text = value.strip()
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        text = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_optional_time(value: object) -> datetime | None:
    """``parse_time`` for a field that may be missing or null."""
    return parse_time(value) if isinstance(value, str) and value else None


@contextmanager
def calling(service: str, what: str, *, credential: str, secrets: Iterable[str]) -> Iterator[None]:
    """Around a call: what it raises becomes ours - a failed request through ``error_for``, a
    surprise in the answer's shape (or a client library's type check) through ``reading``."""
    with reading(service, what):
        try:
            yield
        except requests.RequestException as exc:
            raise error_for(service, what, exc, credential=credential, secrets=secrets) from exc


@contextmanager
def reading(service: str, what: str) -> Iterator[None]:
    """Turn a surprise in an answer's shape (a missing field, a wrong type, a bad date) into a
    ``Permanent`` error naming ``what`` was being read."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise Permanent(service, f"unexpected answer while {what}", evidence=detail[:EVIDENCE_CHARS]) from exc
