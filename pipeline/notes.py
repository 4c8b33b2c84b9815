"""What the controller writes in Bitbucket, from a ``Release`` (pure): the release pull request's
title and description (kept current as the release moves), its release notes, and the comments on
the merged pull requests when their change reaches staging and production.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from pipeline.domain import ApprovalPolicy, span_text
from pipeline.model import Change, Event, Release, State
from pipeline.ports import ChainHead

# The comment on a merged pull request starts with this, so a pass that died around posting it can
# tell whether it was posted (``comment_marker``).
_STAGE_WORDS = {
    "staging": "reached staging",
    "production": "reached production",
    "rolled_back": "was rolled back from production",
}


def title(release: Release) -> str:
    first = (release.commits[0].message.splitlines() or [""])[0] if release.commits else ""
    if release.changes:
        first = release.changes[0].title
    return f"Release {release.id}: {release.commit[:12]} {first}"[:200]


def release_notes(release: Release, since: Release | None = None, production_branch: str = "") -> str:
    """Markdown: the merged pull requests (title, author, link) and the commits since the last
    production release (``since``, when the store knows it) - everything production does not have."""
    lines = ["## Pull requests", ""]
    if release.changes:
        for change in release.changes:
            lines.append(f"- #{change.id} {change.title} ({_author(change)}) {change.url}")
    else:
        lines.append("- none (commits pushed directly)")
    lines += ["", f"## Commits since {_base(release, since, production_branch)} ({len(release.commits)})", ""]
    for commit in release.commits:
        who = commit.author.username if commit.author else commit.author_raw
        summary = (commit.message.splitlines() or [""])[0]
        lines.append(f"- `{commit.hash[:12]}` {summary} ({who})")
    return "\n".join(lines)


def pull_request_description(
    release: Release,
    rules: ApprovalPolicy,
    events: Sequence[Event] = (),
    since: Release | None = None,
    production_branch: str = "",
    chain: ChainHead | None = None,
) -> str:
    """The release pull request's description: where the release is and what it waits on, how it
    did on staging, the backup, the approvals seen (counted or not, and why), how to approve, and
    the release notes; with ``chain``, the store's history as it stood (its hash chain's head, kept
    here where an editor of the store cannot reach it). Rewritten by the controller as the release
    moves; edits by hand are lost."""
    needed = f"{rules.min_approvals} of {rules.approvers_text}"
    expiry = (
        f"approvals older than {span_text(rules.max_age)} at promotion no longer count"
        if rules.max_age
        else ""
    )
    authors = "" if rules.authors_may_approve else "authors of its commits never count"
    counted = release.counted_approvals
    lines = [
        f"Release {release.id} of `{release.commit}` from `{release.branch}`: **{_state_words(release)}**",
        "",
        f"- Waiting on: {release.reason or '-'}" if not release.state.is_final else f"- {release.reason}",
        f"- Staging: {_staging(release, events)}",
        f"- Approval: {len(counted)} of {rules.min_approvals} needed ({needed}); "
        + "; ".join(x for x in (expiry, authors) if x)
        + f"; policy `{rules.digest}`",
        f"- Backup: {_backup(release, events)}",
        f"- Production: {_production(release)}",
    ]
    if chain is not None:
        lines.append(f"- History: {chain.events} events, chain head `{chain.hash[:16] or '-'}`")
    if release.approvals:
        lines += ["", "### Approvals seen", ""]
        for a in release.approvals:
            mark = "counted" if a.counted else "not counted"
            what = "requested changes" if a.kind == "changes_requested" else "approved"
            lines.append(f"- {a.user.username} {what} at {_iso(a.at)}: **{mark}** - {a.reason}")
    lines += [
        "",
        "### How to approve",
        "",
        f"Approve this pull request in Bitbucket ({needed}) once staging is verified. Only approvals "
        "given after staging verification, while this branch still points at the commit above, count; "
        "any push to this branch voids earlier approvals. To renew an expired approval, unapprove and "
        "approve again. Request changes or decline to reject the release. Do not merge by hand: the "
        "release controller promotes the very slug that ran on staging, then merges this pull request.",
        "",
        release_notes(release, since, production_branch),
    ]
    return "\n".join(lines)


def digest(text: str) -> str:
    """A short digest of a description, to tell whether it changed since it was last written."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def comment_marker(release: Release, stage: str) -> str:
    """How every comment about ``release`` reaching ``stage`` begins."""
    return f"**Release {release.id}** {_STAGE_WORDS[stage]}"


def change_comment(release: Release, change: Change, stage: str, app: str, version: int | None) -> str:
    """The comment on merged pull request ``change`` when its change reaches ``stage``."""
    where = f"{app} v{version}" if version is not None else app
    text = f"{comment_marker(release, stage)}: `{release.commit[:12]}` (with #{change.id}) "
    if stage == "staging":
        text += f"runs on {where} and passed its checks."
        if release.pull_request_url:
            text += f" It waits for approval in {release.pull_request_url}."
    elif stage == "production":
        text += f"runs on {where}."
    else:
        text += f"was taken off {app}: {release.rollback_reason or release.reason}"
    return text


def _author(change: Change) -> str:
    if change.author is None:
        return "unknown"
    return change.author.display_name or change.author.username


def _base(release: Release, since: Release | None, production_branch: str) -> str:
    branch = f"`{production_branch}`" if production_branch else "the production branch"
    at = f" at `{release.base_commit[:12]}`" if release.base_commit else ""
    if since is not None:
        return f"the last production release (release {since.id}; {branch}{at})"
    return f"{branch}{at}"


def _state_words(release: Release) -> str:
    return {
        State.AWAITING_APPROVAL: "waiting for approval",
        State.APPROVED: "approved, going to production",
        State.BACKING_UP: "backing up production",
        State.PROMOTING: "promoting to production",
        State.PRODUCTION_VERIFYING: "verifying production",
        State.RELEASED: "released",
        State.BACKUPS_VERIFIED: "released, backups verified",
        State.BACKUPS_UNVERIFIED: "released, backups not verified",
    }.get(release.state, str(release.state).replace("_", " "))


def _last(events: Sequence[Event], kind: str) -> Event | None:
    return next((e for e in reversed(events) if e.kind == kind), None)


def _staging(release: Release, events: Sequence[Event]) -> str:
    where = f"{release.staging_app} v{release.staging_release_version}"
    verified = _last(events, "StagingVerified")
    if release.staging_verified_at is None:
        return f"{where}, not verified yet"
    checks = f": {verified.reason}" if verified is not None else ""
    return f"{where}, verified {_iso(release.staging_verified_at)}{checks}"


def _backup(release: Release, events: Sequence[Event]) -> str:
    if release.backup_id is None:
        return "captured before promotion" if not release.state.in_production else "being captured"
    captured = _last(events, "BackupCaptured")
    return f"{release.backup_name} ({captured.reason})" if captured else f"{release.backup_name}, running"


def _production(release: Release) -> str:
    if release.rollback_release_version is not None:
        return (
            f"{release.production_app} v{release.production_release_version}, rolled back "
            f"(now v{release.rollback_release_version})"
        )
    if release.production_release_version is not None:
        return f"{release.production_app} v{release.production_release_version}"
    return f"{release.production_app}, not yet"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
