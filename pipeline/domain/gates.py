"""What may keep a deployment from starting: a lock, a freeze, a closed deploy window, or commits
production has that the release lacks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pipeline.domain.actions import (
    Wait,
    WaitingOn,
)
from pipeline.domain.policy import (
    Policy,
)
from pipeline.domain.text import (
    iso,
)
from pipeline.model import (
    Commit,
    DeployWindows,
    EnvironmentState,
    Release,
)


def missing_text(missing: tuple[Commit, ...], policy: Policy) -> str:
    """ "commit abc (Fix login) that production has; merge main into ..." for the commits missing."""
    first = missing[0]
    what = f"commit {first.hash[:12]} ({(first.message.splitlines() or [''])[0][:60]})"
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return (
        f"{what}{more} that production's branch {policy.production_branch} has: promoting it would take "
        f"them out of production; merge {policy.production_branch} into it (a hotfix must come back)"
    )


def locked(stage: str, environment: EnvironmentState | None) -> Wait | None:
    """Why nothing may deploy to a locked stage, or None."""
    if environment is None or environment.locked_at is None:
        return None
    return Wait(
        WaitingOn.PERSON,
        f"{stage} is locked since {iso(environment.locked_at)} by {environment.locked_by}: "
        f"{environment.lock_reason}; `pipeline unlock {stage} --reason ...` clears it",
    )


def closed_to(
    release: Release,
    stage: str,
    environment: EnvironmentState | None,
    windows: DeployWindows | None,
    now: datetime,
) -> tuple[Wait | None, str]:
    """(Why a deployment may not start now: a freeze or a closed window, or None; and what to add
    to the start's reason when a person overrode both for this release)."""
    if environment is not None and environment.override_release == release.id and release.id is not None:
        by = environment.override_by
        return (
            None,
            f"; window and freeze overridden by {by} (`pipeline promote {stage} --now`): "
            f"{environment.override_reason}",
        )
    if environment is not None and environment.frozen(now):
        until = f" until {iso(environment.frozen_until)}" if environment.frozen_until else ""
        why = (
            f"{stage} is frozen{until} since {iso(environment.frozen_at or now)} "
            f"by {environment.frozen_by}: "
            f"{environment.freeze_reason}; `pipeline unfreeze {stage}` lifts it, "
            f"`pipeline promote {stage} --now --reason ...` starts this one anyway"
        )
        return Wait(WaitingOn.WINDOW, why, environment.frozen_until), ""
    if windows is not None:
        is_open, opens = window_state(windows, now)
        if not is_open:
            when = (
                f"opens {opens.astimezone(windows.timezone):%a %Y-%m-%d %H:%M} {windows.zone_name} "
                f"({iso(opens)})"
                if opens is not None
                else "never opens (no day in its windows)"
            )
            why = (
                f"waiting for the {stage} deploy window: {when}; "
                f"`pipeline promote {stage} --now --reason ...` starts it now"
            )
            return Wait(WaitingOn.WINDOW, why, opens), ""
    return None, ""


def window_state(windows: DeployWindows, now: datetime) -> tuple[bool, datetime | None]:
    """Whether a deployment may start at ``now``, and when the next window opens (None if never)."""
    local = now.astimezone(windows.timezone)
    opens: datetime | None = None
    for offset in range(-1, 8):
        day = (local + timedelta(days=offset)).date()
        for window in windows.allow:
            if day.weekday() not in window.days:
                continue
            start = datetime.combine(day, window.start, tzinfo=windows.timezone)
            end = (
                datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=windows.timezone)
                if window.end == datetime.min.time()
                else datetime.combine(day, window.end, tzinfo=windows.timezone)
            )
            if start <= local < end:
                return True, None
            if start > local and (opens is None or start < opens):
                opens = start
    return False, opens.astimezone(now.tzinfo) if opens is not None else None
