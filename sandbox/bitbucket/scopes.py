"""Which OAuth scopes each endpoint needs, and the 403 a credential lacking one gets.

``ENDPOINT_SCOPES`` is the one table: for each operation the stand-in serves, keyed by method and
the OpenAPI path, the classic scopes of that operation's ``security`` in Bitbucket's OpenAPI
(``tests/sandbox/test_bitbucket_scopes.py`` checks the two agree). Access tokens carry classic
scopes; Atlassian API tokens carry granular ones, derived here (``granular``): ``repository`` ->
``read:repository:bitbucket``, ``repository:write`` -> ``write:repository:bitbucket``, likewise
for ``pullrequest``; ``webhook`` -> ``read:webhook:bitbucket`` to read, ``write:webhook:bitbucket``
to change; ``account`` -> ``read:user:bitbucket``; and the workspace endpoints need
``read:workspace:bitbucket``. A write scope implies its read (``repository:write`` holds
``repository``); nothing else is implied.

Every authenticated answer carries ``x-oauth-scopes`` (the credential's scopes),
``x-accepted-oauth-scopes`` (the endpoint's classic scopes) and, for an access token,
``x-credential-type``. A credential without every required scope gets 403
``{"type": "error", "error": {"message": LACKING, "detail": {"granted": [...], "required": [...]}}}``
in its own family of names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.bitbucket.errors import ApiError

LACKING = "Your credentials lack one or more required privilege scopes."
_R = "/repositories/{workspace}/{repo_slug}"
_PR = f"{_R}/pullrequests/{{pull_request_id}}"

ENDPOINT_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    # accounts and workspaces
    ("GET", "/user"): ("account",),
    ("GET", "/users/{selected_user}"): (),
    ("GET", "/user/permissions/repositories"): ("account", "repository"),
    ("GET", "/workspaces/{workspace}"): (),
    ("GET", "/workspaces/{workspace}/members"): ("account",),
    # repositories, branches, commits, source, statuses
    ("GET", "/repositories/{workspace}"): ("repository",),
    ("GET", _R): ("repository",),
    ("GET", f"{_R}/refs/branches"): ("repository",),
    ("POST", f"{_R}/refs/branches"): ("repository:write",),
    ("GET", f"{_R}/refs/branches/{{name}}"): ("repository",),
    ("DELETE", f"{_R}/refs/branches/{{name}}"): ("repository:write",),
    ("GET", f"{_R}/commits"): ("repository",),
    ("POST", f"{_R}/commits"): ("repository",),
    ("GET", f"{_R}/commits/{{revision}}"): ("repository",),
    ("POST", f"{_R}/commits/{{revision}}"): ("repository",),
    ("GET", f"{_R}/commit/{{commit}}"): ("repository",),
    ("POST", f"{_R}/src"): ("repository:write",),
    ("GET", f"{_R}/src/{{commit}}/{{path}}"): ("repository",),
    ("GET", f"{_R}/commit/{{commit}}/statuses"): ("repository",),
    ("POST", f"{_R}/commit/{{commit}}/statuses/build"): ("repository",),
    ("GET", f"{_R}/commit/{{commit}}/statuses/build/{{key}}"): ("repository",),
    ("PUT", f"{_R}/commit/{{commit}}/statuses/build/{{key}}"): ("repository",),
    # pull requests
    ("GET", f"{_R}/pullrequests"): ("pullrequest",),
    ("POST", f"{_R}/pullrequests"): ("pullrequest:write",),
    ("GET", _PR): ("pullrequest",),
    ("PUT", _PR): ("pullrequest:write",),
    ("POST", f"{_PR}/approve"): ("pullrequest:write",),
    ("DELETE", f"{_PR}/approve"): ("pullrequest:write",),
    ("POST", f"{_PR}/request-changes"): ("pullrequest:write",),
    ("DELETE", f"{_PR}/request-changes"): ("pullrequest:write",),
    ("POST", f"{_PR}/decline"): ("pullrequest:write",),
    ("POST", f"{_PR}/merge"): ("pullrequest:write",),
    ("GET", f"{_PR}/merge/task-status/{{task_id}}"): ("pullrequest",),
    ("GET", f"{_PR}/activity"): ("pullrequest",),
    ("GET", f"{_PR}/commits"): ("pullrequest",),
    ("GET", f"{_PR}/statuses"): ("pullrequest",),
    ("GET", f"{_PR}/comments"): ("pullrequest",),
    ("POST", f"{_PR}/comments"): ("pullrequest",),
    ("GET", f"{_PR}/comments/{{comment_id}}"): ("pullrequest",),
    # webhooks
    ("GET", f"{_R}/hooks"): ("webhook",),
    ("POST", f"{_R}/hooks"): ("webhook",),
    ("GET", f"{_R}/hooks/{{uid}}"): ("webhook",),
    ("PUT", f"{_R}/hooks/{{uid}}"): ("webhook",),
    ("DELETE", f"{_R}/hooks/{{uid}}"): ("webhook",),
}

# Classic read scope -> granular read scope; the write scopes map likewise.
_GRANULAR = {
    "repository": "read:repository:bitbucket",
    "repository:write": "write:repository:bitbucket",
    "pullrequest": "read:pullrequest:bitbucket",
    "pullrequest:write": "write:pullrequest:bitbucket",
    "account": "read:user:bitbucket",
}
_WORKSPACE_ENDPOINTS = frozenset({"/workspaces/{workspace}", "/workspaces/{workspace}/members"})
_USER_ENDPOINTS = frozenset({"/users/{selected_user}"})
# A Flask rule's variable names -> the OpenAPI's.
_PARAMETER_NAMES = {
    "slug": "repo_slug",
    "pr_id": "pull_request_id",
    "rev": "commit",
    "selected": "selected_user",
}
_VARIABLE = re.compile(r"<(?:[a-z]+:)?(\w+)>")
READ_METHODS = ("GET", "HEAD", "OPTIONS")
# what the repository permission of the git and archive routes of the website needs
GIT_READ = ("repository",)


@dataclass(frozen=True)
class Requirement:
    """What one endpoint needs, in both families of names."""

    classic: tuple[str, ...]
    granular: tuple[str, ...]


def openapi_path(rule: str) -> str:
    """``/2.0/repositories/<workspace>/<slug>`` -> ``/repositories/{workspace}/{repo_slug}``."""
    path = rule.removeprefix("/2.0")
    return _VARIABLE.sub(lambda m: "{" + _PARAMETER_NAMES.get(m.group(1), m.group(1)) + "}", path)


def granular(method: str, path: str, classic: tuple[str, ...]) -> tuple[str, ...]:
    """The granular scopes an API token needs where an access token needs ``classic``."""
    out: list[str] = []
    for scope in classic:
        if scope == "webhook":
            out.append("read:webhook:bitbucket" if method in READ_METHODS else "write:webhook:bitbucket")
        else:
            out.append(_GRANULAR[scope])
    if path in _WORKSPACE_ENDPOINTS:
        out.append("read:workspace:bitbucket")
    if path in _USER_ENDPOINTS:
        out.append("read:user:bitbucket")
    return tuple(dict.fromkeys(out))


def requirement(method: str, rule: str) -> Requirement | None:
    """What ``method`` on the Flask ``rule`` needs; None for a rule not in the table."""
    verb = "GET" if method in READ_METHODS else method
    path = openapi_path(rule)
    classic = ENDPOINT_SCOPES.get((verb, path))
    if classic is None:
        return None
    return Requirement(classic, granular(verb, path, classic))


def holds(scopes: list[str] | tuple[str, ...]) -> set[str]:
    """What ``scopes`` grant, a write scope granting its read too."""
    held = set(scopes)
    for scope in scopes:
        if scope.endswith(":write"):
            held.add(scope.removesuffix(":write"))
        if scope.startswith("write:"):
            held.add("read:" + scope.removeprefix("write:"))
    return held


def check(scopes: list[str], needed: tuple[str, ...]) -> None:
    """A 403 naming what was granted and what is required, unless ``scopes`` hold ``needed``."""
    if set(needed) <= holds(scopes):
        return
    raise ApiError(403, LACKING, {"granted": list(scopes), "required": list(needed)})


def headers(scopes: list[str], accepted: tuple[str, ...], credential_type: str | None) -> dict[str, str]:
    out = {"x-oauth-scopes": ", ".join(scopes), "x-accepted-oauth-scopes": ", ".join(accepted)}
    if credential_type is not None:
        out["x-credential-type"] = credential_type
    return out
