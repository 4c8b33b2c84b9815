"""The ``dynos`` check: every process type runs as many dynos as its formation says, on the release.

For each process type looked at (``types``, or by default every type whose formation quantity is
above 0) it passes when at least ``quantity`` dynos of that type are ``up`` on
``target.release_version`` and none of that type crashed on it. A failure names the type, how many
are up of how many wanted, and the dynos that crashed, are still starting, or run another release;
its evidence lists the formation and every dyno. Give it a ``soak`` (the controller then keeps
calling it for that long after it first passed) to catch a dyno that crashes a while after boot.

It is an ``error`` when it cannot look: no platform, no release version, Heroku not answering.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from checks import CheckOptions, Target
from pipeline.errors import ExternalError
from pipeline.model import CheckResult, Dyno, Formation

NAME = "dynos"
_PROCESS_TYPE = re.compile(r"[-\w]{1,128}")  # as Heroku names process types


def _process_type(value: str) -> str:
    if not _PROCESS_TYPE.fullmatch(value):
        raise ValueError("expected a process type such as web or worker (letters, digits, _ and -)")
    return value


ProcessType = Annotated[str, AfterValidator(_process_type)]


class Options(CheckOptions):
    """Keys under ``- dynos:`` in ``environments/<stage>.yml``."""

    types: tuple[ProcessType, ...] | None = Field(
        default=None,
        min_length=1,
        description="the process types to look at (default: every type with quantity > 0); a type "
        "missing from the formation fails",
    )

    @field_validator("types")
    @classmethod
    def _each_once(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each process type at most once")
        return value


def run(options: Options, target: Target) -> CheckResult:
    """One look at the formation and the dynos: passed, failed (with what is wrong) or error."""
    if target.platform is None:
        return CheckResult(NAME, "error", "this check reads Heroku, and the target has no platform")
    version = target.release_version
    if version is None:
        return CheckResult(NAME, "error", f"no release version of {target.app} to look at")
    try:
        formation = target.platform.formation(target.app)
        dynos = target.platform.dynos(target.app)
    except ExternalError as exc:
        return CheckResult(NAME, "error", f"could not read the dynos of {target.app}: {exc}")

    wanted = {f.type: f.quantity for f in formation}
    types = options.types or tuple(kind for kind, quantity in wanted.items() if quantity > 0)
    problems = [
        f"no process type {kind!r} in the formation (it has {', '.join(sorted(wanted)) or 'none'})"
        for kind in types
        if kind not in wanted
    ]
    fine: list[str] = []
    for kind in (k for k in types if k in wanted):
        of_kind = [d for d in dynos if d.type == kind]
        problem = _judge(kind, wanted[kind], of_kind, version)
        if problem is not None:
            problems.append(problem)
        else:
            fine.append(f"{kind} {sum(_runs(d, version) for d in of_kind)} of {wanted[kind]} up")
    if problems:
        return CheckResult(NAME, "failed", f"v{version}: {'; '.join(problems)}", _evidence(formation, dynos))
    if not fine:
        return CheckResult(NAME, "passed", f"v{version}: the formation runs no dynos (every quantity is 0)")
    return CheckResult(NAME, "passed", f"v{version}: {', '.join(fine)}")


def _judge(kind: str, quantity: int, dynos: list[Dyno], version: int) -> str | None:
    """What is wrong with the dynos of one process type, or None when enough are up and none
    crashed on ``version``."""
    up = [d for d in dynos if _runs(d, version)]
    crashed = [d for d in dynos if d.state == "crashed" and d.release_version == version]
    if len(up) >= quantity and not crashed:
        return None
    notes = [f"{d.name} crashed on v{version}" for d in crashed]
    others = [_where(d) for d in dynos if d not in up and d not in crashed]
    if len(up) < quantity and (others or not crashed):
        notes += others or [f"no {kind} dyno at all"]
    return f"{kind}: {len(up)} of {quantity} up on v{version} ({', '.join(notes)})"


def _runs(dyno: Dyno, version: int) -> bool:
    """Whether the dyno is up on release ``version``."""
    return dyno.state == "up" and dyno.release_version == version


def _where(dyno: Dyno) -> str:
    """'web.1 is up on v11', 'web.2 is starting on v12'."""
    on = f"v{dyno.release_version}" if dyno.release_version is not None else "an unknown release"
    return f"{dyno.name} is {dyno.state} on {on}"


def _evidence(formation: list[Formation], dynos: list[Dyno]) -> str:
    """The formation and every dyno, one line each, for the history."""
    lines = [f"formation: {f.type} x{f.quantity} ({f.size or 'size unknown'})" for f in formation]
    lines += [f"dyno: {_where(d)}" for d in sorted(dynos, key=lambda d: d.name)] or ["dyno: none"]
    return "\n".join(lines)
