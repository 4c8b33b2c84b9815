"""The one reconcile loop, shared by releases and the rollbacks people ask for:
observe -> decide -> act -> record, as many rounds as a subject moves without waiting.

Each kind of subject brings its own ``Runner`` (what to observe, which decision, how each action is
carried out); the loop owns what they share: rounds until nothing moves, a Temporary error waits and
tries again in a later pass, a Permanent one waits on a person, and either way the subject is read
back from the store, so a write-ahead mark an effect recorded before it failed is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from pipeline.domain import Decision, Wait, WaitingOn
from pipeline.errors import Permanent, Temporary
from pipeline.model import Release, Rollback

log = logging.getLogger("pipeline.controller")

# Waits after a Temporary error: a 5xx or a timeout is tried again soon; a rate limit waits longer.
SERVER_ERROR_RETRY = 5.0
RATE_LIMITED_RETRY = 60.0

T = TypeVar("T", Release, Rollback)
Seen = TypeVar("Seen")
A = TypeVar("A")


class Runner(Protocol[T, Seen, A]):
    """What one kind of subject brings to the loop."""

    def observe(self, subject: T, now: datetime) -> Seen:
        """Read what the subject's state needs from the outside world, and nothing else."""
        ...

    def decide(self, subject: T, seen: Seen, now: datetime) -> Decision[A]:
        """The pure decision (``pipeline.domain``)."""
        ...

    def act(self, subject: T, action: A) -> T:
        """Carry out one action (never a ``Wait``); return the subject as saved."""
        ...

    def reload(self, subject: T) -> T:
        """The subject as the store has it now."""
        ...

    def standing_wait(self, subject: T) -> Wait | None:
        """What an unchanged subject waits on when its decision said nothing (a refused effect,
        already said: a person must act), or None."""
        ...


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """Where a subject stands after its rounds: ``moved`` when any round changed it, ``wait`` what it
    waits on now (None: it ended, or moved as far as it goes), ``state_changed`` when its state did."""

    subject: T
    moved: bool
    wait: Wait | None
    state_changed: bool


def reconcile(
    runner: Runner[T, Seen, A], subject: T, clock: Callable[[], datetime], *, rounds: int, label: str
) -> Outcome[T]:
    """Move ``subject`` as far as it goes without waiting, at most ``rounds`` decide/act rounds (the
    bound keeps a mistake from spinning)."""
    moved = state_changed = False
    wait: Wait | None = None
    for _ in range(rounds):
        now = clock()
        before = subject
        try:
            decision = runner.decide(subject, runner.observe(subject, now), now)
            wait = decision.wait
            if not decision.does_something:
                break
            for action in decision.actions:
                if not isinstance(action, Wait):
                    subject = runner.act(subject, action)
        except Temporary as exc:
            log.warning("%s: %s; trying again next pass", label, exc)
            until = clock() + timedelta(seconds=retry_delay(exc))
            wait = Wait(WaitingOn.RETRY, f"{exc}; trying again", until)
            subject = runner.reload(subject)
            break
        except Permanent as exc:
            # Seeing or acting failed for good (a pull request or app that vanished, access
            # withdrawn): say so and leave the subject where it is; the others go on.
            log.error("%s: %s", label, exc)
            wait = Wait(WaitingOn.PERSON, f"{exc}: a person must fix this")
            subject = runner.reload(subject)
            break
        if subject == before:
            # Nothing changed: only idempotent feedback ran beside a wait (which stands), or an
            # effect was refused for good, already said.
            wait = wait or runner.standing_wait(subject)
            break
        moved = True
        state_changed = state_changed or subject.state != before.state
        if subject.state.is_final:
            wait = None
            break
    return Outcome(subject, moved, wait, state_changed)


def retry_delay(exc: Temporary) -> float:
    """Seconds before a Temporary failure is worth trying again (at most the service asked for)."""
    return min(exc.retry_after, RATE_LIMITED_RETRY if exc.status == 429 else SERVER_ERROR_RETRY)
