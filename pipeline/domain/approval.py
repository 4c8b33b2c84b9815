"""Judging approvals: who approved what, and whether it counts under the approval policy (each rule
one function of ``RULES``); the events an approval's judgement gives; the evidence kept with a
release's approval.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.actions import ReleaseUpdate, Update
from pipeline.domain.policy import ApprovalPolicy, Policy
from pipeline.domain.text import iso, same_commit, span_text
from pipeline.model import (
    Approval,
    EventKind,
    Participant,
    Person,
    PullRequest,
    PullRequestActivity,
    Release,
)

# Events by which a counted approval stops counting.
LOSING_EVENTS = frozenset({EventKind.ApprovalWithdrawn, EventKind.ApprovalVoided})


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

    An approval counts when no rule of ``RULES`` has a reason against it: the approver is listed in
    ``approval.approvers``, is not the controller's account, wrote no commit in the release (unless
    ``authors_may_approve``), no commit of the release has an author linked to no account (unless
    ``unlinked_authors`` is ``allow``), approved after staging was verified, after the last move of
    the release branch (the pull request's activity shows every move), while the branch points at
    the release's commit, and at most ``approval.max_age`` before ``now``. Distinct people only
    (Bitbucket lists each once). A request for changes "counts" when a listed approver made it: it
    rejects the release.
    """
    rules = policy.approval
    branch = BranchSeen(release_branch_head, last_branch_move(activity, release.commit))
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
            counted, reason = _judge_change_request(p.user, pr, activity, rules)
        else:
            case = Case(release, p, at, branch, rules, now, opened_by=pr.author)
            why_not = next((why for rule in RULES if (why := rule(case)) is not None), None)
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
                policy_digest=rules.digest,
                kind=kind,
            )
        )
    return tuple(judged)


# --- The rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BranchSeen:
    """Where the release branch points now (None: deleted), and its last move seen in the pull
    request's activity (when, and to which commit), if any."""

    head: str | None
    last_move: tuple[datetime, str] | None


@dataclass(frozen=True)
class Case:
    """One approval to judge: who gave it (``participant``) and when (``at``), on which release, with
    the release branch as seen, under ``policy``, at ``now``."""

    release: Release
    participant: Participant
    at: datetime
    branch: BranchSeen
    policy: ApprovalPolicy
    now: datetime
    opened_by: Person | None = None  # the release pull request's author: the controller, which opened it

    @property
    def name(self) -> str:
        return self.participant.user.username or self.participant.user.display_name


def _not_the_controller(case: Case) -> str | None:
    """The controller's own account (known from its credential, or as the author of the release pull
    request it opened: an access token's bot account is known no other way) never counts."""
    if is_controller(case.participant.user, case.policy, case.opened_by):
        return "the controller's own account never counts"
    return None


def _an_approver(case: Case) -> str | None:
    if not case.participant.user.is_one_of(case.policy.approvers):
        return f"{case.name} is not an approver (approval.approvers: {case.policy.approvers_text})"
    return None


def _not_an_author(case: Case) -> str | None:
    """``approval.authors_may_approve``: false (the default) never counts an author's approval; a
    commit under the approver's display name with an unlinked e-mail counts as theirs."""
    if case.policy.authors_may_approve:
        return None
    user = case.participant.user
    wrote = next(
        (
            c
            for c in case.release.commits
            if (c.author is not None and c.author.same_as(user))
            or (c.author is None and user.display_name and c.author_name == user.display_name)
        ),
        None,
    )
    if wrote is not None:
        return f"{case.name} wrote commit {wrote.hash[:12]} in this release; authors never approve their work"
    return None


def _no_unlinked_author(case: Case) -> str | None:
    """``approval.unlinked_authors: block`` (the default, while authors may not approve): no approval
    counts while a commit's author e-mail has no Bitbucket account."""
    if case.policy.authors_may_approve or case.policy.unlinked_authors != "block":
        return None
    unlinked = next((c for c in case.release.commits if c.author is None), None)
    if unlinked is None:
        return None
    author = unlinked.author_name or unlinked.author_raw
    return (
        f"commit {unlinked.hash[:12]} is by {author!r}, an e-mail linked to no Bitbucket "
        f"account: nobody can show {case.name} did not write it "
        "(link the e-mail to its account, or set approval.unlinked_authors: allow)"
    )


def _dated(case: Case) -> str | None:
    if case.participant.participated_on is None:
        return (
            f"Bitbucket gives no time for {case.name}'s approval: it cannot be shown to follow verification"
        )
    return None


def _after_verification(case: Case) -> str | None:
    verified = case.release.staging_verified_at
    if verified is None or case.at < verified:
        return f"{case.name} approved at {iso(case.at)}, before staging was verified"
    return None


def _on_the_commit(case: Case) -> str | None:
    """Approvals are bound to the commit verified on staging: the release branch must point at it."""
    release, head = case.release, case.branch.head
    if head is not None and release.commit.startswith(head[:12]):
        return None
    where = head[:12] if head else "nowhere (deleted)"
    return (
        f"release branch {release.release_branch} points at {where}, not at {release.commit[:12]}: "
        "approvals are bound to the commit verified on staging"
    )


