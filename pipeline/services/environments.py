"""Environments: what people decide about a stage (freezes, locks, one-time overrides), and the
reasons and times they give for it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from checks import parse_duration
from pipeline.config import StageSettings
from pipeline.errors import BadInput, Refused
from pipeline.model import EnvironmentState, Event, EventKind, Release, State
from pipeline.services.views import iso
from pipeline.services.wiring import Wiring


def freeze(services: Wiring, name: str, reason: str, until: str | None = None) -> EnvironmentState:
    """Stage ``name`` frozen, for ``Services.freeze``."""
    stage, why = services.stage(name), given_reason(reason)
    now = services.clock()
    ends = parse_until(until, now, stage) if until else None
    state = services.store.environment(services.settings.name, stage.name)
    frozen = replace(
        state, frozen_at=now, frozen_by=services.settings.actor, freeze_reason=why, frozen_until=ends
    )
    what = f"frozen until {iso(ends)}" if ends else "frozen until unfrozen"
    kind = EventKind.EnvironmentFreezeChanged if state.frozen(now) else EventKind.EnvironmentFrozen
    event = Event(
        None, now, kind, services.settings.actor, f"{stage.name} {what}: {why}", environment=stage.name
    )
    return services.store.save_environment(frozen, [event])


def unfreeze(services: Wiring, name: str, reason: str = "") -> EnvironmentState | None:
    """Stage ``name``'s freeze lifted, for ``Services.unfreeze``."""
    stage, now = services.stage(name), services.clock()
    state = services.store.environment(services.settings.name, stage.name)
    if not state.frozen(now):
        return None
    why = reason.strip() or "no reason given"
    lifted = replace(state, frozen_at=None, frozen_by="", freeze_reason="", frozen_until=None)
    event = Event(
        None,
        now,
        EventKind.EnvironmentUnfrozen,
        services.settings.actor,
        f"{stage.name} unfrozen: {why}",
        environment=stage.name,
    )
    return services.store.save_environment(lifted, [event])


def unlock(services: Wiring, name: str, reason: str) -> EnvironmentState | None:
    """Stage ``name``'s lock cleared, for ``Services.unlock``."""
    stage, why = services.stage(name), given_reason(reason)
    state = services.store.environment(services.settings.name, stage.name)
    if not state.locked:
        return None
    now = services.clock()
    was = f"locked since {iso(state.locked_at)} by {state.locked_by}: {state.lock_reason}"
    said = f"{stage.name} unlocked ({was}): {why}"
    cleared = replace(state, locked_at=None, locked_by="", lock_reason="")
    event = Event(
        None, now, EventKind.EnvironmentUnlocked, services.settings.actor, said, environment=stage.name
    )
    return services.store.save_environment(cleared, [event])


def promote_now(services: Wiring, name: str, reason: str) -> Release:
    """The release waiting for stage ``name`` let go now, for ``Services.promote_now``."""
    stage, why = services.stage(name), given_reason(reason)
    waiting_in = State.GATED if stage.name == services.settings.staging.name else State.APPROVED
    state = services.store.environment(services.settings.name, stage.name)
    if state.locked:
        raise Refused(
            f"{stage.name} is locked since {iso(state.locked_at)} by {state.locked_by}: "
            f"{state.lock_reason}; "
            f"`pipeline unlock {stage.name} --reason ...` first"
        )
    waiting = [r for r in services.store.active(services.settings.name) if r.state == waiting_in]
    if not waiting:
        what = "approved" if waiting_in == State.APPROVED else "gated (builds green)"
        raise Refused(
            f"no release waits to go to {stage.name} (none is {what}): "
            "`pipeline status` says what waits on what"
        )
    release = waiting[0]  # newest first: the one that would go
    now = services.clock()
    granted = replace(
        state,
        override_release=release.id,
        override_at=now,
        override_by=services.settings.actor,
        override_reason=why,
    )
    said = f"release {release.id} may start deploying to {stage.name} now, window and freeze aside: {why}"
    event = Event(
        release.id, now, EventKind.OverrideGranted, services.settings.actor, said, environment=stage.name
    )
    services.store.save_environment(granted, [event])
    services.tick(detect=False)
    return services.store.get(release.id or 0)


def frozen_text(state: EnvironmentState) -> str:
    """What a freeze is, in one line ("production is frozen until 2026-12-24T18:00:00Z by ops: ...")."""
    ends = state.frozen_until
    until = (
        f" until {ends.isoformat(timespec='seconds').replace('+00:00', 'Z')}" if ends else " until unfrozen"
    )
    return f"{state.name} is frozen{until} by {state.frozen_by}: {state.freeze_reason}"


def given_reason(reason: str | None) -> str:
    """A reason a person gives for what they do; it goes into the history, so it must say something."""
    text = " ".join((reason or "").split())
    if not text:
        raise BadInput("--reason", "say why (it goes into the history with your name)")
    return text


def parse_until(text: str, now: datetime, stage: StageSettings) -> datetime:
    """When a freeze ends: a duration from now ("2h", "1d12h") or a time, ISO 8601 ("2026-12-24T18:00",
    "2026-12-24 18:00", with or without an offset; without one, in the stage's window time zone, else
    UTC). BadInput when it is neither, or not in the future."""
    value = text.strip()
    try:
        return now + parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            "--until", "expected a duration such as 2h or 3d, or a time such as 2026-12-24T18:00 (ISO 8601)"
        ) from None
    if moment.tzinfo is None:
        zone = stage.windows.windows().timezone if stage.windows is not None else UTC
        moment = moment.replace(tzinfo=zone)
    moment = moment.astimezone(UTC)
    if moment <= now:
        raise BadInput("--until", f"{iso(moment)} is not in the future")
    return moment
