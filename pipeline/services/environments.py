"""Environments: freezes, locks and overrides."""

from __future__ import annotations

from datetime import UTC, datetime

from checks import parse_duration
from pipeline.config import StageSettings
from pipeline.errors import BadInput
from pipeline.model import EnvironmentState
from pipeline.services.views import _iso


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
        raise BadInput("--until", f"{_iso(moment)} is not in the future")
    return moment
