"""Rolling an environment back: the plan, the request that locks the stage, the passes that carry
it out, and the conversation of `pipeline rollback` and its runbook around them."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline import rollbacks
from pipeline.errors import BadInput, Refused
from pipeline.model import Rollback
from pipeline.services.environments import given_reason
from pipeline.services.passes import SettleTimeout
from pipeline.services.wiring import Wiring


def plan_rollback(services: Wiring, name: str, to: str | None = None) -> rollbacks.RollbackPlan:
    """What rolling stage ``name`` back would take out, for ``Services.plan_rollback``."""
    assert services.controller is not None, "built without adapters: use bootstrap.services(settings)"
    stage = services.stage(name)
    version = _version(to) if to is not None else None
    return rollbacks.plan(services.controller, stage, version)


def request_rollback(
    services: Wiring, the_plan: rollbacks.RollbackPlan, reason: str, force: bool = False
) -> Rollback:
    """The rollback of ``the_plan`` recorded, its stage locked, for ``Services.request_rollback``."""
    assert services.controller is not None, "built without adapters: use bootstrap.services(settings)"
    return rollbacks.request(
        services.controller, the_plan, given_reason(reason), force, services.settings.actor
    )


def roll_back(
    services: Wiring,
    name: str,
    to: str | None,
    reason: str,
    *,
    force: bool,
    confirm: Callable[[rollbacks.RollbackPlan], bool],
    say: Callable[[str], None],
    timeout: float = 600,
) -> Rollback | None:
    """All of `pipeline rollback`, for ``Services.roll_back``."""
    given_reason(reason)  # an empty reason: refused before anything is looked at
    plan = plan_rollback(services, name, to)
    for line in plan.lines():
        say(line)
    if plan.needs_force and not force:
        raise Refused(
            "this rollback needs --force: " + "; ".join(plan.needs_force) + ". Nothing was changed."
        )
    if not confirm(plan):
        say("Nothing was changed.")
        return None
    asked = request_rollback(services, plan, reason, force)
    say(f"Rollback {asked.id} recorded; {name} is locked. Rolling back...")
    said: set[str] = set()

    def show(r: Rollback) -> None:
        line = f"  rollback {r.id} {r.state}" + (f": {r.outcome}" if r.outcome else "")
        if line not in said:
            said.add(line)
            say(line)

    done = carry_out(services, asked.id or 0, timeout, on_pass=show)
    say(done.outcome)
    return done


def carry_out(
    services: Wiring,
    rollback_id: int,
    timeout: float = 600,
    on_pass: Callable[[Rollback], None] | None = None,
) -> Rollback:
    """Passes until rollback ``rollback_id`` ends, for ``Services.carry_out``."""
    deadline = time.monotonic() + timeout
    while True:
        report = services.tick(detect=False)
        rollback = services.store.rollback(rollback_id)
        if on_pass:
            on_pass(rollback)
        if rollback.state.is_final:
            return rollback
        if time.monotonic() > deadline:
            raise SettleTimeout(f"rollback {rollback_id} still {rollback.state} after {timeout:g}s")
        time.sleep(1.0 if report.skipped else report.pause(services.clock()))


def _version(text: str) -> int:
    value = text.strip().lower().removeprefix("v")
    if not value.isdecimal():
        raise BadInput(
            "--to", "expected a Heroku release version such as 12 or v12 (`heroku releases` lists them)"
        )
    return int(value)
