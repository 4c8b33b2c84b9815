"""The HTTP surface: the Flask app, authentication, rate limiting, errors, and request helpers.

Every request must authenticate (Bearer token, or Basic with username/email and token): 401
otherwise. Anything but GET/HEAD needs write access (403 for ``readonly``), except taking part in
a review, which Bitbucket Cloud allows anyone who can read the repository: approving,
unapproving, requesting changes and commenting on a pull request. Requests under
``/2.0/repositories/`` spend the user's rolling-hour budget and carry the ``X-RateLimit-*``
headers. Unknown URLs, wrong methods, malformed JSON and crashes all answer with Bitbucket's
error body. A trailing slash is accepted everywhere, as Bitbucket does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from sandbox.bitbucket.errors import NO_API_DETAIL, ApiError, bad_request, rate_limited
from sandbox.bitbucket.users import User, authenticate, require_write
from sandbox.server import json_object

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

log = logging.getLogger("sandbox.bitbucket")
READ_METHODS = ("GET", "HEAD", "OPTIONS")
# What a reader may do: review a pull request (approve, request changes, comment).
REVIEW_ACTION = re.compile(
    r"^/2\.0/repositories/[^/]+/[^/]+/pullrequests/\d+/(approve|request-changes|comments)(/\d+)?/?$"
)


def current_user() -> User:
    user: User = flask.g.user
    return user


def json_body() -> dict[str, Any]:
    """The request's JSON object ({} for an empty body); 400 when it is not a JSON object."""
    try:
        return json_object(flask.request.get_data())
    except ValueError as exc:
        raise bad_request("Bad request", str(exc)) from None


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    resp = flask.Response(json.dumps(body), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _strip_trailing_slash(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if len(path) > 1 and path.endswith("/"):
            environ["PATH_INFO"] = path.rstrip("/") or "/"
        return app(environ, start_response)

    return wrapped


def create_app(bb: BitbucketCloud) -> flask.Flask:
    """The app with auth, rate limiting and error handling; the routes modules add the routes."""
    here = str(Path(__file__).resolve().parent)
    app = flask.Flask("sandbox.bitbucket", root_path=here, instance_path=here)
    app.url_map.strict_slashes = False
    app.wsgi_app = _strip_trailing_slash(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def _authenticate() -> flask.Response | None:
        with bb.lock:
            users = dict(bb.store.users)
        flask.g.user = authenticate(flask.request.headers.get("Authorization"), users)
        path = flask.request.path
        if path.startswith("/2.0/repositories/"):
            allowed, remaining = bb.limiter.spend(flask.g.user["username"])
            flask.g.rate_headers = bb.limiter.headers(remaining)
            if not allowed:
                resp = rate_limited()
                resp.headers.update(flask.g.rate_headers)
                return resp  # type: ignore[return-value]
        if flask.request.method not in READ_METHODS and not REVIEW_ACTION.match(path):
            parts = path.strip("/").split("/")
            target = "/".join(parts[2:4]) if parts[:2] == ["2.0", "repositories"] else path
            require_write(flask.g.user, target)
        return None

    @app.after_request
    def _rate_headers(resp: flask.Response) -> flask.Response:
        for key, value in getattr(flask.g, "rate_headers", {}).items():
            resp.headers[key] = value
        return resp

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> flask.Response:
        resp = exc.response()
        return resp  # type: ignore[return-value]

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> flask.Response:
        return answer(ApiError(404, "Resource not found", NO_API_DETAIL).body(), 404)

    @app.errorhandler(MethodNotAllowed)
    def _method(exc: MethodNotAllowed) -> flask.Response:
        allowed = ", ".join(sorted(exc.valid_methods or []))
        body = ApiError(
            405, "Method not allowed", f"{flask.request.method} is not allowed here; allowed: {allowed}."
        ).body()
        return answer(body, 405, {"Allow": allowed})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> flask.Response:
        return answer(ApiError(exc.code or 500, exc.name, exc.description).body(), exc.code or 500)

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> flask.Response:
        log.exception("bitbucket stand-in crashed on %s %s", flask.request.method, flask.request.path)
        return answer(ApiError(500, "Something went wrong", f"{type(exc).__name__}: {exc}").body(), 500)

    return app
