"""What a decision may ask for: record an ``Update``, carry out an effect, give feedback, or ``Wait``
(and on what); and the ``Decision`` that orders them.

Releases and rollbacks share these: an ``Update`` is generic in the state it moves (``State`` or
``RollbackState``) and in the typed change of fields it carries (``ReleaseChanges`` or
``RollbackChanges``), so a misspelled field or event kind is a type error, not a silent no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pipeline.model import EventKind, ReleaseChanges, RollbackChanges, RollbackState, State

CONTROLLER = "controller"

# Commit status keys, one per stage, as developers see them on the commit in Bitbucket.
STAGING_STATUS = "pipeline/staging"
PRODUCTION_STATUS = "pipeline/production"

S = TypeVar("S", State, RollbackState)
C = TypeVar("C", ReleaseChanges, RollbackChanges)
A = TypeVar("A")


def _no_changes() -> Any:
    return {}


@dataclass(frozen=True)
class Update(Generic[S, C]):
    """Record an event of ``kind``, and change state and fields. ``to`` None keeps the state;
    ``detail`` is longer evidence kept with the event; ``silent`` saves the fields only, with no
    event (a soak that goes on)."""

    kind: EventKind
    reason: str
    to: S | None = None
    fields: C = field(default_factory=_no_changes)
    refs: Mapping[str, str] = field(default_factory=dict)
    actor: str = CONTROLLER
    detail: str = ""
    silent: bool = False


ReleaseUpdate = Update[State, ReleaseChanges]
RollbackUpdate = Update[RollbackState, RollbackChanges]


# --- Effects: they create something on Heroku or Bitbucket ------------------------------------


@dataclass(frozen=True)
class DeployToStaging:
    """Archive the commit, upload it to Heroku, start a build labelled with the commit."""


@dataclass(frozen=True)
class OpenReleasePullRequest:
    """Pin ``release/<id>`` at the commit and open the release pull request with its notes."""


@dataclass(frozen=True)
class CaptureBackup:
    """Capture a production database backup."""


@dataclass(frozen=True)
class Promote:
    """Promote the verified staging release (its slug) to production."""


@dataclass(frozen=True)
class RollBack:
    """Roll production back to ``release_id`` (a new release of the old slug)."""

    release_id: str
    version: int | None
    why: str


@dataclass(frozen=True)
class MergePullRequest:
    """Merge the release pull request into the production branch."""


@dataclass(frozen=True)
class OpenBackMerge:
    """A hotfix reached production: open a pull request from the production branch into the watched
    branch, so the next candidate carries the fix too (once; idempotent)."""


@dataclass(frozen=True)
class RollBackEnvironment:
    """A rollback a person asked for: mark it pending, then ask Heroku for a new release running the
    target's slug."""


@dataclass(frozen=True)
class TakeOut:
    """A rollback a person asked for runs: the controller's releases it took off the environment
    end ``rolled_back``, saying who did it and why, on their commits and merged pull requests too."""


# --- Feedback: idempotent, safe to repeat ------------------------------------------------------


@dataclass(frozen=True)
class DeclinePullRequest:
    """Decline the release pull request, saying why in ``comment``."""

    comment: str


@dataclass(frozen=True)
class LockEnvironment:
    """Lock a stage: the controller deploys nothing to it until a person unlocks it. Idempotent:
    a stage already locked keeps its first lock."""

    stage: str
    reason: str


@dataclass(frozen=True)
class PostStatus:
    """Post the stage's commit status on the release's commit (the same key overwrites). ``url``:
    where it links (default: the stage's app)."""

    key: str
    state: str  # INPROGRESS | SUCCESSFUL | FAILED | STOPPED
    description: str
    url: str | None = None


@dataclass(frozen=True)
class NotifyChanges:
    """Comment on every pull request merged into the release that its change reached ``stage``
    (``staging`` or ``production``) or was taken out again (``rolled_back``). Once per pull request
    and stage: a change already announced on staging by an earlier release is not announced again."""

    stage: str


# --- Waiting ----------------------------------------------------------------------------------


class WaitingOn(StrEnum):
    """Why a release does not move now. ``moves_by_itself`` says whether it will without anyone."""

    HEROKU = "heroku"  # a build, release phase, promotion or backup is running
    BITBUCKET = "bitbucket"  # Bitbucket runs the release pull request's merge as a task
    RETRY = "retry"  # a check is to be tried again shortly
    STAGE = "stage"  # another release is using the stage
    CI = "ci"  # required builds have not finished
    PERSON = "person"  # approval, or someone has to fix something
    WINDOW = "window"  # a freeze, or the deploy window is closed: the clock or a person

    @property
    def moves_by_itself(self) -> bool:
        return self in (WaitingOn.HEROKU, WaitingOn.BITBUCKET, WaitingOn.RETRY)


@dataclass(frozen=True)
class Wait:
    on: WaitingOn
    detail: str
    until: datetime | None = None


Effect = DeployToStaging | OpenReleasePullRequest | DeclinePullRequest | CaptureBackup | Promote | RollBack
Feedback = PostStatus | DeclinePullRequest | NotifyChanges | LockEnvironment
Action = ReleaseUpdate | Effect | MergePullRequest | OpenBackMerge | Feedback | Wait
RollbackAction = RollbackUpdate | RollBackEnvironment | TakeOut | Wait


@dataclass(frozen=True)
class Decision(Generic[A]):
    """The actions to carry out, in order; at most one ``Wait`` says what is waited on after them."""

    actions: tuple[A, ...]

    @property
    def wait(self) -> Wait | None:
        return next((a for a in self.actions if isinstance(a, Wait)), None)

    @property
    def does_something(self) -> bool:
        return any(not isinstance(a, Wait) for a in self.actions)


ReleaseDecision = Decision[Action]
RollbackDecision = Decision[RollbackAction]


def decision(*actions: Action) -> ReleaseDecision:
    """A release's actions in the order they run: feedback first (commit statuses, declining a pull
    request, comments on the merged pull requests: idempotent, so safe to repeat), then the rest as
    given. A crash right after a release reaches a final state then never loses the feedback that
    goes with it."""
    feedback = tuple(a for a in actions if isinstance(a, Feedback))
    return Decision(feedback + tuple(a for a in actions if not isinstance(a, Feedback)))


def wait(on: WaitingOn, detail: str, until: datetime | None = None) -> ReleaseDecision:
    return decision(Wait(on, detail, until))
