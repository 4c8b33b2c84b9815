"""The stand-in's state: plain JSON-able records in memory, saved atomically after every change.

Layout (``state.json`` under the state dir; the git repositories live next to it in ``git/``)::

    users:      {username: user record (see users.new_user)}
    bots:       {"bot:<key>": access token and its bot account (see users.new_access_token)}
    workspaces: {slug: {slug, name, uuid, created_on}}
    repos:      {"ws/slug": {workspace, slug, name, uuid, created_on, updated_on, mainbranch,
                             project, next_pr, next_comment, pullrequests: {"1": pr},
                             statuses: {full hash: {key: status}}, hooks: {"{uuid}": hook}}}

Absolute URLs are never stored. Callers hold ``lock`` while they read-modify-save.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sandbox.persist import JsonFile

Record = dict[str, Any]


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.file = JsonFile(state_dir / "state.json")
        self.data: Record = self.file.load({})
        self.data.setdefault("users", {})
        self.data.setdefault("bots", {})
        self.data.setdefault("workspaces", {})
        self.data.setdefault("repos", {})
        self.lock = threading.RLock()

    def save(self) -> None:
        with self.lock:
            self.file.save(self.data)

    @property
    def users(self) -> dict[str, Record]:
        return self.data["users"]

    @property
    def bots(self) -> dict[str, Record]:
        return self.data["bots"]

    def account(self, handle: str) -> Record | None:
        """A person by username or a bot by its ``bot:`` handle."""
        return self.users.get(handle) or self.bots.get(handle)

    @property
    def workspaces(self) -> dict[str, Record]:
        return self.data["workspaces"]

    @property
    def repos(self) -> dict[str, Record]:
        return self.data["repos"]

    def repo(self, workspace: str, slug: str) -> Record | None:
        return self.repos.get(f"{workspace}/{slug}")
