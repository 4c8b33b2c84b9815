"""``ports.SourceControl`` for one Bitbucket Cloud repository, with atlassian-python-api 5.0.5.

The library's ``atlassian.bitbucket.Cloud`` client owns the session, the credentials (an API token
as Basic ``email:token``, an access token as Bearer: see ``credential``) and the base URL. Its
objects are used where one call returns what we need (the repository, a branch, a pull request and
its comment/decline actions); everything else goes through the same client's own
``get``/``post``/``put`` (commit lists with include/exclude, pull request lists with ``q=``,
commit statuses, pull requests with reviewers, merges with a message and their 202/555 answers),
reading the raw JSON: the library's ``Commit.author`` raises for an author without a linked
account, and ``.each()`` fetches every listed item again. A commit's source comes over git
(``git.source_tarball``), from the repository's https clone link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pipeline.adapters import http
from pipeline.adapters.bitbucket import access, git
from pipeline.adapters.bitbucket.client import PAGELEN, PR_PAGELEN, SERVICE, Client
from pipeline.adapters.bitbucket.shapes import (
    activity_entry,
    bbql_string,
    comment,
    commit,
    html_link,
    person,
    pull_request,
    same_commit,
    webhook,
)
from pipeline.errors import ExternalError, NotFound, Permanent, Temporary
from pipeline.model import (
    Change,
    Comment,
    Commit,
    Merge,
    PermissionCheck,
    Person,
    PullRequest,
    PullRequestActivity,
    Webhook,
)

PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")
STATUS_STATES = ("SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED")
MERGED_SCAN_LIMIT = 500  # merged pull requests read at most to match merge commits
SOURCE_TIMEOUT = 300.0  # the longest a commit's source may take to fetch
MERGE_RUNNING = "in progress"  # what a 409 says when a merge of the pull request already runs


class BitbucketCloud(Client):
    """``ports.SourceControl`` for ``workspace/repository`` on Bitbucket Cloud (or a stand-in) (see
    ``client.Client`` for how it is built)."""

    # -- ports.SourceControl ---------------------------------------------------------------------

    def check_access(self) -> Person | None:
        """Read the repository once, and the account the credential belongs to where the credential
        can tell (an API token's account; None for an access token, whose bot account shows on what it
        does). Permanent naming the variables when the credential is refused, or naming the
        workspace/repository when it cannot be read."""
        try:
            self._repo = None
            self._repository()
        except Permanent as exc:
            if exc.status == 401:
                raise
            message = (
                f"repository {self.workspace}/{self.repository} cannot be read: check the workspace and "
                f"repository names and that {self.credential.variables} may read and write it"
            )
            raise type(exc)(SERVICE, message, status=exc.status, evidence=exc.evidence) from exc
        return self.account()

    def workspace_members(self) -> list[Person]:
        """Every member of the repository's workspace (to pin approvers to their accounts). An access
        token may not read them (Permanent, 403)."""
        what = f"listing the members of workspace {self.workspace}"
        path = f"workspaces/{quote(self.workspace, safe='')}/members"
        members = self._pages(path, what, {"pagelen": PAGELEN}, 10_000, in_repository=False)
        with http.reading(SERVICE, what):
            return [p for p in (person(m.get("user")) for m in members) if p is not None]

    def account(self) -> Person | None:
        """The account an API token belongs to (``GET /2.0/user``); None for an access token, which
        has no account to read."""
        if not self.credential.email:
            return None
        what = f"reading the account {self.credential.variables} belong to"
        found = person(self._get("user", what))
        if found is None or not (found.uuid or found.account_id):
            raise Permanent(SERVICE, f"unexpected answer while {what}: no account")
        return found

    def permissions(self, members: bool) -> list[PermissionCheck]:
        """Each permission the release path needs, granted or not, as Bitbucket shows this
        credential (its scopes, and an API token's account's access to the repository); ``members``:
        reading the workspace's members is needed too (an approver written as a nickname)."""
        variables = self.credential.variables
        needs = (*access.NEEDS, *((access.MEMBERS,) if members else ()))
        try:
            seen = self._access()
            me = self.account()
        except Permanent as exc:
            return [PermissionCheck(variables, need.name, False, str(exc)) for need in needs]
        if me is not None:
            who = f"{me.username or me.display_name} ({me.account_id or me.uuid})"
        else:
            who = "its bot account (an access token acts as itself)"
        said = PermissionCheck(
            variables, "authenticate", True, f"{self.credential.describe()}, acting as {who}"
        )
        where = f"{self.workspace}/{self.repository}"
        return [said, *access.judge(variables, self.credential.kind.value, seen, who, where, needs)]

    def _access(self) -> access.Access:
        """One look at the repository (the answer's headers name the credential's scopes), and an API
        token's account's permission on it (None when the token may not read it)."""
        what = f"reading {self.workspace}/{self.repository}"
        with self._calling(what):
            answer = self._cloud.get(self._path, advanced_mode=True)
        if not answer.ok:
            raise self._fail(what, answer)
        permission = None
        if self.credential.email:
            name = f"{self.workspace}/{self.repository}"
            params = {"q": f"repository.full_name = {bbql_string(name)}"}
            try:
                found = self._get("user/permissions/repositories", "reading the account's permission", params)
                values = found.get("values") or []
                permission = str(values[0]["permission"]) if values else None
            except Permanent:
                permission = None
        return access.Access(
            scopes=access.scopes_of(answer.headers.get("x-oauth-scopes")),
            credential_type=answer.headers.get("x-credential-type", ""),
            permission=permission,
        )

    def branch_head(self, branch: str) -> str | None:
        """The 40-character commit ``branch`` points at, or None when there is no such branch."""
        repo = self._repository()
        try:
            with self._calling(f"reading branch {branch}"):
                return str(repo.branches.get(quote(branch, safe="/")).hash)
        except NotFound:
            return None

    def commits_between(self, include: str, exclude: str | None, limit: int = 200) -> list[Commit]:
        """Commits reachable from ``include`` and not from ``exclude``, newest first (Bitbucket's
        order), at most ``limit``."""
        if limit <= 0:
            return []
        what = f"listing commits of {include}" + (f" not in {exclude}" if exclude else "")
        params: dict[str, Any] = {"include": include, "pagelen": min(PAGELEN, limit)}
        if exclude:
            params["exclude"] = exclude
        values = list(self._pages("commits", what, params, limit))
        with http.reading(SERVICE, what):
            return [commit(v) for v in values]

    def merged_pull_requests(
        self, into: str, commits: Sequence[str], since: datetime | None = None
    ) -> list[Change]:
        """Pull requests merged into ``into`` whose merge commit is one of ``commits``, in the order
        of ``commits`` (newest first when they come from ``commits_between``).

        One list call with ``q=`` (most recently updated first), read page by page until every
        commit is matched, a pull request last updated before ``since`` (the oldest commit's date:
        nothing older can have merged one of them) or ``MERGED_SCAN_LIMIT`` pull requests were seen.
        ``merge_commit`` is the full hash from ``commits``.
        """
        wanted = [c for c in commits if c]
        if not wanted:
            return []
        what = f"listing pull requests merged into {into}"
        query = f'destination.branch.name = {bbql_string(into)} AND state = "MERGED"'
        found: dict[str, Change] = {}
        for data in self._list_pull_requests(what, query, ["MERGED"], "-updated_on", MERGED_SCAN_LIMIT):
            with http.reading(SERVICE, what):
                updated = data.get("updated_on")
                if since is not None and updated and http.parse_time(str(updated)) < since:
                    break
                short = str((data.get("merge_commit") or {}).get("hash") or "")
                full = next((c for c in wanted if same_commit(c, short)), None)
                if full is None or full in found:
                    continue
                found[full] = Change(
                    id=int(data["id"]),
                    title=str(data.get("title") or ""),
                    author=person(data.get("author")),
                    url=html_link(data),
                    merge_commit=full,
                )
            if len(found) == len(set(wanted)):
                break
        return [found[c] for c in dict.fromkeys(wanted) if c in found]

    def build_statuses(self, commit: str) -> dict[str, str]:
        """Commit status key -> state for one commit."""
        what = f"reading the build statuses of {commit[:12]}"
        values = self._pages(f"commit/{quote(commit, safe='')}/statuses", what, {"pagelen": PAGELEN}, 10_000)
        with http.reading(SERVICE, what):
            return {str(v["key"]): str(v["state"]) for v in values}

    def set_status(self, commit: str, key: str, state: str, name: str, description: str, url: str) -> None:
        """Post a commit status; the same key overwrites. Permanent for a state Bitbucket does not
        know (SUCCESSFUL, FAILED, INPROGRESS, STOPPED)."""
        if state not in STATUS_STATES:
            raise Permanent(
                SERVICE, f"commit status state {state!r} is not one of {', '.join(STATUS_STATES)}"
            )
        body = {"key": key, "state": state, "name": name, "description": description, "url": url}
        with self._calling(f"setting status {key} on {commit[:12]}"):
            self._cloud.post(f"{self._path}/commit/{quote(commit, safe='')}/statuses/build", data=body)

    def archive(self, commit: str, branch: str | None = None) -> bytes:
        """The commit's source as a gzipped tarball, fetched with git over HTTPS from the repository's
        https clone link (``branch``: where the commit is, should the server refuse to fetch it by
        hash). Its entries sit under one folder, as Bitbucket's own archives have them."""
        repo = self._repository()
        with http.reading(SERVICE, f"reading the clone links of {self.workspace}/{self.repository}"):
            links = repo.data["links"]["clone"]
            url = next(str(link["href"]) for link in links if link.get("name") == "https")
        prefix = f"{self.workspace}-{self.repository}-{commit[:12]}"
        return git.source_tarball(
            url, commit, self.credential, prefix=prefix, branch=branch, timeout=SOURCE_TIMEOUT
        )

    def create_branch(self, name: str, commit: str) -> None:
        """Create ``name`` at ``commit``. Idempotent when it already points there; Permanent when it
        points elsewhere."""
        repo = self._repository()
        head = self.branch_head(name)
        if head is None:
            try:
                with self._calling(f"creating branch {name} at {commit[:12]}"):
                    repo.branches.create(name, commit)
                return
            except Permanent as exc:
                if isinstance(exc, NotFound) or exc.status is None or exc.status >= 500:
                    raise
                head = self.branch_head(name)  # created meanwhile (a retried tick)?
                if head is None:
                    raise
        if not same_commit(head, commit):
            raise Permanent(
                SERVICE,
                f"branch {name} already exists at {head[:12]}, not at {commit[:12]}: "
                "delete or rename it, or choose another release branch name",
            )

    def find_pull_request(self, source_branch: str, destination_branch: str) -> PullRequest | None:
        """The newest pull request from ``source_branch`` into ``destination_branch``, any state."""
        what = f"looking for a pull request from {source_branch} into {destination_branch}"
        query = (
            f"source.branch.name = {bbql_string(source_branch)} AND "
            f"destination.branch.name = {bbql_string(destination_branch)}"
        )
        for data in self._list_pull_requests(what, query, PR_STATES, "-created_on", 1):
            with http.reading(SERVICE, what):
                return pull_request(data)
        return None

    def open_pull_request(
        self,
        source_branch: str,
        destination_branch: str,
        title: str,
        description: str,
        reviewers: Sequence[str] = (),
    ) -> PullRequest:
        """Open a pull request asking ``reviewers`` (uuids in braces, or account ids) to review it, so
        Bitbucket tells them; an open one for the same branches is returned as it is (Bitbucket would
        otherwise overwrite its title and description)."""
        what = f"looking for an open pull request from {source_branch} into {destination_branch}"
        query = (
            f"source.branch.name = {bbql_string(source_branch)} AND "
            f"destination.branch.name = {bbql_string(destination_branch)}"
        )
        for data in self._list_pull_requests(what, query, ["OPEN"], "-created_on", 1):
            with http.reading(SERVICE, what):
                return pull_request(data)
        what = f"opening a pull request from {source_branch} into {destination_branch}"
        body = {
            "title": title,
            "source": {"branch": {"name": source_branch}},
            "destination": {"branch": {"name": destination_branch}},
            "description": description,
            "close_source_branch": False,
            "reviewers": [reviewer(r) for r in dict.fromkeys(reviewers)],
        }
        with self._calling(what):
            created = self._cloud.post(f"{self._path}/pullrequests", data=body)
        if not isinstance(created, dict):
            raise Permanent(SERVICE, f"unexpected answer while {what}: not a JSON object")
        with http.reading(SERVICE, what):
            return pull_request(created)

    def pull_request(self, pull_request_id: int) -> PullRequest:
        """One pull request with its participants."""
        pr = self._pr_object(pull_request_id)
        with http.reading(SERVICE, f"reading pull request #{pull_request_id}"):
            return pull_request(pr.data)

    def activity(self, pull_request_id: int, limit: int = 500) -> list[PullRequestActivity]:
        """The pull request's activity log, newest first (as Bitbucket lists it), at most ``limit``
        entries; entries of kinds the controller does not read are left out."""
        what = f"reading the activity of pull request #{pull_request_id}"
        path = f"pullrequests/{int(pull_request_id)}/activity"
        values = list(self._pages(path, what, {"pagelen": PR_PAGELEN}, limit))
        with http.reading(SERVICE, what):
            entries = [activity_entry(v) for v in values]
        return [e for e in entries if e is not None]

    def comments(self, pull_request_id: int, limit: int = 500) -> list[Comment]:
        """The pull request's comments, oldest first, at most ``limit``."""
        what = f"reading the comments of pull request #{pull_request_id}"
        path = f"pullrequests/{int(pull_request_id)}/comments"
        values = list(self._pages(path, what, {"pagelen": PAGELEN}, limit))
        with http.reading(SERVICE, what):
            return [comment(v) for v in values]

    def update_pull_request(self, pull_request_id: int, title: str, description: str) -> None:
        """Replace the title and description (one PUT: the caller knows whether it changed; Bitbucket
        refuses a PUT without the title). Permanent for a pull request that is no longer open."""
        what = f"updating the description of pull request #{pull_request_id}"
        with self._calling(what):
            self._cloud.put(
                f"{self._path}/pullrequests/{int(pull_request_id)}",
                data={"title": title, "description": description},
            )

    def comment(self, pull_request_id: int, text: str) -> None:
        """Add a comment to a pull request."""
        with self._calling(f"commenting on pull request #{pull_request_id}"):
            self._cloud.post(
                f"{self._path}/pullrequests/{int(pull_request_id)}/comments", data={"content": {"raw": text}}
            )

    def decline_pull_request(self, pull_request_id: int, comment: str) -> None:
        """Comment, then decline. An already declined pull request is left as is; a merged or
        superseded one is Permanent."""
        pr = self._pr_object(pull_request_id)
        with http.reading(SERVICE, f"reading pull request #{pull_request_id}"):
            state = str(pr.data["state"])
        if state == "DECLINED":
            return
        if state != "OPEN":
            raise Permanent(SERVICE, f"pull request #{pull_request_id} is {state}; it cannot be declined")
        with self._calling(f"commenting on pull request #{pull_request_id}"):
            pr.comment(comment)
        with self._calling(f"declining pull request #{pull_request_id}"):
            pr.decline()

    def merge_pull_request(self, pull_request_id: int, message: str) -> Merge:
        """Merge with a merge commit, once: ``merged`` with the merge commit's full hash, or
        ``pending`` with the task URL to poll (``merge_status``) when Bitbucket answers 202.

        An already merged pull request is ``merged``. A declined or superseded one, conflicts and
        other refusals are Permanent; 555 (the merge took too long: Bitbucket says to try again
        later) and 409 (a merge of it is already running) are Temporary.
        """
        pr = self._pr_object(pull_request_id)
        what = f"merging pull request #{pull_request_id}"
        with http.reading(SERVICE, f"reading pull request #{pull_request_id}"):
            data = pr.data
            state = str(data["state"])
        if state != "OPEN":
            return Merge("merged", commit=self._merged_commit(pull_request_id, data))
        body = {"type": "pullrequest_merge_parameters", "message": message, "merge_strategy": "merge_commit"}
        with self._calling(what):
            answer = self._cloud.post(
                f"{self._path}/pullrequests/{int(pull_request_id)}/merge", data=body, advanced_mode=True
            )
        if answer.status_code == 202:
            location = answer.headers.get("Location") or ""
            if not location:
                raise Temporary(
                    SERVICE, f"{what}: Bitbucket accepted the merge but sent no task URL", status=202
                )
            return Merge("pending", task=location)
        if answer.status_code == 409 and MERGE_RUNNING in http.excerpt(answer).lower():
            # 409 is a conflict too (Permanent); only a merge already running is waited for.
            evidence = http.excerpt(answer, (self._token,))
            why = f"{what}: a merge of it is already running"
            raise Temporary(SERVICE, why, status=409, evidence=evidence, retry_after=5.0)
        if not answer.ok:
            raise self._fail(what, answer)
        with http.reading(SERVICE, what):
            return Merge("merged", commit=self._merged_commit(pull_request_id, answer.json()))

    def merge_status(self, pull_request_id: int, task: str) -> Merge:
        """Where a merge Bitbucket runs as a task stands: ``pending``, ``merged`` (with the merge
        commit's full hash) or ``failed`` (Bitbucket's reason)."""
        what = f"reading the merge task of pull request #{pull_request_id}"
        with self._calling(what):
            answer = self._cloud.get(task, absolute=True, advanced_mode=True)
        if answer.status_code == 400:  # the merge failed (or the task is not this pull request's)
            return Merge("failed", task=task, detail=http.excerpt(answer, (self._token,)))
        if not answer.ok:
            raise self._fail(what, answer)
        with http.reading(SERVICE, what):
            body = answer.json()
            status = str(body["task_status"])
            if status == "SUCCESS":
                return Merge(
                    "merged", commit=self._merged_commit(pull_request_id, body["merge_result"]), task=task
                )
        if status == "PENDING":
            return Merge("pending", task=task)
        return Merge("failed", task=task, detail=f"task status {status}")

    def _merged_commit(self, pull_request_id: int, data: Mapping[str, Any]) -> str:
        state = str(data["state"])
        if state != "MERGED":
            raise Permanent(SERVICE, f"pull request #{pull_request_id} is {state}; it cannot be merged")
        short = str((data.get("merge_commit") or {}).get("hash") or "")
        if not short:
            raise Permanent(SERVICE, f"pull request #{pull_request_id} is MERGED but names no merge commit")
        return self._full_hash(short)

    def webhooks(self) -> list[Webhook]:
        """The repository's webhooks, every page, as Bitbucket lists them (oldest first). A secret is
        write-only: ``secret_set`` says whether one is set."""
        what = f"listing the webhooks of {self.workspace}/{self.repository}"
        values = list(self._pages("hooks", what, {"pagelen": PAGELEN}, 10_000))
        with http.reading(SERVICE, what):
            return [webhook(v) for v in values]

    def install_webhook(
        self, url: str, secret: str, events: Sequence[str], description: str
    ) -> tuple[Webhook, str]:
        """Make one active webhook to ``url`` with ``secret`` for exactly ``events``; return it and
        "created" or "updated". Idempotent: a hook with the same ``url`` (else, for a non-empty
        ``description``, the first with the same description) is updated with PUT (url, description,
        events, active, secret); otherwise one is created with POST. Other hooks are left alone.

        ValueError for an empty secret or no events. The secret is sent, never returned by Bitbucket,
        and never part of an error: it is scrubbed from the evidence, and the client library's own
        exception (which may quote the answer) is not chained.
        """
        if not secret:
            raise ValueError("a webhook secret is required: without one anyone could post deliveries")
        if not events:
            raise ValueError("a webhook needs at least one event")
        hooks = self.webhooks()
        existing = next((h for h in hooks if h.url == url), None)
        if existing is None and description:
            existing = next((h for h in hooks if h.description == description), None)
        body = {
            "url": url,
            "description": description,
            "events": sorted(set(events)),
            "active": True,
            "secret": secret,
        }
        where = f"{self.workspace}/{self.repository}"
        if existing is None:
            what, outcome = f"creating a webhook on {where}", "created"
        else:
            what, outcome = f"updating webhook {existing.uuid} on {where}", "updated"
        try:
            with http.calling(
                SERVICE, what, credential=self.credential.variables, secrets=(self._token, secret)
            ):
                if existing is None:
                    data = self._cloud.post(f"{self._path}/hooks", data=body)
                else:
                    data = self._cloud.put(f"{self._path}/hooks/{quote(existing.uuid, safe='')}", data=body)
        except ExternalError as exc:
            raise exc from None
        if not isinstance(data, dict):
            raise Permanent(SERVICE, f"unexpected answer while {what}: not a JSON object")
        with http.reading(SERVICE, what):
            return webhook(data), outcome


def reviewer(ident: str) -> dict[str, str]:
    """A reviewer as Bitbucket takes one: ``{"uuid": "{...}"}`` for a uuid, else an account id."""
    return {"uuid": ident} if ident.startswith("{") else {"account_id": ident}
