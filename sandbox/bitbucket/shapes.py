"""What Bitbucket Cloud's JSON looks like, built from stored records at response time.

Every object carries ``type`` and absolute ``links`` into the stand-in: ``self`` and the other API
links into the API host (``base``), ``html`` links and the https clone URL into the website host
(``web``), as ``api.bitbucket.org`` and ``bitbucket.org`` (both are the servers' current base URLs:
absolute URLs are never stored). Access tokens' bot accounts render as ``app_user``. Timestamps
are ISO 8601 with microseconds and ``+00:00``; commit dates are git's strict ISO dates, as
Bitbucket shows them. A pull request's source/destination commit hashes are 12 characters;
branch targets and commits are 40.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sandbox.bitbucket.gitrepo import CommitInfo

Record = dict[str, Any]
SHORT = 12
MERGE_STRATEGIES = ["merge_commit", "squash", "fast_forward"]


def now() -> str:
    """The current time the way Bitbucket writes it: ``2024-05-01T12:00:00.123456+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def rendered(raw: str) -> Record:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in raw.split("\n\n") if p.strip())
    return {"type": "rendered", "raw": raw, "markup": "markdown", "html": body}


def _q(text: str) -> str:
    return quote(text, safe="")


class Shapes:
    """Renders records; ``users`` and ``bots`` are the live handle -> account record mappings."""

    def __init__(self, base: str, web: str, users: dict[str, Record], bots: dict[str, Record]) -> None:
        self.base = base.rstrip("/")
        self.web_base = web.rstrip("/")
        self.users = users
        self.bots = bots

    # -- links --------------------------------------------------------------------------------

    def api(self, path: str) -> str:
        return f"{self.base}/2.0/{path}"

    def web(self, path: str) -> str:
        return f"{self.web_base}/{path}"

    @staticmethod
    def link(href: str) -> Record:
        return {"href": href}

    def repo_api(self, repo: Record, path: str = "") -> str:
        tail = f"/{path}" if path else ""
        return self.api(f"repositories/{repo['workspace']}/{repo['slug']}{tail}")

    def repo_web(self, repo: Record, path: str = "") -> str:
        tail = f"/{path}" if path else ""
        return self.web(f"{repo['workspace']}/{repo['slug']}{tail}")

    # -- accounts -----------------------------------------------------------------------------

    def user(self, username: str | None) -> Record | None:
        """The account object Bitbucket embeds (author, actor, participant.user, ...)."""
        if username is None:
            return None
        if username in self.bots:
            return self.app_user(self.bots[username])
        if username not in self.users:
            return None
        u = self.users[username]
        return {
            "display_name": u["display_name"],
            "links": {
                "self": self.link(self.api(f"users/{_q(u['uuid'])}")),
                "avatar": self.link(self.web(f"account/{u['nickname']}/avatar/")),
                "html": self.link(self.web(_q(u["uuid"]) + "/")),
            },
            "type": "user",
            "uuid": u["uuid"],
            "account_id": u["account_id"],
            "nickname": u["nickname"],
        }

    def app_user(self, bot: Record) -> Record:
        """An access token's bot account: no nickname."""
        return {
            "display_name": bot["display_name"],
            "links": {
                "self": self.link(self.api(f"users/{_q(bot['uuid'])}")),
                "avatar": self.link(self.web(f"account/{_q(bot['uuid'])}/avatar/")),
                "html": self.link(self.web(_q(bot["uuid"]) + "/")),
            },
            "type": "app_user",
            "uuid": bot["uuid"],
            "account_id": bot["account_id"],
        }

    def user_full(self, username: str) -> Record:
        """``GET /2.0/user`` and ``/2.0/users/{id}``: the account with its profile fields."""
        base = self.user(username)
        assert base is not None
        if username in self.bots:
            base.update(created_on=self.bots[username]["created_on"], account_status="active")
            return base
        u = self.users[username]
        base["links"]["repositories"] = self.link(self.api(f"repositories/{_q(u['uuid'])}"))
        base.update(
            created_on=u["created_on"],
            account_status="active",
            is_staff=False,
            has_2fa_enabled=None,
            location=None,
            username=u["username"],
        )
        return base

    def user_by_email(self, email: str) -> str | None:
        for name, u in [*self.users.items(), *self.bots.items()]:
            if u["email"].lower() == email.lower():
                return name
        return None

    def repository_permission(self, repo: Record, username: str, permission: str) -> Record:
        return {
            "type": "repository_permission",
            "permission": permission,
            "repository": self.repository_mini(repo),
            "user": self.user(username),
        }

    # -- workspaces and repositories ----------------------------------------------------------

    def workspace(self, ws: Record, full: bool = False) -> Record:
        body: Record = {
            "type": "workspace",
            "uuid": ws["uuid"],
            "name": ws["name"],
            "slug": ws["slug"],
            "links": {
                "self": self.link(self.api(f"workspaces/{ws['slug']}")),
                "html": self.link(self.web(f"{ws['slug']}/")),
                "avatar": self.link(self.web(f"workspaces/{ws['slug']}/avatar/")),
            },
        }
        if full:
            body["links"].update(
                repositories=self.link(self.api(f"repositories/{ws['slug']}")),
                projects=self.link(self.api(f"workspaces/{ws['slug']}/projects")),
                members=self.link(self.api(f"workspaces/{ws['slug']}/members")),
                hooks=self.link(self.api(f"workspaces/{ws['slug']}/hooks")),
            )
            # never edited here, so last updated when created (the swagger types it a date-time, not null)
            body.update(
                is_private=True,
                created_on=ws["created_on"],
                updated_on=ws.get("updated_on", ws["created_on"]),
                forking_mode="internal_only",
            )
        return body

    def repository_mini(self, repo: Record) -> Record:
        return {
            "type": "repository",
            "full_name": f"{repo['workspace']}/{repo['slug']}",
            "links": {
                "self": self.link(self.repo_api(repo)),
                "html": self.link(self.repo_web(repo)),
                "avatar": self.link(self.web(f"{repo['workspace']}/{repo['slug']}/avatar/32/")),
            },
            "name": repo["name"],
            "uuid": repo["uuid"],
        }

    def repository(self, repo: Record, ws: Record, size: int) -> Record:
        full_name = f"{repo['workspace']}/{repo['slug']}"
        project = repo["project"]
        body = self.repository_mini(repo)
        body["links"].update(
            pullrequests=self.link(self.repo_api(repo, "pullrequests")),
            commits=self.link(self.repo_api(repo, "commits")),
            forks=self.link(self.repo_api(repo, "forks")),
            watchers=self.link(self.repo_api(repo, "watchers")),
            branches=self.link(self.repo_api(repo, "refs/branches")),
            tags=self.link(self.repo_api(repo, "refs/tags")),
            downloads=self.link(self.repo_api(repo, "downloads")),
            source=self.link(self.repo_api(repo, "src")),
            hooks=self.link(self.repo_api(repo, "hooks")),
            clone=[
                {"name": "https", "href": self.web(f"{full_name}.git")},
                {"name": "ssh", "href": f"git@bitbucket.org:{full_name}.git"},
            ],
        )
        body.update(
            slug=repo["slug"],
            description=repo.get("description", ""),
            scm="git",
            website=None,
            owner={
                "display_name": ws["name"],
                "links": self.workspace(ws)["links"],
                "type": "team",
                "uuid": ws["uuid"],
                "username": ws["slug"],
            },
            workspace=self.workspace(ws),
            is_private=True,
            project={
                "type": "project",
                "key": project["key"],
                "uuid": project["uuid"],
                "name": project["name"],
                "links": {
                    "self": self.link(self.api(f"workspaces/{repo['workspace']}/projects/{project['key']}")),
                    "html": self.link(self.web(f"{repo['workspace']}/workspace/projects/{project['key']}")),
                    "avatar": self.link(
                        self.web(f"account/user/{repo['workspace']}/projects/{project['key']}/avatar/32")
                    ),
                },
            },
            fork_policy="no_public_forks",
            created_on=repo["created_on"],
            updated_on=repo["updated_on"],
            size=size,
            language=repo.get("language", ""),
            uuid=repo["uuid"],
            mainbranch={"name": repo["mainbranch"], "type": "branch"},
            override_settings={"default_merge_strategy": True, "branching_model": True},
            parent=None,
            enforced_signed_commits=None,
            has_issues=False,
            has_wiki=False,
        )
        return body

    # -- commits and branches -----------------------------------------------------------------

    def commit_mini(self, repo: Record, sha: str, short: bool = False) -> Record:
        return {
            "type": "commit",
            "hash": sha[:SHORT] if short else sha,
            "links": {
                "self": self.link(self.repo_api(repo, f"commit/{sha}")),
                "html": self.link(self.repo_web(repo, f"commits/{sha}")),
            },
        }

    def author(self, c: CommitInfo) -> Record:
        body: Record = {"type": "author", "raw": c.author_raw}
        user = self.user(self.user_by_email(c.author_email))
        if user is not None:
            body["user"] = user
        return body

    def commit(self, repo: Record, c: CommitInfo) -> Record:
        body = self.commit_mini(repo, c.hash)
        body["links"].update(
            diff=self.link(self.repo_api(repo, f"diff/{c.hash}")),
            approve=self.link(self.repo_api(repo, f"commit/{c.hash}/approve")),
            comments=self.link(self.repo_api(repo, f"commit/{c.hash}/comments")),
            statuses=self.link(self.repo_api(repo, f"commit/{c.hash}/statuses")),
            patch=self.link(self.repo_api(repo, f"patch/{c.hash}")),
        )
        body.update(
            repository=self.repository_mini(repo),
            author=self.author(c),
            date=c.date,
            message=c.message,
            summary=rendered(c.message),
            rendered={"message": rendered(c.message)},
            parents=[self.commit_mini(repo, p) for p in c.parents],
        )
        return body

    def branch(self, repo: Record, name: str, target: CommitInfo) -> Record:
        return {
            "name": name,
            "target": self.commit(repo, target),
            "links": {
                "self": self.link(self.repo_api(repo, f"refs/branches/{name}")),
                "commits": self.link(self.repo_api(repo, f"commits/{name}")),
                "html": self.link(self.repo_web(repo, f"branch/{name}")),
            },
            "type": "branch",
            "merge_strategies": list(MERGE_STRATEGIES),
            "default_merge_strategy": "merge_commit",
        }

    def branch_ref(self, repo: Record, name: str, target: CommitInfo) -> Record:
        """A branch as webhook push changes show it (``old``/``new``)."""
        return self.branch(repo, name, target)

    # -- commit statuses ----------------------------------------------------------------------

    def status(self, repo: Record, s: Record) -> Record:
        sha = s["commit"]
        return {
            "type": "build",
            "uuid": s["uuid"],
            "key": s["key"],
            "refname": s.get("refname"),
            "url": s["url"],
            "state": s["state"],
            "name": s.get("name"),
            "description": s.get("description") or "",
            "created_on": s["created_on"],
            "updated_on": s["updated_on"],
            "commit": {
                "type": "commit",
                "hash": sha,
                "links": {
                    "self": self.link(self.repo_api(repo, f"commit/{sha}")),
                    "html": self.link(self.repo_web(repo, f"commits/{sha}")),
                },
            },
            "repository": self.repository_mini(repo),
            "links": {
                "self": self.link(self.repo_api(repo, f"commit/{sha}/statuses/build/{_q(s['key'])}")),
                "commit": self.link(self.repo_api(repo, f"commit/{sha}")),
            },
        }

    # -- pull requests ------------------------------------------------------------------------

    def pr_mini(self, repo: Record, pr: Record) -> Record:
        return {
            "type": "pullrequest",
            "id": pr["id"],
            "title": pr["title"],
            "links": {
                "self": self.link(self.repo_api(repo, f"pullrequests/{pr['id']}")),
                "html": self.link(self.repo_web(repo, f"pull-requests/{pr['id']}")),
            },
        }

    def participant(self, p: Record) -> Record:
        return {
            "type": "participant",
            "user": self.user(p["user"]),
            "role": p["role"],
            "approved": p["approved"],
            "state": p["state"],
            "participated_on": p["participated_on"],
        }

    def endpoint(self, repo: Record, branch: str, sha: str) -> Record:
        return {
            "branch": {"name": branch},
            "commit": self.commit_mini(repo, sha, short=True),
            "repository": self.repository_mini(repo),
        }

    def pullrequest(self, repo: Record, pr: Record, source_sha: str, dest_sha: str) -> Record:
        n = pr["id"]
        links = {
            name: self.link(self.repo_api(repo, f"pullrequests/{n}/{path}" if path else f"pullrequests/{n}"))
            for name, path in (
                ("self", ""),
                ("commits", "commits"),
                ("approve", "approve"),
                ("request-changes", "request-changes"),
                ("diff", "diff"),
                ("diffstat", "diffstat"),
                ("comments", "comments"),
                ("activity", "activity"),
                ("merge", "merge"),
                ("decline", "decline"),
                ("statuses", "statuses"),
            )
        }
        links["html"] = self.link(self.repo_web(repo, f"pull-requests/{n}"))
        destination = self.endpoint(repo, pr["destination"], dest_sha)
        destination["branch"].update(
            merge_strategies=list(MERGE_STRATEGIES), default_merge_strategy="merge_commit"
        )
        return {
            "type": "pullrequest",
            "id": n,
            "title": pr["title"],
            "description": pr["description"],
            "rendered": {"title": rendered(pr["title"]), "description": rendered(pr["description"])},
            "summary": rendered(pr["description"]),
            "state": pr["state"],
            "draft": False,
            "queued": False,
            "author": self.user(pr["author"]),
            "source": self.endpoint(repo, pr["source"], source_sha),
            "destination": destination,
            "merge_commit": self.commit_mini(repo, pr["merge_commit"], short=True)
            if pr["merge_commit"]
            else None,
            "close_source_branch": pr["close_source_branch"],
            "closed_by": self.user(pr["closed_by"]),
            "reason": pr["reason"],
            "comment_count": len([c for c in pr["comments"] if not c.get("deleted")]),
            "task_count": 0,
            "created_on": pr["created_on"],
            "updated_on": pr["updated_on"],
            "reviewers": [self.user(r) for r in pr["reviewers"]],
            "participants": [self.participant(p) for p in pr["participants"]],
            "links": links,
        }

    def comment(self, repo: Record, pr: Record, c: Record) -> Record:
        path = f"pullrequests/{pr['id']}/comments/{c['id']}"
        return {
            "id": c["id"],
            "created_on": c["created_on"],
            "updated_on": c["updated_on"],
            "content": rendered(c["raw"]),
            "user": self.user(c["user"]),
            "deleted": False,
            "pending": False,
            "type": "pullrequest_comment",
            "links": {
                "self": self.link(self.repo_api(repo, path)),
                "html": self.link(self.repo_web(repo, f"pull-requests/{pr['id']}/_/diff#comment-{c['id']}")),
            },
            "pullrequest": self.pr_mini(repo, pr),
        }

    # -- webhooks -----------------------------------------------------------------------------

    def hook(self, repo: Record, h: Record) -> Record:
        return {
            "type": "webhook_subscription",
            "uuid": h["uuid"],
            "url": h["url"],
            "description": h["description"],
            "subject_type": "repository",
            "subject": self.repository_mini(repo),
            "active": h["active"],
            "created_at": h["created_at"],
            "events": sorted(h["events"]),
            "secret_set": bool(h.get("secret")),
            "read_only": None,
            "skip_cert_verification": h.get("skip_cert_verification", False),
            "history_enabled": False,
            "source": None,
            "links": {"self": self.link(self.repo_api(repo, f"hooks/{_q(h['uuid'])}"))},
        }
