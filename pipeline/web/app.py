"""The Flask application ``pipeline serve`` runs: Bitbucket's webhooks and a health check.

- ``POST /webhooks/bitbucket``: the raw body and the headers go to ``WebhookReceiver.receive``;
  its ``Answer`` is the response (status and JSON).
- ``GET /healthz``: 200 and ``health()`` as JSON.
- Anything else: JSON 404 (no such path) or 405 (another method), with an ``Allow`` header.

``MAX_CONTENT_LENGTH`` is the receiver's ``max_body``: a larger body is answered 413 before it is
read when its size is announced (``Content-Length``); a streamed (chunked) one is read up to the
limit and no further, and answered 413 when it reaches it (werkzeug cannot tell a streamed body of
exactly the limit from a longer one, so such a body must stay below it; the server must set
``wsgi.input_terminated`` or werkzeug reads no streamed body at all). Behind waitress, which bounds
and dechunks a body itself and hands it over with its ``Content-Length``, those checks are a second
line. Every error,
an exception in ``health()`` included, is answered as JSON ``{"error", "detail"}``; an exception's
text is logged, not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pipeline.web.webhooks import WebhookReceiver

log = logging.getLogger("pipeline.web.app")

WEBHOOK_PATH = "/webhooks/bitbucket"
HEALTH_PATH = "/healthz"


def _json(status: int, body: dict[str, Any]) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    return response


def create_app(receiver: WebhookReceiver, health: Callable[[], dict[str, Any]]) -> flask.Flask:
    """The application; building it sends nothing and starts nothing."""
    app = flask.Flask("pipeline.web")
    app.config["MAX_CONTENT_LENGTH"] = receiver.max_body

    @app.post(WEBHOOK_PATH)
    def bitbucket_webhook() -> flask.Response:
        request = flask.request
        body = request.get_data(cache=False)  # 413 (an HTTPException) when announced too large
        if request.content_length is None and len(body) >= receiver.max_body:
            # werkzeug stops reading a streamed body at the limit without saying whether more came
            raise RequestEntityTooLarge(f"a streamed body may hold fewer than {receiver.max_body} bytes")
        headers = dict(request.headers.items())
        answer = receiver.receive(headers, body)
        return _json(answer.status, answer.body)

    @app.get(HEALTH_PATH)
    def healthz() -> flask.Response:
        return _json(200, health())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> flask.Response:
        status = exc.code or 500
        response = _json(status, {"error": (exc.name or "error").lower(), "detail": exc.description or ""})
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> flask.Response:
        log.exception("%s %s failed", flask.request.method, flask.request.path)
        return _json(500, {"error": "internal server error", "detail": "see the controller's log"})

    return app
