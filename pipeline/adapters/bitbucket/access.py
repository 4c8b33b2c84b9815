"""What the controller's Bitbucket credential may do, for ``pipeline credentials check``: each
permission the release path needs, the OAuth scope Bitbucket's API asks for it (the ``security`` of
the operation in Bitbucket's OpenAPI), the same scope as Atlassian's API tokens name it, and the
access to the repository its account needs (an access token's scopes are all it has).

Bitbucket says which scopes a credential has in the ``x-oauth-scopes`` header of its answers, and
what kind of credential it took in ``x-credential-type`` (access tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.model import PermissionCheck

# Classic scope -> the API token scope that grants it. Unlike classic scopes, an API token's write
# scope does not grant the read (Atlassian's "API token permissions"): each is named.
GRANULAR: dict[str, tuple[str, ...]] = {
    "repository": ("read:repository:bitbucket",),
    "repository:write": ("write:repository:bitbucket",),
    "pullrequest": ("read:pullrequest:bitbucket",),
    "pullrequest:write": ("write:pullrequest:bitbucket",),
    "webhook": ("read:webhook:bitbucket", "write:webhook:bitbucket"),
    "account": ("read:user:bitbucket", "read:workspace:bitbucket"),
}
# A classic scope implied by a wider one (access tokens' scopes).
IMPLIED: dict[str, tuple[str, ...]] = {
    "repository": ("repository:write", "repository:admin"),
    "repository:write": ("repository:admin",),
    "pullrequest": ("pullrequest:write",),
}
# A repository permission and what it includes.
PERMISSIONS = ("read", "write", "admin")


@dataclass(frozen=True)
class Need:
    """One thing the release path needs Bitbucket to allow: its name for people, the classic scope
    (and the API token scope that grants it when it is a write), and the account's access to the
    repository (``read``, ``write`` or ``admin``)."""

    name: str
    scope: str
    permission: str
    write_scope: str = ""  # the API token scope to name when this is a write

    def granular(self) -> str:
        return self.write_scope or GRANULAR[self.scope][0]


NEEDS: tuple[Need, ...] = (
    Need("read the repository", "repository", "read"),
    Need("read its pull requests", "pullrequest", "read"),
    Need("post commit statuses", "repository", "write"),
    Need("comment on pull requests", "pullrequest", "read"),
    Need("create branches", "repository:write", "write"),
    Need("open and update pull requests", "pullrequest:write", "write"),
    Need("merge and decline pull requests", "pullrequest:write", "write"),
    Need("manage webhooks", "webhook", "admin", write_scope="write:webhook:bitbucket"),
)
# Only when an approver is written as a nickname: who in the workspace it designates.
MEMBERS = Need("read the workspace's members", "account", "read", write_scope="read:workspace:bitbucket")


@dataclass(frozen=True)
class Access:
    """What one look at the credential showed: its scopes (None: Bitbucket named none, as for an
    API token made without scopes, which has its account's access), the kind Bitbucket took it
    for, and the account's permission on the repository (None: not readable with it)."""

    scopes: frozenset[str] | None
    credential_type: str
    permission: str | None

    def has_scope(self, scope: str) -> bool:
        if self.scopes is None:
            return True
        if scope == "webhook" and any(s.endswith(":bitbucket") for s in self.scopes):
            # Managing webhooks reads and writes them: an API token needs both scopes.
            return {"read:webhook:bitbucket", "write:webhook:bitbucket"} <= self.scopes
        granted = {scope, *IMPLIED.get(scope, ()), *GRANULAR.get(scope, ())}
        return bool(granted & self.scopes)

    def has_permission(self, wanted: str) -> bool | None:
        """True/False by the account's permission; None when it could not be read."""
        if self.permission is None:
            return None
        return PERMISSIONS.index(self.permission) >= PERMISSIONS.index(wanted)


def scopes_of(header: str | None) -> frozenset[str] | None:
    """The scopes an ``x-oauth-scopes`` header names (None when there is no such header)."""
    if header is None:
        return None
    return frozenset(s.strip() for s in header.replace(",", " ").split() if s.strip())


def judge(
    variables: str,
    kind: str,
    access: Access,
    account: str,
    repository: str,
    needs: tuple[Need, ...],
) -> list[PermissionCheck]:
    """A line per need: granted when the credential has the scope and its account the access
    (an access token has no account: its scopes are its access). ``account``: who it acts as."""
    lines = []
    for need in needs:
        scope_ok = access.has_scope(need.scope)
        permission_ok = access.has_permission(need.permission)
        if not scope_ok:
            has = ", ".join(sorted(access.scopes or ())) or "none"
            fix = (
                f"create an API token with the scope {need.granular()}"
                if kind == "api_token"
                else f"create an access token with the scope {need.scope}"
            )
            lines.append(
                PermissionCheck(
                    variables, need.name, False, f"needs the scope {need.scope} (it has: {has}): {fix}"
                )
            )
        elif permission_ok is False:
            lines.append(
                PermissionCheck(
                    variables,
                    need.name,
                    False,
                    f"{account} has {access.permission} access to {repository}; this needs "
                    f"{need.permission}: give {account} {need.permission} access to {repository}",
                )
            )
        else:
            via = f"scope {need.scope}" if access.scopes is not None else "no scope limit"
            if kind == "access_token":
                whose = "an access token's scopes are its access"
            elif access.permission:
                whose = f"{account} has {access.permission} access"
            else:
                whose = f"{account}'s access could not be read (no account scope): Bitbucket tells when used"
            lines.append(PermissionCheck(variables, need.name, True, f"{via}; {whose}"))
    return lines
