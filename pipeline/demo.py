"""The people around the controller, played against the sandbox: a developer merging, CI reporting,
the Product Owner approving. Used by ``make run``, ``make demo`` and the end-to-end tests.

This module, the sandbox wiring in ``bootstrap`` and the tests are the only code that knows the
sandbox exists; it drives the sandbox's Bitbucket over HTTP with each person's own API token
(Basic with their Atlassian account e-mail), exactly as those people would with the real service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


@dataclass(frozen=True)
class Merged:
    pull_request: int
    commit: str  # the new head of the branch (40 hex)


class People:
    """Act as the sandbox's users (dev, po, ops, readonly...) on its Bitbucket repository."""

    def __init__(self, info: dict[str, Any]) -> None:
        bb = info["bitbucket"]
        self.tokens: dict[str, str] = bb["users"]
        self.emails: dict[str, str] = bb["emails"]
        self.repo = f"{bb['api']}/repositories/{bb['workspace']}/{bb['repository']}"
        self._sessions: dict[str, requests.Session] = {}

    def as_user(self, user: str) -> requests.Session:
        if user not in self.tokens:
            raise ValueError(f"--as: no sandbox user {user!r}; known: {', '.join(sorted(self.tokens))}")
        if user not in self._sessions:
            session = requests.Session()
            session.auth = (self.emails[user], self.tokens[user])
            self._sessions[user] = session
        return self._sessions[user]

    def _call(self, user: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.as_user(user).request(method, f"{self.repo}{path}", timeout=30, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{method} {path} as {user}: HTTP {response.status_code}: {response.text[:300]}"
            )
        return response.json() if response.content else None

    def head(self, branch: str) -> str:
        return str(self._call("dev", "GET", f"/refs/branches/{branch}")["target"]["hash"])

    def commit(
        self,
        branch: str,
        files: dict[str, bytes],
        message: str,
        *,
        user: str = "dev",
        parent: str | None = None,
    ) -> str:
        """Commit ``files`` on ``branch`` (created from ``parent`` when given) through ``POST /src``."""
        data: dict[str, Any] = {
            "message": message,
            "branch": branch,
            "author": f"{user} <{user}@whisper.example>",
        }
        if parent:
            data["parents"] = parent
        multipart = {path: (path, content) for path, content in files.items()}
        self._call(user, "POST", "/src", data=data, files=multipart)
        return self.head(branch)

    def merge_change(
        self,
        title: str,
        files: dict[str, bytes],
        *,
        user: str = "dev",
        into: str = "develop",
        build: str | None = "SUCCESSFUL",
    ) -> Merged:
        """A developer's change: a feature branch from ``into``, a pull request, a merge; then CI
        reports the ``tests`` build on the merge commit (``build`` None: CI says nothing yet)."""
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
        branch = f"feature/{slug}-{int(time.time() * 1000) % 10**8}"
        self.commit(branch, files, title, user=user, parent=self.head(into))
        pr = self._call(
            user,
            "POST",
            "/pullrequests",
            json={
                "title": title,
                "source": {"branch": {"name": branch}},
                "destination": {"branch": {"name": into}},
                "close_source_branch": True,
            },
        )
        self._call(user, "POST", f"/pullrequests/{pr['id']}/merge", json={"merge_strategy": "merge_commit"})
        head = self.head(into)
        if build is not None:
            self.report_build(head, build)
        return Merged(int(pr["id"]), head)

    def report_build(self, commit: str, state: str, key: str = "tests") -> None:
        """CI posts a build status on a commit."""
        self._call(
            "dev",
            "POST",
            f"/commit/{commit}/statuses/build",
            json={
                "key": key,
                "state": state,
                "name": f"CI {key}",
                "url": f"https://ci.whisper.example/{key}/{commit[:12]}",
            },
        )

    def release_pull_request(self, into: str = "main") -> dict[str, Any] | None:
        """The newest open pull request into the production branch (the release pull request)."""
        page = self._call(
            "dev",
            "GET",
            "/pullrequests",
            params={
                "q": f'destination.branch.name="{into}" AND state="OPEN"',
                "sort": "-created_on",
            },
        )
        values = page.get("values", [])
        return values[0] if values else None

    def approve(self, pull_request: int | None = None, *, user: str = "po", into: str = "main") -> int:
        """Approve a pull request as ``user`` (default: the open release pull request)."""
        if pull_request is None:
            found = self.release_pull_request(into)
            if found is None:
                raise RuntimeError(
                    f"no open pull request into {into} yet: the release is not verified on staging"
                )
            pull_request = int(found["id"])
        self._call(user, "POST", f"/pullrequests/{pull_request}/approve")
        return pull_request

    def unapprove(self, pull_request: int, *, user: str = "po") -> None:
        """Withdraw ``user``'s approval of a pull request."""
        self._call(user, "DELETE", f"/pullrequests/{pull_request}/approve")

    def request_changes(self, pull_request: int, *, user: str = "po", comment: str = "") -> None:
        """Request changes on a pull request as ``user``, saying why in a comment first."""
        if comment:
            self.comment(pull_request, comment, user=user)
        self._call(user, "POST", f"/pullrequests/{pull_request}/request-changes")

    def decline(self, pull_request: int, *, user: str = "po", reason: str = "") -> None:
        """Decline a pull request as ``user``, with the reason Bitbucket's dialog asks for."""
        self._call(user, "POST", f"/pullrequests/{pull_request}/decline", json={"message": reason})

    def comment(self, pull_request: int, text: str, *, user: str = "dev") -> None:
        self._call(user, "POST", f"/pullrequests/{pull_request}/comments", json={"content": {"raw": text}})

    def comments(self, pull_request: int) -> list[dict[str, Any]]:
        """The comments on a pull request, oldest first (every page)."""
        found: list[dict[str, Any]] = []
        page = self._call("dev", "GET", f"/pullrequests/{pull_request}/comments", params={"pagelen": 100})
        while True:
            found.extend(page.get("values", []))
            if not page.get("next"):
                return found
            response = self.as_user("dev").get(page["next"], timeout=30)
            response.raise_for_status()
            page = response.json()

    def statuses(self, commit: str) -> dict[str, dict[str, Any]]:
        """Commit statuses by key, as Bitbucket shows them on the commit."""
        page = self._call("dev", "GET", f"/commit/{commit}/statuses")
        return {s["key"]: s for s in page.get("values", [])}

    def pull_request(self, pull_request: int) -> dict[str, Any]:
        return dict(self._call("dev", "GET", f"/pullrequests/{pull_request}"))


# --- make demo: the whole story, told -------------------------------------------------------------


def tell_story(config_path: Path, state_dir: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Start a fresh sandbox in ``state_dir`` and take three changes through the controller:
    a good merge goes to production; a merge that breaks the health check stops at staging; a
    release whose production check fails is rolled back. Return the history (newest first)."""
    from pipeline import bootstrap
    from sandbox.demo import breaking_change, health_file

    box = bootstrap.sandbox(state_dir).start()
    try:
        info = box.info()
        overrides = dict(info["env"]) | {"PIPELINE_DATABASE_URL": bootstrap.sandbox_database_url(state_dir)}
        settings = bootstrap.settings(config_path, overrides=overrides)
        services = bootstrap.services(settings)
        people = People(info)
        production = settings.production.app
        started = time.monotonic()

        def settle() -> None:
            services.settle(timeout=600)

        say("1. A good merge goes to production.")
        good = people.merge_change("Claims carry a note", {"NOTE.md": b"Claims carry a note.\n"})
        say(f"   dev merged pull request #{good.pull_request} into develop; CI reported `tests` green.")
        settle()
        pr = people.approve(user="po")
        say(f"   Verified on staging; po approved release pull request #{pr}.")
        settle()

        say("2. A merge that breaks the health check stops at staging.")
        bad = people.merge_change("Break the health check", breaking_change("fail"))
        say(f"   dev merged pull request #{bad.pull_request}.")
        settle()

        say("3. A release whose production check fails is rolled back.")
        works = people.merge_change("Works on staging only", health_file("fail-on", app=production))
        say(
            f"   dev merged pull request #{works.pull_request} (healthy on staging, failing on {production})."
        )
        settle()
        pr = people.approve(user="po")
        say(f"   Verified on staging; po approved release pull request #{pr}.")
        settle()

        say("")
        say(f"Timeline (seconds since the first merge; {time.monotonic() - started:.0f}s in all):")
        history = services.history()
        events = sorted(
            (event for r in history for event in _events_of(services, r["id"])), key=lambda e: e["at"]
        )
        t0 = events[0]["at"] if events else None
        for e in events:
            offset = (e["at"] - t0).total_seconds() if t0 else 0.0
            move = f" -> {e['to']}" if e["to"] and e["to"] != e["from"] else ""
            say(f"  {offset:6.1f}s  release {e['release']}  {e['kind']}{move}: {_short(e['reason'])}")
        say("")
        say("Where each release ended:")
        for r in reversed(history):
            say(f"  release {r['id']} {r['commit'][:12]}: {r['state']} - {_short(r['reason'], 200)}")
        say("`pipeline show ID` tells a release's whole story; this sandbox is gone once the demo ends.")
        return history
    finally:
        box.stop()
        if box.databases is not None:
            box.databases.drop_all()


def _events_of(services: Any, release_id: int) -> list[dict[str, Any]]:
    return [
        {
            "at": e.at,
            "release": release_id,
            "kind": e.kind,
            "reason": e.reason,
            "from": e.state_from,
            "to": e.state_to,
        }
        for e in services.store.events(release_id)
    ]


def _short(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
