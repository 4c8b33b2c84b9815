"""The seeded accounts: five people with Atlassian API tokens, and access tokens acting as bots.

Five users: ``dev`` (a developer), ``po`` (the Product Owner), ``ops``, ``controller`` (the release
controller's service account) and ``readonly`` (read access only). Each has a Bitbucket-like
display name, ``{uuid}``, ``account_id``, ``nickname``, an e-mail (``<user>@whisper.example``: the
user name of Basic auth with the API token, and what links commit authors to accounts) and an
Atlassian API token carrying Atlassian's granular Bitbucket scopes (``USER_SCOPES``).

Access tokens (a repository access token for one repository, a workspace access token for a whole
workspace) carry the classic OAuth scopes (``ACCESS_TOKEN_SCOPES``) and each acts as its own bot
account: an ``app_user`` whose display name is the token's name, with a ``{uuid}`` and an
``account_id`` but no nickname. Bots are keyed by a handle starting with ``bot:`` so that they
never collide with a username. Everything is made once, at seed time, and persisted.

How a request proves who it is lives in ``auth``; which scopes an endpoint needs in ``scopes``.
"""

from __future__ import annotations

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
BOT_EMAIL_DOMAIN = "bots.whisper.example"
BOT_PREFIX = "bot:"

# Atlassian's granular scopes of an API token made for Bitbucket.
USER_SCOPES: tuple[str, ...] = (
    "read:user:bitbucket",
    "read:workspace:bitbucket",
    "read:repository:bitbucket",
    "write:repository:bitbucket",
    "read:pullrequest:bitbucket",
    "write:pullrequest:bitbucket",
    "read:webhook:bitbucket",
    "write:webhook:bitbucket",
)
# The classic scopes of the seeded access tokens (there is no ``account`` scope for them).
ACCESS_TOKEN_SCOPES: tuple[str, ...] = (
    "repository",
    "repository:write",
    "pullrequest",
    "pullrequest:write",
    "webhook",
)
ACCESS_TOKEN_KINDS = ("repository", "workspace")
# x-credential-type of each kind of access token
CREDENTIAL_TYPES = {"repository": "repo_access_token", "workspace": "workspace_access_token"}


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
        "scopes": list(USER_SCOPES),
        "can_write": can_write,
        "created_on": created_on,
    }


def new_access_token(
    key: str,
    kind: str,
    name: str,
    scopes: list[str],
    created_on: str,
    *,
    workspace: str,
    repository: str | None,
) -> User:
    """An access token and the bot account it acts as, keyed ``bot:<key>``.

    ``kind`` is ``repository`` (``repository`` names the one repository it reaches) or
    ``workspace`` (every repository of ``workspace``).
    """
    if kind not in ACCESS_TOKEN_KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(ACCESS_TOKEN_KINDS)}")
    if (kind == "repository") != (repository is not None):
        raise ValueError("a repository access token names its repository; a workspace one does not")
    bot_uuid = str(uuid.uuid4())
    return {
        "username": BOT_PREFIX + key,
        "key": key,
        "kind": kind,
        "display_name": name,
        "uuid": "{" + bot_uuid + "}",
        "account_id": "712020:" + str(uuid.uuid4()),
        "email": f"{bot_uuid}@{BOT_EMAIL_DOMAIN}",
        "token": "ATCTT3x" + secrets.token_urlsafe(32),
        "scopes": list(scopes),
        "workspace": workspace,
        "repository": repository,
        "can_write": True,  # what it may do is bounded by its scopes
        "created_on": created_on,
    }


def is_bot(account: User) -> bool:
    return str(account["username"]).startswith(BOT_PREFIX)


def credential_type(account: User) -> str | None:
    """``repo_access_token`` / ``workspace_access_token`` for a bot, None for a person."""
    return CREDENTIAL_TYPES.get(account.get("kind", "")) if is_bot(account) else None


def reaches(account: User, workspace: str, slug: str | None = None) -> bool:
    """Whether ``account`` can see ``workspace`` (and its repository ``slug``). Every person of the
    sandbox is a member of its workspace; an access token sees only what it was made for."""
    if not is_bot(account):
        return True
    if account["workspace"] != workspace:
        return False
    return account["kind"] == "workspace" or slug is None or account["repository"] == slug


# People with admin access to the sandbox's repositories: the controller's account (it manages the
# repository's webhook, which Bitbucket lets only admins do) and ops.
ADMINS = frozenset({"controller", "ops"})


def permission(account: User) -> str:
    """A person's permission on the repositories of the sandbox: ``admin``, ``write`` or ``read``."""
    if account["username"] in ADMINS and not is_bot(account):
        return "admin"
    return "write" if account["can_write"] else "read"


def require_admin(user: User, full_name: str) -> None:
    """A 403 for a person who is no admin of ``full_name`` (an access token's scopes decide for it)."""
    if not is_bot(user) and permission(user) != "admin":
        raise ApiError(
            403,
            "Forbidden",
            f"{user['display_name']} has {permission(user)} access to {full_name}; managing webhooks "
            "needs admin access.",
        )


def require_write(user: User, full_name: str) -> None:
    """A 403 for an account that may only read ``full_name``."""
    if not user["can_write"]:
        raise ApiError(
            403,
            "Forbidden",
            f"{user['display_name']} has read access to {full_name}; this action needs write access.",
        )
