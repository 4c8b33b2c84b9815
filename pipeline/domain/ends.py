"""How a release ends before it is released: superseded by a newer one, rejected by a person,
failed on staging, or failed on its way to production; each with its feedback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.domain.actions import (
    PRODUCTION_STATUS,
    STAGING_STATUS,
    Action,
    DeclinePullRequest,
    PostStatus,
    ReleaseDecision,
    Update,
    decision,
)
from pipeline.domain.approval import is_controller, said
from pipeline.domain.policy import Policy
from pipeline.model import (
    EventKind,
    Promotion,
    PullRequest,
    PullRequestActivity,
    Release,
    ReleaseChanges,
    State,
)


def rejection(
    release: Release, pr: PullRequest, activity: Sequence[PullRequestActivity], policy: Policy
) -> ReleaseDecision | None:
    """A person ended the release, saying who and why: an approver requested changes, or the pull
    request was declined (or merged) outside the controller."""
    if (
        pr.state == "DECLINED"
        and pr.closed_by is not None
        and is_controller(pr.closed_by, policy.approval, pr.author)
    ):
        return None  # the controller declined it (superseded, rolled back): its own reason follows
    decline: list[Action] = []
    if pr.state == "OPEN":
        requested = next(
            (
                p
                for p in pr.participants
                if p.state == "changes_requested"
                and p.user.is_one_of(policy.approval.approvers)
                and not is_controller(p.user, policy.approval, pr.author)
            ),
            None,
        )
        if requested is None:
            return None
        who = requested.user.username
        why = f"{who} requested changes on release pull request #{pr.id}: {said(requested.user, activity)}"
        decline.append(
            DeclinePullRequest(
                f"Rejected: {why}. This release will not go to production; the next merge into "
                f"{release.branch} brings a new candidate."
            )
        )
    else:
        who = pr.closed_by.username if pr.closed_by else "someone"
        given = pr.reason.strip() or next(
            (a.text.strip() for a in activity if a.kind == "update" and a.state == pr.state and a.text), ""
        )
        because = f": {given[:200]!r}" if given else " (no reason given)"
        outside = " outside the controller" if pr.state == "MERGED" else ""
        why = f"release pull request #{pr.id} was {pr.state.lower()} by {who}{outside}{because}"
        if pr.state == "MERGED":
            why += "; production was not changed"
    return decision(
        Update(EventKind.ReleaseRejected, why, State.REJECTED, actor=who, refs={"pull_request": str(pr.id)}),
        PostStatus(PRODUCTION_STATUS, "STOPPED", why[:140], release.pull_request_url),
        *decline,
    )


def supersede(release: Release, newer: Release) -> ReleaseDecision:
    """A newer release that contains this one takes its place."""
    link = f" ({newer.pull_request_url})" if newer.pull_request_url else ""
    why = f"superseded by release {newer.id} of {newer.commit[:12]}{link}"
    actions: list[Action] = [
        Update(
            EventKind.ReleaseSuperseded,
            why,
            State.SUPERSEDED,
            {"superseded_by": newer.id},
            {"release": str(newer.id)},
        )
    ]
    if release.pull_request_id is not None:
        actions.append(DeclinePullRequest(f"Superseded by release {newer.id} of {newer.commit[:12]}{link}."))
    return decision(*actions)


def staging_failed(
    release: Release,
    kind: EventKind,
    why: str,
    fields: ReleaseChanges,
    refs: Mapping[str, str],
    *,
    detail: str = "",
) -> ReleaseDecision:
    """The release ends on staging (its build, release phase or checks failed), said on its commit."""
    return decision(
        Update(kind, why, State.STAGING_FAILED, fields, refs, detail=detail),
        PostStatus(STAGING_STATUS, "FAILED", why[:140]),
    )


def promotion_failed(
    release: Release, why: str, refs: Mapping[str, str], fields: ReleaseChanges | None = None
) -> ReleaseDecision:
    """The release ends on its way to production, which still runs what it ran, said on its commit."""
    return decision(
        Update(EventKind.PromotionFailed, why, State.PROMOTION_FAILED, fields or {}, refs),
        PostStatus(PRODUCTION_STATUS, "FAILED", why[:140]),
    )


def failed_target(promotion: Promotion | None) -> str | None:
    """Why a promotion failed, from its failed target, or None."""
    if promotion is None:
        return None
    for t in promotion.targets:
        if t.status == "failed":
            return f"promotion {promotion.id} failed: {t.error_message or 'no message'}"
    return None
