"""A rollback a person asked for (``pipeline rollback``), and where it is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from pipeline.model.release import CheckProgress


class RollbackState(StrEnum):
    """Where a rollback asked for by a person is: requested -> rolling_back -> verifying ->
    verified; ends ``verified``, ``unverified`` (it runs, but fails its checks) or ``failed``."""

    REQUESTED = "requested"
    ROLLING_BACK = "rolling_back"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RollbackState.VERIFIED, RollbackState.UNVERIFIED, RollbackState.FAILED)


@dataclass(frozen=True)
class TakenOut:
    """A Heroku release that a rollback takes off an environment, and the controller's release of
    it (None when it was not the controller's)."""

    version: int
    release_id: int | None
    commit: str | None
    description: str


@dataclass(frozen=True)
class Rollback:
    """A person's rollback of an environment to an earlier Heroku release (``pipeline rollback``).

    The controller carries it out in its passes, like a release: the new Heroku release's id is
    recorded before it waits, then the environment's checks verify what runs. ``forced`` holds the
    reasons a ``--force`` was needed for (a target never verified, a migration taken out)."""

    pipeline: str
    environment: str
    app: str
    state: RollbackState
    requested_at: datetime
    requested_by: str
    reason: str
    from_release_id: str
    from_version: int
    to_release_id: str
    to_version: int
    updated_at: datetime
    id: int | None = None
    to_slug_id: str | None = None
    taken_out: tuple[TakenOut, ...] = ()
    forced: tuple[str, ...] = ()
    heroku_release_id: str | None = None
    heroku_version: int | None = None
    pending_since: datetime | None = None
    verification_started_at: datetime | None = None
    check_progress: tuple[CheckProgress, ...] = ()
    verified_at: datetime | None = None
    outcome: str = ""

    def changed(self, changes: RollbackChanges) -> Rollback:
        """This rollback with ``changes`` applied (a new value: rollbacks are frozen)."""
        return replace(self, **changes)


class RollbackChanges(TypedDict, total=False):
    """A typed change of a rollback's fields (what ``Update.fields`` carries for a rollback)."""

    heroku_release_id: str | None
    heroku_version: int | None
    pending_since: datetime | None
    verification_started_at: datetime | None
    check_progress: tuple[CheckProgress, ...]
    verified_at: datetime | None
    outcome: str
