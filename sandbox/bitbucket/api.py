"""The REST API's HTTP surface: the Flask app, authentication, scopes, rate limiting, errors, and
request helpers.

Every request must authenticate (``Basic email:api_token`` for a person, ``Bearer`` for an access
token's bot; see ``auth``): 401 otherwise. Requests under ``/2.0/repositories/`` spend the
account's rolling-hour budget and carry the ``X-RateLimit-*`` headers. Then the credential must
hold the endpoint's scopes (``scopes``: 403 otherwise, and every authenticated answer says which
scopes were granted and accepted), an access token must have been made for the repository (404,
as for a repository one cannot see), and anything but GET/HEAD needs write access (403 for
``readonly``), except taking part in a review, which Bitbucket Cloud allows anyone who can read
the repository: approving, unapproving, requesting changes and commenting on a pull request.
Unknown URLs, wrong methods, malformed JSON and crashes all answer with Bitbucket's error body. A
trailing slash is accepted everywhere, as Bitbucket does.
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

from sandbox.bitbucket import scopes
from sandbox.bitbucket.auth import api_account
from sandbox.bitbucket.errors import (
    NO_API_DETAIL,
    REPOSITORY_NOT_FOUND,
    ApiError,
    bad_request,
    not_found,
    rate_limited,
)
from sandbox.bitbucket.users import User, credential_type, is_bot, reaches, require_admin, require_write
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
            users, bots = list(bb.store.users.values()), list(bb.store.bots.values())
        account, _ = api_account(flask.request.headers.get("Authorization"), users, bots)
        flask.g.user = account
        method, path = flask.request.method, flask.request.path
        rule = flask.request.url_rule
        needed = scopes.requirement(method, rule.rule) if rule is not None else None
        required = (needed.classic if is_bot(account) else needed.granular) if needed else ()
        flask.g.scope_headers = scopes.headers(
            account["scopes"], needed.classic if needed else (), credential_type(account)
        )
        if path.startswith("/2.0/repositories/"):
            allowed, remaining = bb.limiter.spend(account["username"])
            flask.g.rate_headers = bb.limiter.headers(remaining)
            if not allowed:
                resp = rate_limited()
                resp.headers.update(flask.g.rate_headers)
                return resp  # type: ignore[return-value]
        scopes.check(account["scopes"], required)
        parts = path.strip("/").split("/")
        in_repository = parts[:2] == ["2.0", "repositories"] and len(parts) >= 4
        if in_repository and not reaches(account, parts[2], parts[3]):
            raise not_found(REPOSITORY_NOT_FOUND)
        target = "/".join(parts[2:4]) if parts[:2] == ["2.0", "repositories"] else path
        if in_repository and len(parts) >= 5 and parts[4] == "hooks":
            require_admin(account, target)  # Bitbucket lets admins alone see and manage webhooks
        if method not in READ_METHODS and not REVIEW_ACTION.match(path):
            require_write(account, target)
        return None

    @app.after_request
    def _common_headers(resp: flask.Response) -> flask.Response:
        for key, value in getattr(flask.g, "rate_headers", {}).items():
            resp.headers[key] = value
        for key, value in getattr(flask.g, "scope_headers", {}).items():
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
