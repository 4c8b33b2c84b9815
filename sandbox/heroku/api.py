"""The Platform API's app (Flask), answering like api.heroku.com: the wire rules, the error answers,
and the request helpers the ``routes_*`` modules share; those modules add the routes, by resource.

Every API request passes the wire rules first (``sandbox.heroku.wire``): Accept (406), auth (401),
the two-factor switch (403 ``two_factor`` while ``HerokuPlatform.require_two_factor(True)``), then
the account's budget (429; ``GET /account/rate-limits`` costs nothing). Every response
carries ``RateLimit-Remaining`` and ``Request-Id``. ``/blobs/...`` (the S3 URLs of sources and
slugs) and ``/streams/...`` (build and release output) need no Accept nor auth: they are
capability URLs carrying a token, as on Heroku.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from sandbox.heroku.state import Record, Store
from sandbox.heroku.wire import (
    ENDPOINT_NOT_FOUND,
    RATE_LIMIT_MESSAGE,
    TWO_FACTOR_MESSAGE,
    TWO_FACTOR_URL,
    ApiError,
    acceptable,
    json_response,
    not_found,
    page,
    parse_range,
    request_id,
    token_from,
)
from sandbox.server import json_object

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform


def json_body() -> dict[str, Any]:
    """The request's JSON object ({} for an empty body); 400 bad_request when it is not one."""
    try:
        return json_object(request.get_data())
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def find_app(store: Store, ident: str) -> Record:
    """The app ``ident`` names (its id or name); 404 not_found when there is none."""
    rec = store.find_app(ident)
    if rec is None:
        raise not_found("app")
    return rec


def listing(
    items: list[dict[str, Any]], fields: list[str], fields_map: dict[str, str] | None = None
) -> Response:
    """One page of ``items`` as the ``Range`` header asks (on one of ``fields``), with ``Accept-Ranges``.

    ``fields_map`` maps a range field to the attribute it orders on when the two differ (a build's
    ``started_at`` orders on its ``created_at``).
    """
    rng = parse_range(request.headers.get("Range"), fields)
    chunk, headers, status = page(items, rng, fields_map)
    headers["Accept-Ranges"] = ", ".join(fields)
    return json_response(chunk, status, headers)


def create_app(platform: HerokuPlatform) -> Flask:
    """The app with the wire rules and error answers; the routes modules add the routes."""
    app = Flask(__name__, root_path=str(Path(__file__).parent))

    # -- wire rules ------------------------------------------------------------------------------

    @app.before_request
    def wire_rules() -> Response | None:
        path = request.path
        if path.startswith(("/blobs/", "/streams/")):
            return None
        if not acceptable(request.headers.get("Accept")):
            raise ApiError(
                406,
                "not_acceptable",
                "Please specify a version along with Heroku's API MIME type. For example, "
                "`Accept: application/vnd.heroku+json; version=3`.",
            )
        token = token_from(request.headers.get("Authorization"))
        if token is None or not platform.check_api_key(token):
            raise ApiError(401, "unauthorized", "Invalid credentials provided.")
        if platform.two_factor_required:
            raise ApiError(403, "two_factor", TWO_FACTOR_MESSAGE, url=TWO_FACTOR_URL)
        if path.rstrip("/") != "/account/rate-limits" and not platform.budget.spend():
            raise ApiError(429, "rate_limit", RATE_LIMIT_MESSAGE)
        return None

    @app.after_request
    def common_headers(response: Response) -> Response:
        response.headers["RateLimit-Remaining"] = str(platform.budget.remaining())
        response.headers["Request-Id"] = request_id()
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return json_response(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code in (404, 405):
            return json_response({"id": "not_found", "message": ENDPOINT_NOT_FOUND}, 404)
        return json_response(
            {"id": "bad_request", "message": exc.description or "Bad request."}, exc.code or 400
        )

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        app.logger.exception("the Heroku stand-in failed")
        return json_response({"id": "internal_server_error", "message": f"Internal server error: {exc}"}, 500)

    return app