def _after_the_last_move(case: Case) -> str | None:
    """Any move of the release branch voids every earlier approval, even one later moved back."""
    moved = case.branch.last_move
    if moved is None or case.at > moved[0]:
        return None
    return (
        f"{case.name} approved at {iso(case.at)}, before release branch {case.release.release_branch} moved "
        f"(to {moved[1][:12]} at {iso(moved[0])}): a move voids every earlier approval; approve again"
    )


def _fresh(case: Case) -> str | None:
    """``approval.max_age``: judged again at every look, the moment of promotion included."""
    max_age = case.policy.max_age
    if max_age is None or case.now - case.at <= max_age:
        return None
    return (
        f"{case.name} approved at {iso(case.at)}, more than {span_text(max_age)} ago "
        "(approval.max_age): unapprove and approve again"
    )


Rule = Callable[[Case], str | None]

# Each rule says why an approval does not count, or None; the first reason found is the one given.
# A new rule is one function here, and its switch (if any) a field of ``ApprovalPolicy``.
RULES: tuple[Rule, ...] = (
    _not_the_controller,
    _an_approver,
    _not_an_author,
    _no_unlinked_author,
    _dated,
    _after_verification,
    _on_the_commit,
    _after_the_last_move,
    _fresh,
)


def _judge_change_request(
    user: Person, pr: PullRequest, activity: Sequence[PullRequestActivity], policy: ApprovalPolicy
) -> tuple[bool, str]:
    """Whether a request for changes rejects the release (a listed approver's does), and why."""
    if is_controller(user, policy, pr.author):
        return False, "the controller's own account never rejects"
    if not user.is_one_of(policy.approvers):
        return (
            False,
            f"{user.username} requested changes but is not an approver: it does not reject the release",
        )
    return (
        True,
        f"{user.username} requested changes on release pull request #{pr.id}: {said(user, activity)}",
    )


def is_controller(user: Person, policy: ApprovalPolicy, opened_by: Person | None) -> bool:
    """Whether ``user`` is the controller: its account as its credential tells, or the author of the
    release pull request (``opened_by``), which only the controller opens."""
    bot = policy.controller_account
    return (bot is not None and user.same_as(bot)) or (opened_by is not None and user.same_as(opened_by))


def last_branch_move(activity: Sequence[PullRequestActivity], commit: str) -> tuple[datetime, str] | None:
    """When the pull request's source branch last moved, and to what, from its activity (newest
    first): an update whose source commit differs from the update before it. A pull request opened
    from anything but ``commit`` counts as moved when it was opened."""
    updates = [a for a in reversed(activity) if a.kind == "update" and a.source_commit]
    moved: tuple[datetime, str] | None = None
    previous = commit
    for update in updates:
        if not same_commit(update.source_commit, previous):
            moved = (update.at, update.source_commit)
        previous = update.source_commit
    return moved


def said(user: Person, activity: Sequence[PullRequestActivity]) -> str:
    """What ``user`` last wrote on the pull request (its first line), or that they wrote nothing."""
    said = next((a.text for a in activity if a.kind == "comment" and a.user and a.user.same_as(user)), "")
    line = (said.strip().splitlines() or [""])[0][:200]
    return repr(line) if line else "no comment given"


def approval_events(release: Release, judged: tuple[Approval, ...]) -> list[ReleaseUpdate]:
    """An event for every approval that is new or judged differently than last time, and one when
    an approval was withdrawn (unapproved in Bitbucket)."""
    before = {_approval_key(a): a for a in release.approvals}
    now_seen = {_approval_key(a) for a in judged}
    updates: list[ReleaseUpdate] = []
    for a in judged:
        old = before.get(_approval_key(a))
        if old is not None and old.counted == a.counted and old.reason == a.reason:
            continue
        if a.kind == "changes_requested":
            kind = EventKind.ChangesRequested if a.counted else EventKind.ChangesRequestIgnored
        elif a.counted:
            kind = EventKind.ApprovalCounted
        else:
            voided = old is not None and old.counted
            kind = EventKind.ApprovalVoided if voided else EventKind.ApprovalIgnored
        updates.append(Update(kind, a.reason, fields={"approvals": judged}, actor=a.user.username))
    gone = [a for key, a in before.items() if key not in now_seen and a.kind == "approval"]
    for a in gone:
        why = f"{a.user.username} withdrew the approval given at {iso(a.at)}"
        updates.append(
            Update(EventKind.ApprovalWithdrawn, why, fields={"approvals": judged}, actor=a.user.username)
        )
    if not updates and len(judged) != len(release.approvals):
        updates.append(Update(EventKind.ApprovalsChanged, "approvals changed", fields={"approvals": judged}))
    return updates


def _approval_key(a: Approval) -> tuple[str, str, datetime]:
    return (a.kind, a.user.uuid or a.user.account_id or a.user.username, a.at)


def approval_evidence(counted: Sequence[Approval], policy: Policy) -> str:
    """The evidence kept with ReleaseApproved: each counted approval and the policy they were judged by."""
    return json.dumps(
        {
            "approvals": [
                {
                    "approver": a.user.username,
                    "uuid": a.user.uuid,
                    "account_id": a.user.account_id,
                    "at": iso(a.at),
                    "pull_request": a.pull_request_id,
                    "commit": a.commit,
                    "policy_digest": a.policy_digest,
                }
                for a in counted
            ],
            "policy": policy.approval.as_json(),
            "policy_digest": policy.approval.digest,
        },
        indent=2,
        sort_keys=True,
    )
