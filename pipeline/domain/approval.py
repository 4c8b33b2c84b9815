"""Judging approvals: who approved what, and whether it counts under the approval policy; the
events an approval's judgement gives; the evidence kept with a release's approval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from pipeline.domain.actions import (
    Update,
)
from pipeline.domain.policy import (
    Policy,
    approval_digest,
    approval_policy,
)
from pipeline.domain.text import (
    _iso,
    _same_commit,
    span_text,
)
from pipeline.model import (
    Approval,
    Participant,
    Person,
    PullRequest,
    PullRequestActivity,
    Release,
)

LOSING_EVENTS = frozenset({"ApprovalWithdrawn", "ApprovalVoided"})


def judge_approvals(
    release: Release,
    pr: PullRequest,
    release_branch_head: str | None,
    policy: Policy,
    now: datetime,
    activity: Sequence[PullRequestActivity] = (),
) -> tuple[Approval, ...]:
    """Every approval (and request for changes) on the release pull request, each counted or not
    with the reason and its evidence (pull request, commit, policy digest).

    An approval counts when the approver is listed in ``approval.approvers``, is not the controller's
    account, wrote no commit in the release (unless ``authors_may_approve``), no commit of the
    release has an author linked to no account (unless ``unlinked_authors`` is ``allow``), approved
    after staging was verified, after the last move of the release branch (the pull request's
    activity shows every move), while the branch points at the release's commit, and at most
    ``approval_max_age`` before ``now``. Distinct people only (Bitbucket lists each once). A request
    for changes "counts" when a listed approver made it: it rejects the release.
    """
    digest = approval_digest(policy)
    branch_moved = release_branch_head is None or not release.commit.startswith(release_branch_head[:12])
    moved = last_branch_move(activity, release.commit)
    judged: list[Approval] = []
    for p in pr.participants:
        if p.approved:
            kind = "approval"
        elif p.state == "changes_requested":
            kind = "changes_requested"
        else:
            continue
        at = p.participated_on or release.created_at
        if kind == "changes_requested":
            counted, reason = _judge_change_request(p.user, pr, activity, policy)
        else:
            why_not = _why_not_counted(release, p, at, branch_moved, release_branch_head, moved, policy, now)
            counted = why_not is None
            reason = why_not or (
                f"{p.user.username} is an approver and approved {release.commit[:12]} after staging "
                "verification, with the release branch unmoved"
            )
        judged.append(
            Approval(
                p.user,
                at,
                counted,
                reason,
                pull_request_id=pr.id,
                commit=release.commit,
                policy_digest=digest,
                kind=kind,
            )
        )
    return tuple(judged)


def _why_not_counted(
    release: Release,
    p: Participant,
    at: datetime,
    branch_moved: bool,
    release_branch_head: str | None,
    moved: tuple[datetime, str] | None,
    policy: Policy,
    now: datetime,
) -> str | None:
    """Why approval participant ``p`` does not count, or None when it does (see judge_approvals)."""
    name = p.user.username
    if policy.controller_account is not None and p.user.same_as(policy.controller_account):
        return "the controller's own account never counts"
    if not p.user.is_one_of(policy.approvers):
        return f"{name} is not an approver (approval.approvers: {policy.approvers_text})"
    if not policy.authors_may_approve:
        wrote = next(
            (
                c
                for c in release.commits
                if (c.author is not None and c.author.same_as(p.user))
                or (c.author is None and p.user.display_name and c.author_name == p.user.display_name)
            ),
            None,
        )
        if wrote is not None:
            return f"{name} wrote commit {wrote.hash[:12]} in this release; authors never approve their work"
        unlinked = next((c for c in release.commits if c.author is None), None)
        if unlinked is not None and policy.unlinked_authors == "block":
            author = unlinked.author_name or unlinked.author_raw
            return (
                f"commit {unlinked.hash[:12]} is by {author!r}, an e-mail linked to no Bitbucket "
                f"account: nobody can show {name} did not write it "
                "(link the e-mail to its account, or set approval.unlinked_authors: allow)"
            )
    if p.participated_on is None:
        return f"Bitbucket gives no time for {name}'s approval: it cannot be shown to follow verification"
    if release.staging_verified_at is None or at < release.staging_verified_at:
        return f"{name} approved at {_iso(at)}, before staging was verified"
    if branch_moved:
        where = release_branch_head[:12] if release_branch_head else "nowhere (deleted)"
        return (
            f"release branch {release.release_branch} points at {where}, not at {release.commit[:12]}: "
            "approvals are bound to the commit verified on staging"
        )
    if moved is not None and at <= moved[0]:
        return (
            f"{name} approved at {_iso(at)}, before release branch {release.release_branch} moved "
            f"(to {moved[1][:12]} at {_iso(moved[0])}): a move voids every earlier approval; approve again"
        )
    if policy.approval_max_age is not None and now - at > policy.approval_max_age:
        return (
            f"{name} approved at {_iso(at)}, more than {span_text(policy.approval_max_age)} ago "
            "(approval.max_age): unapprove and approve again"
        )
    return None


def _judge_change_request(
    user: Person, pr: PullRequest, activity: Sequence[PullRequestActivity], policy: Policy
) -> tuple[bool, str]:
    """Whether a request for changes rejects the release (a listed approver's does), and why."""
    if policy.controller_account is not None and user.same_as(policy.controller_account):
        return False, "the controller's own account never rejects"
    if not user.is_one_of(policy.approvers):
        return (
            False,
            f"{user.username} requested changes but is not an approver: it does not reject the release",
        )
    return (
        True,
        f"{user.username} requested changes on release pull request #{pr.id}: {_said(user, activity)}",
    )


def last_branch_move(activity: Sequence[PullRequestActivity], commit: str) -> tuple[datetime, str] | None:
    """When the pull request's source branch last moved, and to what, from its activity (newest
    first): an update whose source commit differs from the update before it. A pull request opened
    from anything but ``commit`` counts as moved when it was opened."""
    updates = [a for a in reversed(activity) if a.kind == "update" and a.source_commit]
    moved: tuple[datetime, str] | None = None
    previous = commit
    for update in updates:
        if not _same_commit(update.source_commit, previous):
            moved = (update.at, update.source_commit)
        previous = update.source_commit
    return moved


def _said(user: Person, activity: Sequence[PullRequestActivity]) -> str:
    """What ``user`` last wrote on the pull request (its first line), or that they wrote nothing."""
    said = next((a.text for a in activity if a.kind == "comment" and a.user and a.user.same_as(user)), "")
    line = (said.strip().splitlines() or [""])[0][:200]
    return repr(line) if line else "no comment given"


def _approval_events(release: Release, judged: tuple[Approval, ...]) -> list[Update]:
    """An event for every approval that is new or judged differently than last time, and one when
    an approval was withdrawn (unapproved in Bitbucket)."""
    before = {_approval_key(a): a for a in release.approvals}
    now_seen = {_approval_key(a) for a in judged}
    updates: list[Update] = []
    for a in judged:
        old = before.get(_approval_key(a))
        if old is not None and old.counted == a.counted and old.reason == a.reason:
            continue
        if a.kind == "changes_requested":
            kind = "ChangesRequested" if a.counted else "ChangesRequestIgnored"
        elif a.counted:
            kind = "ApprovalCounted"
        else:
            kind = "ApprovalVoided" if old is not None and old.counted else "ApprovalIgnored"
        updates.append(Update(kind, a.reason, fields={"approvals": judged}, actor=a.user.username))
    gone = [a for key, a in before.items() if key not in now_seen and a.kind == "approval"]
    for a in gone:
        why = f"{a.user.username} withdrew the approval given at {_iso(a.at)}"
        updates.append(Update("ApprovalWithdrawn", why, fields={"approvals": judged}, actor=a.user.username))
    if not updates and len(judged) != len(release.approvals):
        updates.append(Update("ApprovalsChanged", "approvals changed", fields={"approvals": judged}))
    return updates


def _approval_key(a: Approval) -> tuple[str, str, datetime]:
    return (a.kind, a.user.uuid or a.user.account_id or a.user.username, a.at)


def _approval_evidence(counted: Sequence[Approval], policy: Policy) -> str:
    """The evidence kept with ReleaseApproved: each counted approval and the policy they were judged by."""
    return json.dumps(
        {
            "approvals": [
                {
                    "approver": a.user.username,
                    "uuid": a.user.uuid,
                    "account_id": a.user.account_id,
                    "at": _iso(a.at),
                    "pull_request": a.pull_request_id,
                    "commit": a.commit,
                    "policy_digest": a.policy_digest,
                }
                for a in counted
            ],
            "policy": approval_policy(policy),
            "policy_digest": approval_digest(policy),
        },
        indent=2,
        sort_keys=True,
    )
