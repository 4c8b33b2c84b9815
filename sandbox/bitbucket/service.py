"""``BitbucketCloud``: the Bitbucket Cloud REST 2.0 stand-in that ``sandbox.core`` composes.

It owns the state (``Store``), one bare git repository per Bitbucket repository, the webhook
``Deliverer`` and the rate limiter, and offers the domain operations the routes share: moving a
branch (which records a push, fires ``repo:push`` and refreshes the pull requests that use the
branch) and firing webhook events. The HTTP surface is in ``api`` and the ``routes_*`` modules.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from werkzeug.wrappers import Response

from sandbox.bitbucket import api, events, routes_hooks, routes_pulls, routes_repo
from sandbox.bitbucket.errors import ApiError, not_found, rate_limited
from sandbox.bitbucket.gitrepo import GitRepo, Identity
from sandbox.bitbucket.ratelimit import RollingLimiter
from sandbox.bitbucket.shapes import Shapes, now
from sandbox.bitbucket.store import Record, Store
from sandbox.bitbucket.users import SEED_USERS, new_user
from sandbox.bitbucket.webhooks import Deliverer
from sandbox.faults import Fault

log = logging.getLogger("sandbox.bitbucket")

REPOSITORY_NOT_FOUND = (
    "You may not have access to this repository or it no longer exists in this workspace. If you think "
    "this repository exists and you have access, make sure you are authenticated."
)


class BitbucketCloud:
    """The stand-in. ``wsgi_app`` serves ``/2.0/...`` and ``/{workspace}/{repo}/get/{rev}.tar.gz``."""

    service = "bitbucket"

    def __init__(
        self,
        state_dir: Path,
        base_url: str,
        *,
        rate_limit: int = 1000,
        webhook_timeout: float = 10.0,
        webhook_retry_delay: float = 0.5,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self.store = Store(self.state_dir)
        self.lock = self.store.lock
        self.shapes = Shapes(self.base_url, self.store.users)
        self.limiter = RollingLimiter(rate_limit)
        self.deliverer = Deliverer(timeout=webhook_timeout, retry_delay=webhook_retry_delay)
        self.wsgi_app: flask.Flask = api.create_app(self)
        for routes in (routes_repo, routes_pulls, routes_hooks):
            routes.register(self.wsgi_app, self)

    # -- what sandbox.core calls --------------------------------------------------------------

    def fault_response(self, fault: Fault) -> Response:
        """An injected fault as Bitbucket would answer it."""
        if fault.kind == "rate_limit":
            return rate_limited()
        return ApiError(
            fault.status or 503, "Something went wrong", f"fault injected by the sandbox ({fault.kind})"
        ).response()

    def seed(self, files: dict[str, bytes], *, workspace: str, repository: str) -> None:
        """Seed the five users, ``workspace`` and ``repository`` (one commit by ops holding
        ``files`` on ``main``; ``develop`` at the same commit). Idempotent across restarts."""
        with self.lock:
            stamp = now()
            for username, display_name, can_write in SEED_USERS:
                if username not in self.store.users:
                    self.store.users[username] = new_user(username, display_name, can_write, stamp)
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
        u = self.store.users[username]
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
