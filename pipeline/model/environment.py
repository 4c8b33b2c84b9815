"""What people decided about an environment (lock, freeze, override), and its deploy windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, tzinfo


@dataclass(frozen=True)
class EnvironmentState:
    """What people decided about one environment (a stage) of a pipeline: a lock (set when
    production is rolled back; the controller promotes nothing until someone clears it), a freeze
    (nothing deploys until it is lifted or its ``frozen_until`` passes), and a one-time override of
    the deploy window and freeze for one release (``pipeline promote ENV --now``)."""

    pipeline: str
    name: str
    locked_at: datetime | None = None
    locked_by: str = ""
    lock_reason: str = ""
    frozen_at: datetime | None = None
    frozen_by: str = ""
    freeze_reason: str = ""
    frozen_until: datetime | None = None
    override_release: int | None = None
    override_at: datetime | None = None
    override_by: str = ""
    override_reason: str = ""

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    def frozen(self, now: datetime) -> bool:
        """Frozen at ``now``: a freeze with an ``until`` that has passed no longer holds."""
        return self.frozen_at is not None and (self.frozen_until is None or now < self.frozen_until)


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a span of the day, ``start`` <= time < ``end``, in the
    deploy windows' time zone."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class DeployWindows:
    """When a deployment of an environment may start: inside any of ``allow``, in ``timezone``."""

    timezone: tzinfo
    allow: tuple[Window, ...]

    @property
    def zone_name(self) -> str:
        return str(getattr(self.timezone, "key", self.timezone))
