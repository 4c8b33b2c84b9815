"""The plumbing every Bitbucket call shares: atlassian-python-api's ``Cloud`` client, built with the
controller's credential on a session that cannot hang, its failures translated once into ours, and
paged lists read to a limit.

The client is built with ``backoff_and_retry`` and ``retry_with_header`` off: retrying (merges are
POSTs) is the controller's decision. Every failure becomes ``Temporary``/``Permanent`` through
``pipeline.adapters.http.error_for``; no message carries the token.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import requests
from atlassian.bitbucket import Cloud

from pipeline.adapters import http
from pipeline.adapters.bitbucket.credential import BitbucketCredential
from pipeline.errors import ExternalError, Permanent

SERVICE = "bitbucket"
PR_PAGELEN = 50  # Bitbucket's maximum for pull request lists
PAGELEN = 100  # and for the other lists
# Bitbucket's answer to a token of the wrong kind (an API token sent as Bearer).
NOT_SUPPORTED = "not supported for this endpoint"


class Client:
    """``ports.SourceControl`` for ``workspace/repository`` on Bitbucket Cloud (or a stand-in).

    ``url`` is the API root (``https://api.bitbucket.org``; a trailing ``/2.0`` is accepted),
    ``credential`` the controller's token (see ``credential.BitbucketCredential``). Every request
    waits at most ``timeout`` seconds to connect and between two bytes. Building one sends no
    request.
    """

    def __init__(
        self,
        url: str,
        credential: BitbucketCredential,
        workspace: str,
        repository: str,
        timeout: float = 30.0,
    ) -> None:
        root = url.rstrip("/").removesuffix("/2.0")
        self.workspace = workspace
        self.repository = repository
        self.credential = credential
        self._token = credential.token
        self._session = http.session(timeout)
        auth: dict[str, str] = (
            {"username": credential.email, "password": credential.token}
            if credential.email
            else {"token": credential.token}
        )
        self._cloud = Cloud(
            url=root,
            timeout=max(1, math.ceil(timeout)),
            session=self._session,
            backoff_and_retry=False,
            retry_with_header=False,
            **auth,
        )
        self._path = f"repositories/{quote(workspace, safe='')}/{quote(repository, safe='')}"
        self._repo: Any = None  # the library's Repository object, read once

    def __repr__(self) -> str:
        return f"BitbucketCloud({self.workspace}/{self.repository}, {self.credential.kind})"

    # -- plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Translate what a call raises: HTTP failures through ``http.error_for``, odd shapes
        (and the library's type checks) into Permanent."""
        try:
            with http.calling(SERVICE, what, credential=self.credential.variables, secrets=(self._token,)):
                yield
        except Permanent as exc:
            raise self._explained(exc) from exc.__cause__

    def _fail(self, what: str, response: requests.Response) -> ExternalError:
        failure = http.error_for(
            SERVICE, what, response, credential=self.credential.variables, secrets=(self._token,)
        )
        return self._explained(failure) if isinstance(failure, Permanent) else failure

    def _explained(self, exc: Permanent) -> Permanent:
        """A refused token, explained for its kind: an access token that Bitbucket says is of the
        wrong kind is most likely a user's API token sent without BITBUCKET_EMAIL; an API token is
        refused too when BITBUCKET_EMAIL is not its account's e-mail."""
        if exc.status != 401:
            return exc
        if not self.credential.email and NOT_SUPPORTED in exc.evidence.lower():
            hint = (
                "BITBUCKET_TOKEN was sent as an access token (Bearer) and Bitbucket does not take it so: "
                "if it is an Atlassian API token, set BITBUCKET_EMAIL to its account's e-mail"
            )
        elif self.credential.email:
            hint = f"BITBUCKET_EMAIL ({self.credential.email}) must be the e-mail of the token's account"
        else:
            return exc
        message = f"{exc}; {hint}".removeprefix(f"{SERVICE}: ")
        return type(exc)(SERVICE, message, status=exc.status)

    def _repository(self) -> Any:
        """The library's Repository object (one GET, then kept)."""
        if self._repo is None:
            with self._calling(f"reading repository {self.workspace}/{self.repository}"):
                self._repo = self._cloud.repositories.get(self.workspace, self.repository)
        return self._repo

    def _get(
        self, path: str, what: str, params: Mapping[str, Any] | None = None, *, absolute: bool = False
    ) -> dict[str, Any]:
        """A JSON object from the client's own ``get`` (``path`` below /2.0, or an absolute URL)."""
        with self._calling(what):
            body = self._cloud.get(path, params=dict(params or {}), absolute=absolute)
        if not isinstance(body, dict):
            raise Permanent(SERVICE, f"unexpected answer while {what}: not a JSON object")
        return body

    def _pages(
        self, path: str, what: str, params: Mapping[str, Any], limit: int, *, in_repository: bool = True
    ) -> Iterator[dict[str, Any]]:
        """The values of a paged list, following ``next``, at most ``limit`` of them; ``path`` is
        below the repository, or below /2.0 when not ``in_repository``."""
        body = self._get(f"{self._path}/{path}" if in_repository else path, what, params)
        count = 0
        while True:
            with http.reading(SERVICE, what):
                values = list(body.get("values") or ())
                following = body.get("next")
            for value in values:
                if count >= limit:
                    return
                count += 1
                yield value
            if not following or count >= limit:
                return
            body = self._get(str(following), what, absolute=True)

    def _full_hash(self, rev: str) -> str:
        """The 40-character hash of a (possibly 12-character) commit reference."""
        if len(rev) == 40:
            return rev
        data = self._get(f"{self._path}/commit/{quote(rev, safe='')}", f"reading commit {rev}")
        with http.reading(SERVICE, f"reading commit {rev}"):
            return str(data["hash"])

    def _pr_object(self, pull_request_id: int) -> Any:
        repo = self._repository()
        with self._calling(f"reading pull request #{pull_request_id}"):
            return repo.pullrequests.get(pull_request_id)

    def _list_pull_requests(
        self, what: str, query: str, states: Sequence[str], sort: str, limit: int
    ) -> Iterator[dict[str, Any]]:
        # ``state`` is given explicitly: without it Bitbucket lists OPEN pull requests only.
        params = {"q": query, "state": list(states), "sort": sort, "pagelen": min(PR_PAGELEN, max(limit, 1))}
        return self._pages("pullrequests", what, params, limit)
