"""Release notes and the release pull request's text, written from a ``Release`` (pure)."""

from __future__ import annotations

from pipeline.model import Release


def title(release: Release) -> str:
    first = (release.commits[0].message.splitlines() or [""])[0] if release.commits else ""
    if release.changes:
        first = release.changes[0].title
    return f"Release {release.id}: {release.commit[:12]} {first}"[:200]


def release_notes(release: Release) -> str:
    """Markdown: the merged pull requests (title, author, link) and the commits since production."""
    lines = ["## Pull requests", ""]
    if release.changes:
        for change in release.changes:
            author = change.author.display_name or change.author.username if change.author else "unknown"
            lines.append(f"- #{change.id} {change.title} ({author}) {change.url}")
    else:
        lines.append("- none (commits pushed directly)")
    lines += ["", f"## Commits since the production branch ({len(release.commits)})", ""]
    for commit in release.commits:
        who = commit.author.username if commit.author else commit.author_raw
        summary = (commit.message.splitlines() or [""])[0]
        lines.append(f"- `{commit.hash[:12]}` {summary} ({who})")
    return "\n".join(lines)


def pull_request_description(release: Release, approvers: tuple[str, ...], min_approvals: int) -> str:
    """The release pull request's description: what is in it, how it did on staging, how to approve."""
    verified = release.staging_verified_at.isoformat() if release.staging_verified_at else "not yet"
    return "\n".join(
        [
            f"Release {release.id} of `{release.commit}` from `{release.branch}`.",
            "",
            f"- Staging: {release.staging_app} v{release.staging_release_version}, verified {verified}",
            f"- Approval: {min_approvals} of {', '.join(approvers)}; approve this pull request in Bitbucket. "
            "Only approvals given after staging verification, by listed approvers who wrote none of the "
            "commits, while this branch still points at the commit above, count.",
            "- Production: promoted by the release controller once approved (the same slug that ran on "
            "staging); do not merge this pull request by hand.",
            "",
            release_notes(release),
        ]
    )
