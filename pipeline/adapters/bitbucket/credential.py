"""How the controller proves who it is to Bitbucket, the way Atlassian documents each credential.

- An Atlassian account **API token** (``BITBUCKET_TOKEN`` with ``BITBUCKET_EMAIL``): REST calls send
  Basic ``email:token``, the account's e-mail as user name (sent as Bearer it is refused); git over
  HTTPS takes ``x-bitbucket-api-token-auth`` (or the Bitbucket username) as user name.
- A **workspace, project or repository access token** (``BITBUCKET_TOKEN`` alone): REST calls send
  ``Bearer``; git over HTTPS takes ``x-token-auth``. It acts as a bot account, tied to no person; no
  ``account`` scope exists for it, so ``GET /2.0/user`` and workspace members are not to be relied on.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum

from requests.auth import AuthBase, HTTPBasicAuth

from pipeline.adapters import http

GIT_USER_API_TOKEN = "x-bitbucket-api-token-auth"
GIT_USER_ACCESS_TOKEN = "x-token-auth"


class CredentialKind(StrEnum):
    API_TOKEN = "api_token"
    ACCESS_TOKEN = "access_token"


@dataclass(frozen=True)
class BitbucketCredential:
    """``token`` with ``email``: an API token; without: an access token. ``repr`` hides the token."""

    token: str = field(repr=False)
    email: str | None = None

    @property
    def kind(self) -> CredentialKind:
        return CredentialKind.API_TOKEN if self.email else CredentialKind.ACCESS_TOKEN

    @property
    def variables(self) -> str:
        """The environment variable that holds it, for messages (its e-mail is no secret)."""
        return "BITBUCKET_TOKEN"

    def describe(self) -> str:
        """What the credential is taken to be, for people (no secret)."""
        if self.email:
            return f"an Atlassian API token of {self.email} (sent as Basic email:token)"
        return "a workspace, project or repository access token (sent as Bearer)"

    def rest_auth(self) -> AuthBase:
        """What REST calls to ``api.bitbucket.org`` send."""
        if self.email:
            return HTTPBasicAuth(self.email, self.token)
        return http.BearerAuth(self.token)

    @property
    def git_user(self) -> str:
        """The user name git over HTTPS takes with this token."""
        return GIT_USER_API_TOKEN if self.email else GIT_USER_ACCESS_TOKEN

    def git_header(self) -> str:
        """The ``Authorization`` header git sends to the website host (Basic: git user and token)."""
        pair = f"{self.git_user}:{self.token}".encode()
        return "Authorization: Basic " + base64.b64encode(pair).decode()
