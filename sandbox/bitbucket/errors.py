"""Bitbucket's error answers: ``{"type": "error", "error": {"message", "detail"?, "fields"?}}``.

``detail`` is usually a sentence; the 403 of a missing scope makes it an object
(``{"granted": [...], "required": [...]}``).

Handlers raise ``ApiError``; the app turns it into the JSON body Bitbucket sends. ``fields`` maps a
field name to a list of messages, as Bitbucket does for validation errors
(``{"title": ["This field is required."]}``).
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

RATE_LIMIT_TEXT = "Rate limit for this resource has been exceeded"
REPOSITORY_NOT_FOUND = (
    "You may not have access to this repository or it no longer exists in this workspace. If you think "
    "this repository exists and you have access, make sure you are authenticated."
)
NO_API_DETAIL = (
    "There is no API hosted at this URL.\n\nFor information about our API's, please refer to the "
    "documentation at: https://developer.atlassian.com/bitbucket/api/2/reference/"
)


class ApiError(Exception):
    """An error answer: HTTP ``status`` and Bitbucket's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: str | dict[str, Any] | None = None,
        fields: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        if self.fields is not None:
            error["fields"] = self.fields
        return {"type": "error", "error": error}

    def response(self) -> Response:
        resp = Response(json.dumps(self.body()), status=self.status, mimetype="application/json")
        for key, value in self.headers.items():
            resp.headers[key] = value
        return resp


def field_error(field: str, problem: str, status: int = 400) -> ApiError:
    """A 400 naming the field at fault, the way Bitbucket words it: ``"title: This field is required."``."""
    return ApiError(status, f"{field}: {problem}", fields={field: [problem]})


def required(field: str) -> ApiError:
    return field_error(field, "This field is required.")


def not_found(message: str, detail: str | None = None) -> ApiError:
    return ApiError(404, message, detail)


def bad_request(message: str, detail: str | None = None) -> ApiError:
    return ApiError(400, message, detail)


def text_response(exc: ApiError) -> Response:
    """``exc`` as the website host answers it: plain text, the same status and headers."""
    text = exc.message if exc.detail is None else f"{exc.message}\n{exc.detail}"
    resp = Response(text + "\n", status=exc.status, mimetype="text/plain")
    for key, value in exc.headers.items():
        resp.headers[key] = value
    return resp


def rate_limited() -> Response:
    """Bitbucket's 429: plain text, no Retry-After."""
    return Response(RATE_LIMIT_TEXT, status=429, mimetype="text/plain")
