"""Hotfixes: the head of a hotfix branch, through staging and approval to production on its own."""

from __future__ import annotations

import fnmatch

from pipeline.errors import BadInput, Refused
from pipeline.model import EventKind, Release
from pipeline.services.wiring import Wiring


def start_hotfix(services: Wiring, branch: str) -> Release:
    """The hotfix release of ``branch``, checked and started, for ``Services.start_hotfix``."""
    assert services.controller is not None and services.source is not None, "use bootstrap.services(settings)"
    src = services.settings.source
    name = branch.strip()
    if not fnmatch.fnmatchcase(name, src.hotfix_branches) or name in (src.branch, src.production_branch):
        raise BadInput(
            "BRANCH", f"{name!r} is not a hotfix branch (source.hotfix_branches: {src.hotfix_branches})"
        )
    head = services.source.branch_head(name)
    if head is None:
        raise BadInput("BRANCH", f"there is no branch {name!r} in {src.workspace}/{src.repository}")
    existing = services.store.by_commit(services.settings.name, head)
    if existing is not None:
        raise Refused(f"{name} at {head[:12]} is release {existing.id} already ({existing.state})")
    production_head = services.source.branch_head(src.production_branch)
    if production_head is not None:
        lacking = [
            c for c in services.source.commits_between(production_head, head, limit=20) if len(c.parents) <= 1
        ]
        if lacking:
            first = lacking[0]
            raise Refused(
                f"{name} is not based on {src.production_branch}: it lacks {first.hash[:12]} "
                f"({(first.message.splitlines() or [''])[0][:60]}) and maybe more; branch it from "
                f"{src.production_branch}, or merge {src.production_branch} into it"
            )
    release = services.controller.candidate(name, head, production_head)
    if release is None:
        raise Refused(f"{name} at {head[:12]} is already on {src.production_branch}: nothing to release")
    commits = release.commits
    develop_head = services.source.branch_head(src.branch)
    unreleased = (
        {c.hash for c in services.source.commits_between(develop_head, production_head)}
        if develop_head
        else set()
    )
    carried = [c for c in commits if c.hash in unreleased]
    if carried:
        first = carried[0]
        raise Refused(
            f"{name} carries {len(carried)} commit(s) of {src.branch} that production does not have "
            f"({first.hash[:12]} {(first.message.splitlines() or [''])[0][:60]}...): branch it from "
            f"{src.production_branch}, so the hotfix takes only the fix"
        )
    why = (
        f"hotfix from {name} at {head[:12]}: {len(commits)} commit(s) not on {src.production_branch}; "
        "it goes through staging and approval on its own"
    )
    stored = services.store.add(release, EventKind.HotfixStarted, why, services.settings.actor)
    services.tick(detect=False)
    return services.store.get(stored.id or 0)
