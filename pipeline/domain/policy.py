"""The rules of one pipeline, from its configuration: who may approve and how, how each stage is
verified, when deployments may start; the approval policy's digest; approvers pinned to accounts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

from pipeline.model import DeployWindows, Person

# No wait between two attempts of a check is longer than this, whatever its backoff.
MAX_CHECK_WAIT = timedelta(minutes=5)


@dataclass(frozen=True)
class CheckRule:
    """How one check is tried: ``retries`` more attempts after one that did not pass, ``interval``
    apart (times ``backoff`` after each failure in a row, at most ``MAX_CHECK_WAIT``), and once it
    passes, ``soak``: it keeps being tried every ``interval`` for that long, and a failure then fails."""

    name: str
    retries: int = 3
    interval: timedelta = timedelta(seconds=2)
    backoff: float = 1.0
    soak: timedelta = timedelta(0)

    def wait_after(self, failures: int) -> timedelta:
        """The wait before the next attempt after ``failures`` attempts in a row did not pass."""
        factor = self.backoff ** max(failures - 1, 0)
        return min(self.interval * factor, MAX_CHECK_WAIT)


@dataclass(frozen=True)
class Verification:
    """How a stage is verified: every check, each with its own rule."""

    checks: tuple[CheckRule, ...] = ()


@dataclass(frozen=True)
class ApprovalPolicy:
    """How approvals are judged (``approval:`` in pipeline.yml). Each rule's switch is a field here,
    named as its configuration key, and the rule itself is one function in ``pipeline.domain.approval``.

    ``approvers`` are the uuids and account ids of who may approve, once pinned to accounts at start
    (a nickname alone can be taken by anyone); ``names`` what people wrote, for messages."""

    approvers: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()
    min_approvals: int = 1
    controller_account: Person | None = None
    # An approval older than this at the moment it is judged (promotion included) does not count.
    max_age: timedelta | None = timedelta(hours=72)
    authors_may_approve: bool = False
    unlinked_authors: str = "block"  # block | allow

    @property
    def approvers_text(self) -> str:
        return ", ".join(self.names or sorted(self.approvers))

    def as_json(self) -> dict[str, Any]:
        """The rules as plain JSON: what the digest digests, and what the history keeps beside each
        approval so an auditor can see the rules it was judged under."""
        bot = self.controller_account
        return {
            "approvers": sorted(self.approvers),
            "min_approvals": self.min_approvals,
            "max_age_seconds": self.max_age.total_seconds() if self.max_age else None,
            "authors_may_approve": self.authors_may_approve,
            "unlinked_authors": self.unlinked_authors,
            "controller_account": (bot.uuid or bot.account_id or bot.username) if bot else None,
            "bound_to": (
                "the commit verified on staging; any move of the release branch voids earlier approvals"
            ),
        }

    @cached_property
    def digest(self) -> str:
        """A short, stable digest of ``as_json()`` (16 hex characters of its SHA-256), computed once
        (the policy is frozen)."""
        text = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Policy:
    """The rules of one pipeline, from its configuration."""

    required_builds: tuple[str, ...] = ()
    approval: ApprovalPolicy = ApprovalPolicy()
    staging: Verification = Verification()
    production: Verification = Verification()
    capture_backup: bool = True
    # A pre-promotion backup running longer than this ends the release (production unchanged).
    capture_timeout: timedelta = timedelta(hours=6)
    # How long the new release's dynos may take to start before verification fails.
    dyno_start_timeout: timedelta = timedelta(minutes=2)
    backup_max_age: timedelta = timedelta(hours=26)
    # How long an effect marked pending may take to show up on Heroku before it is done again: a
    # call whose answer was lost (a crash, a timeout) may still be processed after the client gave
    # up; well above the request timeout (30 s), it is never asked for again while it may run.
    intent_grace: timedelta = timedelta(minutes=2)
    # The stages' names (as in `pipeline freeze production`) and when a deployment of each may start.
    staging_name: str = "staging"
    production_name: str = "production"
    windows: Mapping[str, DeployWindows] = field(default_factory=dict)
    # The watched branch (releases of other branches are hotfixes) and the production branch.
    source_branch: str = "develop"
    production_branch: str = "main"


def approval_policy(policy: Policy) -> dict[str, Any]:
    """``policy.approval.as_json()``: the rules approvals are judged by, as plain JSON."""
    return policy.approval.as_json()


def approval_digest(policy: Policy) -> str:
    """A short, stable digest of ``approval_policy(policy)`` (16 hex characters of its SHA-256)."""
    return policy.approval.digest


# An Atlassian account id ("557058:f3a1...", "5b10ac8d82e05b22cc7d4ef5") or a Bitbucket {uuid}.
_ACCOUNT_ID = re.compile(r"^(\{[0-9a-fA-F-]{36}\}|[0-9]+:[0-9a-fA-F-]{8,}|[0-9a-fA-F]{24})$")


def is_account_ident(name: str) -> bool:
    """True when ``name`` is an account id or a {uuid} (it designates one account for good), not a
    nickname (which needs the workspace's members to say whose it is)."""
    return bool(_ACCOUNT_ID.match(name))


def reviewers_of(names: tuple[str, ...], members: list[Person], controller: Person | None) -> tuple[str, ...]:
    """One account id or {uuid} per approver, to ask them to review a release pull request: an id
    as written, a nickname through ``members``; never the controller's own account (Bitbucket
    refuses the author of a pull request as its reviewer)."""
    found: list[str] = []
    for name in names:
        member = next((m for m in members if m.is_one_of((name,))), None)
        if member is not None and controller is not None and member.same_as(controller):
            continue
        if member is not None:
            found.append(member.uuid or member.account_id)
        elif is_account_ident(name) and not (controller is not None and controller.is_one_of((name,))):
            found.append(name)
    return tuple(dict.fromkeys(f for f in found if f))


def pin_approvers(
    names: tuple[str, ...], members: list[Person]
) -> tuple[frozenset[str], list[tuple[int, str]]]:
    """The account ids and uuids of the workspace members ``names`` designate (a username, an
    account id or a {uuid} each), and the problems: (index, why) for a name that designates nobody,
    or more than one member (Bitbucket nicknames are neither unique nor fixed)."""
    pinned: set[str] = set()
    problems: list[tuple[int, str]] = []
    for index, name in enumerate(names):
        found = [m for m in members if m.is_one_of((name,))]
        if not found:
            problems.append(
                (
                    index,
                    f"{name!r} is no member of the workspace: give a member's username, "
                    "account id or {uuid}",
                )
            )
        elif len(found) > 1:
            ids = ", ".join(m.account_id or m.uuid for m in found)
            problems.append(
                (
                    index,
                    f"{name!r} is the username of {len(found)} members ({ids}): "
                    "give the account id or {uuid} of the one who approves",
                )
            )
        else:
            pinned.update(ident for ident in (found[0].uuid, found[0].account_id) if ident)
    return frozenset(pinned), problems
