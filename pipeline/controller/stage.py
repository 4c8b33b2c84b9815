"""The stage guard: what deploys where, who holds the pass lock, and what people decided about a
stage that the controller keeps (the lock it sets after a rollback, an override used up).

Everything that starts a deployment holds the pass lock: the pass itself, and a rollback a person
asks for while it is recorded, so the two never start deployments to one stage side by side.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from pipeline.config import Settings, StageSettings
from pipeline.domain import CONTROLLER
from pipeline.errors import LeaseLost, Refused
from pipeline.model import Event, EventKind, Release, State
from pipeline.ports import ReleaseStore

log = logging.getLogger("pipeline.controller")

# The lease is taken for lost this long before it runs out, on this process's own clock: the store's
# clock and ours may differ a little, and a write takes a moment.
LEASE_MARGIN = 15.0


class StageGuard:
    def __init__(self, settings: Settings, store: ReleaseStore, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.ttl = settings.schedule.lease.total_seconds()
        self.store = store
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_until = 0.0  # time.monotonic() at which the lease we hold may have run out

    def stage(self, name: str) -> StageSettings:
        return next(s for s in self.settings.stages if s.name == name)

    # --- The pass lock ---------------------------------------------------------------------------

    @property
    def lock_name(self) -> str:
        """The store lock every pass holds (and anything else that starts a deployment)."""
        return f"pass:{self.settings.name}"

    def take(self) -> bool:
        """Take the pass lock; a lease left by a dead process on this host is taken over at once
        (another host's lease runs out after ``schedule.lease``)."""
        now = self.clock()
        if self._acquire(now):
            return True
        holder = self.store.lock_holder(self.lock_name, now)
        if holder is None or not _dead_here(holder):
            return False
        log.warning("taking over the pass lock from %s, which is no longer running", holder)
        self.store.release_lock(self.lock_name, holder)
        return self._acquire(now)

    def renew(self) -> bool:
        """Renew the lease; False when it ran out and another process took the lock."""
        return self._acquire(self.clock())

    def _acquire(self, now: datetime) -> bool:
        started = time.monotonic()
        if not self.store.acquire_lock(self.lock_name, self.holder, now, self.ttl):
            self._lease_until = 0.0
            return False
        self._lease_until = started + self.ttl - min(LEASE_MARGIN, self.ttl / 4)
        return True

    def still_held(self) -> None:
        """Before a write: LeaseLost when the lease may have run out since it was last renewed (on
        this process's clock, which runs on while the process is paused). No request."""
        if time.monotonic() >= self._lease_until:
            raise LeaseLost(f"the pass lock of {self.settings.name} may have run out: this pass stops here")

    def fence(self) -> None:
        """Right before asking Heroku or Bitbucket for something that is not safe to ask twice: the
        lease must still be ours, renewed in the store now. A process paused or slowed past its
        lease stops here, before doing what another holder may have done meanwhile."""
        self.still_held()
        if not self.renew():
            raise LeaseLost(
                f"another process holds the pass lock of {self.settings.name} now: this pass stops"
            )

    def give_back(self) -> None:
        self._lease_until = 0.0
        self.store.release_lock(self.lock_name, self.holder)

    def holder_now(self) -> str | None:
        return self.store.lock_holder(self.lock_name, self.clock())

    @contextmanager
    def pass_lock(self, wait: float = 60.0) -> Iterator[None]:
        """Hold the pass lock for a request that must not run beside a pass (a rollback starting),
        waiting up to ``wait`` seconds for a running pass to end; Refused when it does not."""
        deadline = time.monotonic() + wait
        while not self.take():
            if time.monotonic() > deadline:
                running = f"a pass of {self.settings.name} is running ({self.holder_now()})"
                raise Refused(f"{running} and did not end in {wait:g}s")
            time.sleep(0.2)
        try:
            yield
        finally:
            self.give_back()

    # --- What deploys where ----------------------------------------------------------------------

    def busy_with(
        self, stage: str, others: list[Release] | None = None, *, changing_only: bool = False
    ) -> str | None:
        """What deploys to ``stage`` now: a release there (of ``others``, default every active one),
        or a rollback a person asked for. ``changing_only``: only what changes what runs there (a
        release whose backup runs before its promotion changes nothing yet)."""
        if others is None:
            others = self.store.active(self.settings.name)
        staging = stage == self.settings.staging.name

        def there(r: Release) -> bool:
            if staging:
                return r.state.in_staging
            return r.state.changing_production if changing_only else r.state.in_production

        release = next((r for r in others if there(r)), None)
        if release is not None:
            return f"release {release.id} ({release.state})"
        rollback = next(
            (r for r in self.store.rollbacks(self.settings.name, active=True) if r.environment == stage), None
        )
        if rollback is not None:
            return f"rollback {rollback.id} by {rollback.requested_by} ({rollback.state})"
        return None

    # --- What the controller decides about a stage -----------------------------------------------

    def lock(self, stage: str, release: Release, reason: str) -> None:
        """Lock the stage (unless it is locked already): nothing deploys there until a person
        unlocks it, so the controller does not undo a rollback by promoting again."""
        state = self.store.environment(self.settings.name, stage)
        if state.locked:
            return
        now = self.clock()
        why = f"release {release.id} was rolled back: {reason}"
        event = Event(release.id, now, EventKind.EnvironmentLocked, CONTROLLER, why, environment=stage)
        self.store.save_environment(
            replace(state, locked_at=now, locked_by=CONTROLLER, lock_reason=why), [event]
        )
        log.warning("%s locked: %s", stage, why)

    def spend_override(self, release: Release) -> None:
        """A person's override of a window or freeze serves one release once: it is used up when
        the release has started deploying (or ended)."""
        for stage, waiting in (
            (self.settings.staging.name, State.GATED),
            (self.settings.production.name, State.APPROVED),
        ):
            state = self.store.environment(self.settings.name, stage)
            if state.override_release != release.id or release.state == waiting:
                continue
            why = f"release {release.id} started ({release.state}) on the override by {state.override_by}"
            event = Event(
                release.id, self.clock(), EventKind.OverrideUsed, CONTROLLER, why, environment=stage
            )
            cleared = replace(
                state, override_release=None, override_at=None, override_by="", override_reason=""
            )
            self.store.save_environment(cleared, [event])


def _dead_here(holder: str) -> bool:
    """True when ``holder`` ("host:pid:nonce") names a process of this host that has exited."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
