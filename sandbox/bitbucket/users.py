"""The seeded accounts and how a request proves who it is.

Five users: ``dev`` (a developer), ``po`` (the Product Owner), ``ops``, ``controller`` (the release
controller's service account) and ``readonly`` (read access only). Each has a Bitbucket-like
display name, ``{uuid}``, ``account_id``, ``nickname``, an email (used for Basic auth and to link
commit authors to accounts) and an API token. Tokens are made once, at seed time, and persisted.

A request authenticates with ``Authorization: Bearer <token>`` or ``Basic`` with the username
(or email) and the token as password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import uuid
from typing import Any

from sandbox.bitbucket.errors import ApiError

User = dict[str, Any]

SEED_USERS: tuple[tuple[str, str, bool], ...] = (
    ("dev", "Dana Developer", True),
    ("po", "Priya Owner", True),
    ("ops", "Oscar Ops", True),
    ("controller", "Release Controller", True),
    ("readonly", "Rita Reader", False),
)
EMAIL_DOMAIN = "whisper.example"
WWW_AUTHENTICATE = 'Basic realm="Bitbucket.org HTTP"'


def new_user(username: str, display_name: str, can_write: bool, created_on: str) -> User:
    """A fresh account record (what the state file stores; never rendered as is)."""
    return {
        "username": username,
        "display_name": display_name,
        "uuid": "{" + str(uuid.uuid4()) + "}",
        "account_id": "712020:" + str(uuid.uuid4()),
        "nickname": username,
        "email": f"{username}@{EMAIL_DOMAIN}",
        "token": "ATATT3x" + secrets.token_urlsafe(32),
        "can_write": can_write,
        "created_on": created_on,
    }


def unauthorized(detail: str | None = None) -> ApiError:
    return ApiError(
        401,
        "Authentication required" if detail is None else "Invalid credentials",
        detail,
        headers={"WWW-Authenticate": WWW_AUTHENTICATE},
    )


def authenticate(header: str | None, users: dict[str, User]) -> User:
    """The user an ``Authorization`` header proves, or a 401 ApiError."""
    if not header:
        raise unauthorized()
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer":
        for user in users.values():
            if hmac.compare_digest(user["token"].encode(), credential.encode()):
                return user
        raise unauthorized("Token is invalid, expired, or not supported for this endpoint.")
    if scheme.lower() == "basic":
        try:
            name, _, password = base64.b64decode(credential, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized("The Basic credentials are not base64 of 'username:token'.") from None
        for user in users.values():
            named = name == user["username"] or name.lower() == user["email"].lower()
            if named and hmac.compare_digest(user["token"].encode(), password.encode()):
                return user
        raise unauthorized("Username or API token is wrong.")
    raise unauthorized(f"Unsupported authorization scheme {scheme!r}; use Bearer or Basic.")


def require_write(user: User, full_name: str) -> None:
    """A 403 for an account that may only read ``full_name``."""
    if not user["can_write"]:
        raise ApiError(
            403,
            "Forbidden",
            f"{user['display_name']} has read access to {full_name}; this action needs write access.",
        )
