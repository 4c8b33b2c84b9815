"""How a release ends before it is released: superseded by a newer one, rejected by a person,
failed on staging, or failed on its way to production; each with its feedback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.domain.actions import (
    PRODUCTION_STATUS,
    STAGING_STATUS,
    Action,
    Decision,
    DeclinePullRequest,
    PostStatus,
    Update,
    _decision,
)
from pipeline.domain.approval import (
    _said,
)
from pipeline.domain.policy import (
    Policy,
)
from pipeline.model import (
    Promotion,
    PullRequest,
    PullRequestActivity,
    Release,
    State,
)


def _closed(
    release: Release, pr: PullRequest, activity: Sequence[PullRequestActivity], policy: Policy
) -> Decision | None:
    """A person ended the release, saying who and why: an approver requested changes, or the pull
    request was declined (or merged) outside the controller."""
    if (
        pr.state == "DECLINED"
        and pr.closed_by is not None
        and pr.closed_by.same_as(policy.controller_account)
    ):
        return None  # the controller declined it (superseded, rolled back): its own reason follows
    decline: list[Action] = []
    if pr.state == "OPEN":
        requested = next(
            (
                p
                for p in pr.participants
                if p.state == "changes_requested"
                and p.user.is_one_of(policy.approvers)
                and not p.user.same_as(policy.controller_account)
            ),
            None,
        )
        if requested is None:
            return None
        who = requested.user.username
        why = f"{who} requested changes on release pull request #{pr.id}: {_said(requested.user, activity)}"
        decline.append(
            DeclinePullRequest(
                f"Rejected: {why}. This release will not go to production; the next merge into "
                f"{release.branch} brings a new candidate."
            )
        )
    else:
        who = pr.closed_by.username if pr.closed_by else "someone"
        said = pr.reason.strip() or next(
            (a.text.strip() for a in activity if a.kind == "update" and a.state == pr.state and a.text), ""
        )
        because = f": {said[:200]!r}" if said else " (no reason given)"
        outside = " outside the controller" if pr.state == "MERGED" else ""
        why = f"release pull request #{pr.id} was {pr.state.lower()} by {who}{outside}{because}"
        if pr.state == "MERGED":
            why += "; production was not changed"
    return _decision(
        Update("ReleaseRejected", why, State.REJECTED, actor=who, refs={"pull_request": str(pr.id)}),
        PostStatus(PRODUCTION_STATUS, "STOPPED", why[:140], release.pull_request_url),
        *decline,
    )


def _supersede(release: Release, newer: Release) -> Decision:
    link = f" ({newer.pull_request_url})" if newer.pull_request_url else ""
    why = f"superseded by release {newer.id} of {newer.commit[:12]}{link}"
    actions: list[Action] = [
        Update(
            "ReleaseSuperseded",
            why,
            State.SUPERSEDED,
            {"superseded_by": newer.id},
            {"release": str(newer.id)},
        )
    ]
    if release.pull_request_id is not None:
        actions.append(DeclinePullRequest(f"Superseded by release {newer.id} of {newer.commit[:12]}{link}."))
    return _decision(*actions)


def _staging_failed(
    release: Release,
    kind: str,
    why: str,
    fields: Mapping[str, Any],
    refs: Mapping[str, str],
    *,
    detail: str = "",
) -> Decision:
    return _decision(
        Update(kind, why, State.STAGING_FAILED, fields, refs, detail=detail),
        PostStatus(STAGING_STATUS, "FAILED", why[:140]),
    )


def _promotion_failed(
    release: Release, why: str, refs: Mapping[str, str], fields: Mapping[str, Any] | None = None
) -> Decision:
    return _decision(
        Update("PromotionFailed", why, State.PROMOTION_FAILED, dict(fields or {}), refs),
        PostStatus(PRODUCTION_STATUS, "FAILED", why[:140]),
    )


def _failed_target(promotion: Promotion | None) -> str | None:
    if promotion is None:
        return None
    for t in promotion.targets:
        if t.status == "failed":
            return f"promotion {promotion.id} failed: {t.error_message or 'no message'}"
    return None
