"""``BitbucketCloud``: the Bitbucket Cloud stand-in that ``sandbox.core`` composes.

It owns the state (``Store``), one bare git repository per Bitbucket repository, the webhook
``Deliverer``, the rate limiter and the ``Merger``, and offers the domain operations the routes
share: moving a branch (which records a push, fires ``repo:push`` and refreshes the pull requests
that use the branch) and firing webhook events. It serves two hosts, as Bitbucket does: the REST
API (``wsgi_app``: ``api`` and the ``routes_*`` modules) and the website (``web_wsgi_app``:
``website``, the source archives and git over HTTPS).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from werkzeug.wrappers import Response

from sandbox.bitbucket import api, events, routes_accounts, routes_hooks, routes_pulls, routes_repo, website
from sandbox.bitbucket.errors import REPOSITORY_NOT_FOUND, ApiError, not_found, rate_limited
from sandbox.bitbucket.gitrepo import GitRepo, Identity
from sandbox.bitbucket.merges import MERGE_MODES, Merger
from sandbox.bitbucket.ratelimit import RollingLimiter
from sandbox.bitbucket.shapes import Shapes, now
from sandbox.bitbucket.store import Record, Store
from sandbox.bitbucket.users import ACCESS_TOKEN_SCOPES, SEED_USERS, USER_SCOPES, new_access_token, new_user
from sandbox.bitbucket.webhooks import Deliverer
from sandbox.faults import Fault

log = logging.getLogger("sandbox.bitbucket")

# The seeded access tokens: key -> (kind, name). Their repository is the seeded one.
SEED_ACCESS_TOKENS: dict[str, tuple[str, str]] = {
    "repository": ("repository", "Claims release token"),
    "workspace": ("workspace", "Whisper release token"),
}


class BitbucketCloud:
    """The stand-in. ``wsgi_app`` serves the REST API (``/2.0/...``) at ``base_url``;
    ``web_wsgi_app`` the website (archives, git over HTTPS) at ``web_url``.

    ``merge_mode`` is ``sync`` (a merge answers 200 with the merged pull request) or ``async``
    (202 and a task to poll, pending for ``merge_delay`` seconds): see ``merges``.
    """

    service = "bitbucket"
    web_service = "bitbucket-web"

    def __init__(
        self,
        state_dir: Path,
        base_url: str,
        *,
        web_url: str,
        rate_limit: int = 1000,
        webhook_timeout: float = 10.0,
        webhook_retry_delay: float = 0.5,
        merge_mode: str = "sync",
        merge_delay: float = 1.0,
    ) -> None:
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode: {merge_mode!r} is not one of {', '.join(MERGE_MODES)}")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self.merge_mode = merge_mode
        self.store = Store(self.state_dir)
        self.lock = self.store.lock
        self.shapes = Shapes(self.base_url, self.web_url, self.store.users, self.store.bots)
        self.limiter = RollingLimiter(rate_limit)
        self.deliverer = Deliverer(timeout=webhook_timeout, retry_delay=webhook_retry_delay)
        self.merger = Merger(self, merge_delay)
        self.wsgi_app: flask.Flask = api.create_app(self)
        for routes in (routes_accounts, routes_repo, routes_pulls, routes_hooks):
            routes.register(self.wsgi_app, self)
        self.web_wsgi_app: flask.Flask = website.create_app(self)

    # -- what sandbox.core calls --------------------------------------------------------------

    def fault_response(self, fault: Fault) -> Response:
        """An injected fault as Bitbucket would answer it."""
        if fault.kind == "rate_limit":
            return rate_limited()
        return ApiError(
            fault.status or 503, "Something went wrong", f"fault injected by the sandbox ({fault.kind})"
        ).response()

    def seed(self, files: dict[str, bytes], *, workspace: str, repository: str) -> None:
        """Seed the five users, ``workspace``, ``repository`` (one commit by ops holding
        ``files`` on ``main``; ``develop`` at the same commit) and two access tokens (one for
        ``repository``, one for ``workspace``). Idempotent across restarts."""
        with self.lock:
            stamp = now()
            for username, display_name, can_write in SEED_USERS:
                if username not in self.store.users:
                    self.store.users[username] = new_user(username, display_name, can_write, stamp)
                self.store.users[username].setdefault("scopes", list(USER_SCOPES))  # older state files
            for key, (kind, name) in SEED_ACCESS_TOKENS.items():
                if f"bot:{key}" not in self.store.bots:
                    bot = new_access_token(
                        key,
                        kind,
                        name,
                        list(ACCESS_TOKEN_SCOPES),
                        stamp,
                        workspace=workspace,
                        repository=repository if kind == "repository" else None,
                    )
                    self.store.bots[bot["username"]] = bot
            if workspace not in self.store.workspaces:
                self.store.workspaces[workspace] = {
                    "slug": workspace,
                    "name": workspace.capitalize(),
                    "uuid": "{" + str(uuid.uuid4()) + "}",
                    "created_on": stamp,
                }
            key = f"{workspace}/{repository}"
            if key not in self.store.repos:
                git = self.git_for(workspace, repository)
                git.init("main")
                ops = self.store.users["ops"]
                sha = git.write_commit([], dict(files), [], "Initial commit\n", self.identity("ops"))
                if git.branch("main") is None:
                    git.set_branch("main", sha, None)
                if git.branch("develop") is None:
                    git.set_branch("develop", git.branch("main") or sha, None)
                self.store.repos[key] = {
                    "workspace": workspace,
                    "slug": repository,
                    "name": repository,
                    "uuid": "{" + str(uuid.uuid4()) + "}",
                    "description": "",
                    "language": "python",
                    "created_on": stamp,
                    "updated_on": stamp,
                    "mainbranch": "main",
                    "project": {
                        "key": workspace[:3].upper() or "PRJ",
                        "name": workspace.capitalize(),
                        "uuid": "{" + str(uuid.uuid4()) + "}",
                    },
                    "next_pr": 1,
                    "next_comment": 1,
                    "pullrequests": {},
                    "statuses": {},
                    "hooks": {},
                    "created_by": ops["username"],
                }
            self.store.save()

    def tokens(self) -> dict[str, str]:
        """username -> API token, for every seeded user."""
        with self.lock:
            return {name: u["token"] for name, u in self.store.users.items()}

    def emails(self) -> dict[str, str]:
        """username -> the e-mail that goes with the API token in Basic auth."""
        with self.lock:
            return {name: u["email"] for name, u in self.store.users.items()}

    def access_tokens(self) -> dict[str, str]:
        """key -> access token (``repository`` and ``workspace`` are seeded)."""
        with self.lock:
            return {bot["key"]: bot["token"] for bot in self.store.bots.values()}

    def issue_access_token(
        self,
        key: str,
        kind: str,
        name: str,
        scopes: list[str],
        *,
        workspace: str,
        repository: str | None = None,
    ) -> str:
        """Make (and persist) another access token, e.g. one lacking a scope; returns the token."""
        with self.lock:
            if f"bot:{key}" in self.store.bots:
                raise ValueError(f"an access token {key!r} exists already")
            bot = new_access_token(key, kind, name, scopes, now(), workspace=workspace, repository=repository)
            self.store.bots[bot["username"]] = bot
            self.store.save()
            return str(bot["token"])

    def archive(self, workspace: str, repository: str, rev: str) -> tuple[bytes, str]:
        """The ``.tar.gz`` that ``GET /{workspace}/{repository}/get/{rev}.tar.gz`` serves, and the
        full commit hash it holds. Raises ``KeyError`` for an unknown repository or revision."""
        repo = self.store.repo(workspace, repository)
        if repo is None:
            raise KeyError(f"{workspace}/{repository}")
        git = self.git(repo)
        sha = git.resolve(rev)
        if sha is None:
            raise KeyError(rev)
        return git.archive(sha, f"{workspace}-{repository}-{sha[:12]}"), sha

    def deliveries(self, hook_uuid: str | None = None) -> list[dict[str, Any]]:
        """The webhook delivery log (sandbox-only; Bitbucket shows it only in its web UI)."""
        return self.deliverer.deliveries(hook_uuid)

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook delivery finished; False on timeout."""
        return self.deliverer.wait_idle(timeout)

    def close(self) -> None:
        self.merger.close()
        self.deliverer.close()

    # -- shared by the routes -----------------------------------------------------------------

    def git_for(self, workspace: str, slug: str) -> GitRepo:
        return GitRepo(self.state_dir / "git" / workspace / f"{slug}.git")

    def git(self, repo: Record) -> GitRepo:
        return self.git_for(repo["workspace"], repo["slug"])

    def repo_or_404(self, workspace: str, slug: str) -> Record:
        repo = self.store.repo(workspace, slug)
        if repo is None:
            raise not_found(REPOSITORY_NOT_FOUND)
        return repo

    def identity(self, username: str, when: str | None = None) -> Identity:
        """Who commits made by the account ``username`` (a person or a bot) are by."""
        u = self.store.account(username)
        assert u is not None, f"no account {username!r}"
        return Identity(u["display_name"], u["email"], when)

    def save(self, repo: Record | None = None) -> None:
        if repo is not None:
            repo["updated_on"] = now()
        self.store.save()

    def move_branch(self, repo: Record, actor: str, branch: str, old: str | None, new: str | None) -> None:
        """Point ``branch`` at ``new`` (None: delete it) if it still points at ``old`` (None: it
        must not exist), then record the push: ``repo:push`` and the pull requests it touches.
        Call with ``lock`` held; raises ``gitrepo.RefMoved``."""
        git = self.git(repo)
        if new is None:
            assert old is not None
            git.delete_branch(branch, old)
        else:
            git.set_branch(branch, new, old)
        events.push(self, repo, actor, branch, old, new)
        if new is not None:
            self._refresh_pullrequests(repo, actor, branch, new)
        self.save(repo)

    def _refresh_pullrequests(self, repo: Record, actor: str, branch: str, new: str) -> None:
        for pr in repo["pullrequests"].values():
            if pr["state"] != "OPEN":
                continue
            if pr["destination"] == branch:
                pr["dest_hash"] = new
            if pr["source"] == branch and pr["source_hash"] != new:
                pr["source_hash"] = new
                pr["updated_on"] = now()
                pr["activity"].append(
                    {
                        "kind": "update",
                        "date": pr["updated_on"],
                        "user": actor,
                        "state": "OPEN",
                        "source_hash": new,
                        "dest_hash": pr["dest_hash"],
                    }
                )
                events.pullrequest(self, repo, pr, "pullrequest:updated", actor)

    def emit(self, repo: Record, event: str, payload: Callable[[], dict[str, Any]]) -> None:
        """Queue ``event`` for every active hook of ``repo`` subscribed to it (payload built once)."""
        hooks = [h for h in repo["hooks"].values() if h["active"] and event in h["events"]]
        if not hooks:
            return
        body = payload()
        for hook in hooks:
            self.deliverer.enqueue(hook["uuid"], hook["url"], hook.get("secret") or None, event, body)
