"""Closing pull requests: merging one (at once, or as a task to poll) and the shared close step.

``merge_commit`` makes a real two-parent merge commit, ``squash`` a one-parent commit with the
merged tree, ``fast_forward`` moves the destination to the source tip or fails with a 400.

A merge runs at once and answers 200 with the merged pull request, unless the stand-in merges
asynchronously (``BitbucketCloud(merge_mode="async")``, or ``?async=true`` on the request): then
``POST .../merge`` answers 202 with a ``Location`` to ``.../merge/task-status/<task id>`` and the
pull request stays OPEN while the task is pending. The merge itself happens ``delay`` seconds
later, in the background. Polling the task answers ``PENDING`` until then, and always on the
first poll; then ``SUCCESS`` with ``merge_result`` (the merged pull request), or the merge's
error as a 400. The task answers 403 to anyone but the account that queued it and 400 for a task
id that is not this pull request's. While a task of a pull request is pending, another merge of
it is a 409. A ``merge_timeout`` fault (``sandbox.faults``) makes one merge answer 555 and go on
as such a task. Tasks live in memory: a restart forgets them (and a pending merge with them).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.bitbucket import events
from sandbox.bitbucket.errors import ApiError, bad_request, field_error
from sandbox.bitbucket.gitrepo import MergeConflict, RefMoved
from sandbox.bitbucket.shapes import now
from sandbox.bitbucket.store import Record

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

STRATEGIES = ("merge_commit", "squash", "fast_forward")
ALREADY_MERGING = "There is already a merge in progress for this pull request."
TIMED_OUT = (
    "The merge took too long and timed out. It may still complete: check the pull request before retrying."
)
MERGE_MODES = ("sync", "async")


def require_open(pr: Record, action: str) -> None:
    if pr["state"] != "OPEN":
        raise bad_request(
            f"You can't {action} a pull request that is {pr['state'].lower()}.",
            f"Pull request #{pr['id']} is {pr['state']}; only OPEN pull requests can be changed.",
        )


def close_pullrequest(pr: Record, state: str, me: str) -> None:
    """Mark ``pr`` MERGED or DECLINED by ``me`` and record it in its activity."""
    stamp = now()
    pr.update(state=state, closed_by=me, updated_on=stamp)
    pr["activity"].append(
        {
            "kind": "update",
            "date": stamp,
            "user": me,
            "state": state,
            "reason": pr["reason"],
            "source_hash": pr["source_hash"],
            "dest_hash": pr["dest_hash"],
        }
    )


@dataclass(frozen=True)
class MergeOrder:
    """What ``POST .../merge`` asked for, validated."""

    strategy: str
    message: str | None
    close_source_branch: bool | None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> MergeOrder:
        strategy = body.get("merge_strategy") or "merge_commit"
        if strategy not in STRATEGIES:
            raise field_error("merge_strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}.")
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            raise field_error("message", "must be a string.")
        close = body.get("close_source_branch")
        return cls(strategy, message, None if close is None else bool(close))


@dataclass
class MergeTask:
    id: str
    repo_key: str
    pr_id: int
    actor: str
    order: MergeOrder
    done: bool = False
    error: ApiError | None = None
    polls: int = 0
    timer: threading.Timer | None = field(default=None, repr=False)


class Merger:
    """Merges pull requests of ``bb``; ``delay`` is how long a queued merge stays pending."""

    def __init__(self, bb: BitbucketCloud, delay: float = 1.0) -> None:
        self.bb = bb
        self.delay = delay
        self._tasks: dict[str, MergeTask] = {}
        self._closed = False

    # -- at once ------------------------------------------------------------------------------

    def merge_now(self, repo: Record, pr: Record, actor: str, order: MergeOrder) -> None:
        """Merge ``pr`` as ``actor``; call with the stand-in's lock held. Raises ApiError."""
        bb = self.bb
        git = bb.git(repo)
        require_open(pr, "merge")
        source, dest = pr["source"], pr["destination"]
        source_sha, dest_sha = git.branch(source), git.branch(dest)
        if source_sha is None or dest_sha is None:
            gone = source if source_sha is None else dest
            raise bad_request("Unable to merge", f'Branch "{gone}" no longer exists.')
        default_message = f"Merged in {source} (pull request #{pr['id']})\n\n{pr['title']}\n"
        identity = bb.identity(actor, now())
        if order.strategy == "fast_forward":
            if not git.is_ancestor(dest_sha, source_sha):
                raise bad_request(
                    "Unable to merge: fast-forward is not possible",
                    f"{dest} has commits that {source} does not have. Rebase {source} onto {dest}, or "
                    "merge with merge_commit or squash.",
                )
            result = source_sha
        else:
            try:
                tree = git.merge_tree(dest_sha, source_sha)
            except MergeConflict as exc:
                conflicts = f"Conflicts in {', '.join(exc.paths)}."
                raise ApiError(409, "Unable to merge: the pull request has conflicts", conflicts) from None
            parents = [dest_sha, source_sha] if order.strategy == "merge_commit" else [dest_sha]
            text = order.message or default_message
            result = git.commit_tree(tree, parents, text if text.endswith("\n") else text + "\n", identity)
        try:
            bb.move_branch(repo, actor, dest, dest_sha, result)
        except RefMoved as exc:
            raise ApiError(409, "The destination branch moved during the merge; retry", str(exc)) from None
        pr.update(merge_commit=result, source_hash=source_sha, dest_hash=dest_sha, merge_base=dest_sha)
        close_pullrequest(pr, "MERGED", actor)
        close_source = order.close_source_branch
        if close_source is None:
            close_source = pr["close_source_branch"]
        bb.save(repo)
        events.pullrequest(bb, repo, pr, "pullrequest:fulfilled", actor)
        if close_source and source != repo["mainbranch"] and git.branch(source) == source_sha:
            bb.move_branch(repo, actor, source, source_sha, None)

    # -- as a task ----------------------------------------------------------------------------

    def pending(self, repo: Record, pr: Record) -> MergeTask | None:
        key = f"{repo['workspace']}/{repo['slug']}"
        for task in self._tasks.values():
            if not task.done and task.repo_key == key and task.pr_id == pr["id"]:
                return task
        return None

    def refuse_if_merging(self, repo: Record, pr: Record) -> None:
        """409 while a merge of ``pr`` is pending; call with the lock held."""
        if self.pending(repo, pr) is not None:
            raise ApiError(409, ALREADY_MERGING)

    def queue(self, repo: Record, pr: Record, actor: str, order: MergeOrder) -> MergeTask:
        """Queue the merge of an open ``pr`` (no other pending); call with the lock held."""
        require_open(pr, "merge")
        self.refuse_if_merging(repo, pr)
        task = MergeTask(uuid.uuid4().hex, f"{repo['workspace']}/{repo['slug']}", pr["id"], actor, order)
        self._tasks[task.id] = task
        if not self._closed:
            task.timer = threading.Timer(self.delay, self._run, args=(task,))
            task.timer.daemon = True
            task.timer.start()
        return task

    def _run(self, task: MergeTask) -> None:
        bb = self.bb
        with bb.lock:
            repo = bb.store.repos.get(task.repo_key)
            pr = repo["pullrequests"].get(str(task.pr_id)) if repo is not None else None
            try:
                if repo is None or pr is None:
                    raise bad_request("Unable to merge", "The pull request no longer exists.")
                self.merge_now(repo, pr, task.actor, task.order)
            except ApiError as exc:
                task.error = ApiError(400, exc.message, exc.detail, exc.fields)
            except Exception as exc:  # the task reports it; the stand-in goes on
                what = f"{type(exc).__name__}: {exc}"
                task.error = ApiError(400, "Something went wrong during the merge", what)
            task.done = True

    def status_url(self, repo: Record, task: MergeTask) -> str:
        return self.bb.shapes.repo_api(repo, f"pullrequests/{task.pr_id}/merge/task-status/{task.id}")

    def status(self, repo: Record, pr: Record, task_id: str, asker: str) -> dict[str, Any]:
        """The task-status answer for ``asker``; call with the lock held. Raises ApiError."""
        task = self._tasks.get(task_id)
        if task is None or task.repo_key != f"{repo['workspace']}/{repo['slug']}" or task.pr_id != pr["id"]:
            raise bad_request("The task ID does not relate to this pull request.")
        if task.actor != asker:
            raise ApiError(403, "Forbidden", "Only the account that queued this merge can see its status.")
        links = {"self": {"href": self.status_url(repo, task)}}
        task.polls += 1
        if not task.done or task.polls == 1:
            return {"task_status": "PENDING", "links": links}
        if task.error is not None:
            raise task.error
        return {
            "task_status": "SUCCESS",
            "links": links,
            "merge_result": self.bb.shapes.pullrequest(repo, pr, pr["source_hash"], pr["dest_hash"]),
        }

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no merge task is pending (for tests); False on timeout."""
        for task in list(self._tasks.values()):
            if task.timer is not None:
                task.timer.join(timeout)
        return all(t.done for t in self._tasks.values())

    def close(self) -> None:
        self._closed = True
        for task in self._tasks.values():
            if task.timer is not None:
                task.timer.cancel()
