"""What one pass did: which releases and rollbacks moved, and what each waits on now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain import Wait, WaitingOn
from pipeline.model import RollbackState, State


@dataclass
class ReleaseReport:
    release_id: int
    commit: str
    state: State
    moved: bool
    wait: Wait | None


@dataclass
class RollbackReport:
    rollback_id: int
    environment: str
    state: RollbackState
    moved: bool
    wait: Wait | None


@dataclass
class PassReport:
    """What one pass did: which releases and rollbacks moved, and what each waits on now."""

    releases: list[ReleaseReport] = field(default_factory=list)
    rollbacks: list[RollbackReport] = field(default_factory=list)
    detected: int | None = None
    skipped: str = ""  # why the pass did nothing (another pass holds the lock)
    problem: str = ""  # what kept the pass from looking for new candidates

    @property
    def items(self) -> list[ReleaseReport | RollbackReport]:
        return [*self.rollbacks, *self.releases]

    @property
    def moving(self) -> bool:
        """True when another pass soon may move something without a person or the clock."""
        if self.detected is not None:
            return True
        return any(r.moved or (r.wait is not None and r.wait.on.moves_by_itself) for r in self.items)

    @property
    def moved_any(self) -> bool:
        """True when this pass changed something (a new candidate, a release moved)."""
        return self.detected is not None or any(r.moved for r in self.items)

    def pause(self, now: datetime) -> float:
        """Seconds until another pass is worth it: 1 s while Heroku or Bitbucket works (as the heroku
        CLI polls), else
        until the next retry is due (a check's interval, a server error's back-off)."""
        if self.detected is not None or any(
            r.moved or (r.wait is not None and r.wait.on in (WaitingOn.HEROKU, WaitingOn.BITBUCKET))
            for r in self.items
        ):
            return 1.0
        dues = [r.wait.until for r in self.items if r.wait and r.wait.until and r.wait.on.moves_by_itself]
        if not dues:
            return 1.0
        return min(max((min(dues) - now).total_seconds(), 0.05), 60.0)
