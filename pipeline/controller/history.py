"""Writing the history: every change of a release or a rollback is saved with its event in one
transaction, with the fault-injection crash points (``PIPELINE_CRASH_AT``) around each write.

Write-ahead: an effect that creates something is marked pending (``Intent`` and when) before it is
asked for, so a pass after a crash looks for it rather than asking again.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from pipeline.domain import CONTROLLER, ReleaseUpdate, RollbackUpdate
from pipeline.model import Event, EventKind, Intent, Release, ReleaseChanges, Rollback, State
from pipeline.ports import ReleaseStore

log = logging.getLogger("pipeline.controller")

CRASH_EXIT_STATUS = 70


class History:
    """``lease``: called before every write; raises ``LeaseLost`` when the pass lock may no longer
    be this process's (a paused process writes nothing once its lease may have run out)."""

    def __init__(
        self,
        store: ReleaseStore,
        clock: Callable[[], datetime],
        crash_at: tuple[str, ...],
        lease: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.crash_at = crash_at
        self.lease = lease

    def crash_point(self, point: str) -> None:
        """Fault injection (PIPELINE_CRASH_AT): die here, as a killed process would, with no cleanup."""
        if point in self.crash_at:
            sys.stderr.write(f"pipeline: crashing at {point} (PIPELINE_CRASH_AT)\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_STATUS)

    # --- Releases ------------------------------------------------------------------------------

    def apply(self, release: Release, update: ReleaseUpdate) -> Release:
        """A decision's update: its event and changes, or (``silent``) the changes alone."""
        if update.silent:
            self.lease()
            return self.store.save(replace(release.changed(update.fields), updated_at=self.clock()), [])
        return self.record(
            release,
            update.kind,
            update.reason,
            to=update.to,
            fields=update.fields,
            refs=update.refs,
            actor=update.actor,
            detail=update.detail,
        )

    def record(
        self,
        release: Release,
        kind: EventKind,
        reason: str,
        *,
        to: State | None = None,
        fields: ReleaseChanges | None = None,
        refs: Mapping[str, str] | None = None,
        actor: str = CONTROLLER,
        keep_reason: bool = False,
        detail: str = "",
    ) -> Release:
        """Save the release's change and its event together. The event's reason becomes the release's
        last word, unless ``keep_reason`` (an effect noted beside a wait that still stands)."""
        now = self.clock()
        changes: ReleaseChanges = {**(fields or {})}
        if not keep_reason:
            changes.setdefault("reason", reason)
        updated = replace(release.changed(changes), state=to or release.state, updated_at=now)
        assert release.id is not None
        event = Event(
            release_id=release.id,
            at=now,
            kind=kind,
            actor=actor,
            reason=reason,
            state_from=release.state,
            state_to=updated.state,
            refs=dict(refs or {}),
            detail=detail,
        )
        moved = f" ({release.state} -> {updated.state})" if updated.state != release.state else ""
        self.crash_point(f"before:{kind}")
        self.lease()
        saved = self.store.save(updated, [event])
        log.info("release %s %s: %s%s [hash %s]", release.id, kind, reason, moved, self._chained())
        self.crash_point(f"after:{kind}")
        return saved

    def save(self, release: Release, changes: ReleaseChanges) -> Release:
        """Save fields that are no step of the path (feedback keys, the last word): no event."""
        self.lease()
        return self.store.save(release.changed(changes), [])

    def mark_pending(
        self,
        release: Release,
        intent: Intent,
        kind: EventKind,
        note: str,
        extra: ReleaseChanges | None = None,
    ) -> Release:
        """Write-ahead: say what is about to be done before doing it."""
        fields: ReleaseChanges = {"pending_action": intent, "pending_since": self.clock(), **(extra or {})}
        return self.record(release, kind, note, fields=fields, keep_reason=True)

    # --- Rollbacks people asked for -------------------------------------------------------------

    def apply_rollback(self, rollback: Rollback, update: RollbackUpdate) -> Rollback:
        """A rollback decision's update, with its event filed under the release it took out."""
        now = self.clock()
        updated = replace(rollback.changed(update.fields), state=update.to or rollback.state, updated_at=now)
        self.lease()
        if update.silent:
            return self.store.save_rollback(updated, [])
        event = Event(
            taken_out_release(rollback), now, update.kind, update.actor, update.reason, detail=update.detail
        )
        self.crash_point(f"before:{update.kind}")
        saved = self.store.save_rollback(updated, [event])
        log.info("rollback %s %s: %s [hash %s]", rollback.id, update.kind, update.reason, self._chained())
        self.crash_point(f"after:{update.kind}")
        return saved

    def _chained(self) -> str:
        """The hash (first 16 hex) of the event just recorded, as its write returned it: the log
        carries the chain's head where an editor of the store cannot reach it."""
        heads = self.store.appended()
        return heads[-1].hash[:16] if heads else "-"


def taken_out_release(rollback: Rollback) -> int | None:
    """The controller's release a rollback's events are filed under: the one it took out that was live."""
    return next((t.release_id for t in rollback.taken_out if t.release_id is not None), None)
