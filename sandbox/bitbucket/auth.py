"""How a request proves who it is, on each host of the Bitbucket stand-in (401 otherwise).

The REST API (``api.bitbucket.org``):

- ``Basic base64(email:api_token)``: a person, by the Atlassian account e-mail. The Bitbucket
  username in its place is refused, as is an access token sent as Basic.
- ``Bearer <access token>``: the token's bot account. An API token sent as Bearer is refused with
  "Token is invalid, expired, or not supported for this endpoint.".

The website (``bitbucket.org``): the source archive takes ``Basic`` with the username or the
e-mail and the API token; git over HTTPS takes ``Basic`` with the username or
``x-bitbucket-api-token-auth`` and an API token, or ``x-token-auth`` and an access token (the
e-mail is refused there). Bearer is refused on the website. Every 401 carries
``WWW-Authenticate: Basic realm="Bitbucket.org HTTP"`` so that git asks for credentials.

Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from sandbox.bitbucket.errors import ApiError
from sandbox.bitbucket.users import User

WWW_AUTHENTICATE = 'Basic realm="Bitbucket.org HTTP"'
BEARER_REFUSED = "Token is invalid, expired, or not supported for this endpoint."
API_TOKEN_GIT_USER = "x-bitbucket-api-token-auth"
ACCESS_TOKEN_GIT_USER = "x-token-auth"


def unauthorized(message: str = "Authentication required", detail: str | None = None) -> ApiError:
    return ApiError(401, message, detail, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def _same(secret: str, offered: str) -> bool:
    return hmac.compare_digest(secret.encode(), offered.encode())


def _scheme(header: str | None) -> tuple[str, str]:
    """(lower-case scheme, credential); 401 when there is no header."""
    if not header or not header.strip():
        raise unauthorized()
    scheme, _, credential = header.strip().partition(" ")
    return scheme.lower(), credential.strip()


def _basic(credential: str) -> tuple[str, str]:
    try:
        name, _, password = base64.b64decode(credential, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        detail = "The Basic credentials are not base64 of 'user:token'."
        raise unauthorized("Invalid credentials", detail) from None
    return name, password


def api_account(header: str | None, users: Iterable[User], bots: Iterable[User]) -> tuple[User, str]:
    """The account an ``Authorization`` header proves on the REST API, and the scheme used
    (``basic``/``bearer``); a 401 ApiError otherwise."""
    scheme, credential = _scheme(header)
    if scheme == "bearer":
        for bot in bots:
            if _same(bot["token"], credential):
                return bot, scheme
        raise unauthorized(BEARER_REFUSED)
    if scheme == "basic":
        name, password = _basic(credential)
        for user in users:
            if name.lower() == user["email"].lower() and _same(user["token"], password):
                return user, scheme
        raise unauthorized(
            "Invalid credentials",
            "Basic authentication takes the Atlassian account e-mail and an API token.",
        )
    raise unauthorized("Invalid credentials", f"Unsupported authorization scheme {scheme!r}.")


def archive_account(header: str | None, users: Iterable[User]) -> User:
    """The person a source-archive download proves: Basic with username or e-mail and API token."""
    scheme, credential = _scheme(header)
    if scheme != "basic":
        raise unauthorized("Invalid credentials", "The website takes Basic authentication only.")
    name, password = _basic(credential)
    for user in users:
        named = name == user["username"] or name.lower() == user["email"].lower()
        if named and _same(user["token"], password):
            return user
    raise unauthorized("Invalid credentials")


def git_account(header: str | None, users: Iterable[User], bots: Iterable[User]) -> User:
    """The account a git request over HTTPS proves (see the module docstring)."""
    scheme, credential = _scheme(header)
    if scheme != "basic":
        raise unauthorized("Invalid credentials", "Git over HTTPS takes Basic authentication only.")
    name, password = _basic(credential)
    if name == ACCESS_TOKEN_GIT_USER:
        for bot in bots:
            if _same(bot["token"], password):
                return bot
        raise unauthorized("Invalid credentials")
    for user in users:
        if name in (user["username"], API_TOKEN_GIT_USER) and _same(user["token"], password):
            return user
    raise unauthorized("Invalid credentials")
