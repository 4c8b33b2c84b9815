"""Webhook payloads, as Bitbucket Cloud documents them, handed to ``BitbucketCloud.emit``.

``repo:push``: ``{actor, repository, push: {changes: [{old, new, created, closed, forced, truncated,
commits, links}]}}`` with ``commits`` newest first, at most 5 (``truncated`` says when there were
more). Pull request events: ``{actor, repository, pullrequest}`` plus ``approval{date, user}``
(approved/unapproved), ``changes_request{date, user}`` or ``comment``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.bitbucket.store import Record

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

PUSH_COMMITS = 5


def _common(bb: BitbucketCloud, repo: Record, actor: str) -> dict[str, Any]:
    ws = bb.store.workspaces[repo["workspace"]]
    repository = bb.shapes.repository(repo, ws, 0)
    for heavy in ("size", "override_settings", "mainbranch", "language", "has_issues", "has_wiki"):
        repository.pop(heavy, None)
    return {"actor": bb.shapes.user(actor), "repository": repository}


def push(bb: BitbucketCloud, repo: Record, actor: str, branch: str, old: str | None, new: str | None) -> None:
    """Fire ``repo:push`` for ``branch`` moving from ``old`` to ``new`` (None: absent)."""

    def payload() -> dict[str, Any]:
        git = bb.git(repo)
        shapes = bb.shapes
        # a new branch lists only what no other branch had, as Bitbucket does
        others = [sha for name, sha in git.branches().items() if name != branch]
        commits = git.log([new], [old] if old else others, limit=PUSH_COMMITS + 1) if new else []
        forced = bool(old and new and not git.is_ancestor(old, new))
        spec = f"{new}..{old}" if new and old else (new or old or "")
        change = {
            "old": shapes.branch_ref(repo, branch, git.commit(old)) if old else None,
            "new": shapes.branch_ref(repo, branch, git.commit(new)) if new else None,
            "created": old is None,
            "closed": new is None,
            "forced": forced,
            "truncated": len(commits) > PUSH_COMMITS,
            "commits": [shapes.commit(repo, c) for c in commits[:PUSH_COMMITS]],
            "links": {
                "commits": shapes.link(
                    shapes.repo_api(repo, f"commits?include={new}" + (f"&exclude={old}" if old else ""))
                ),
                "diff": shapes.link(shapes.repo_api(repo, f"diff/{spec}")),
                "html": shapes.link(shapes.repo_web(repo, f"branches/compare/{spec}")),
            },
        }
        body = _common(bb, repo, actor)
        body["push"] = {"changes": [change]}
        return body

    bb.emit(repo, "repo:push", payload)


def pullrequest(
    bb: BitbucketCloud, repo: Record, pr: Record, event: str, actor: str, extra: dict[str, Any] | None = None
) -> None:
    """Fire a ``pullrequest:*`` event with the pull request as it is now."""

    def payload() -> dict[str, Any]:
        body = _common(bb, repo, actor)
        body["pullrequest"] = bb.shapes.pullrequest(repo, pr, pr["source_hash"], pr["dest_hash"])
        body.update(extra or {})
        return body

    bb.emit(repo, event, payload)
