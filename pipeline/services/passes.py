"""Passes of the controller until nothing moves without a person or the clock (``tick --settle``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.controller import PassReport
from pipeline.errors import PipelineError
from pipeline.services.wiring import Wiring


class SettleTimeout(PipelineError):
    """``tick --settle`` ran out of time while something was still moving."""


def settle(
    services: Wiring, timeout: float, on_pass: Callable[[PassReport], None] | None = None
) -> list[PassReport]:
    """Passes until things settle, for ``Services.settle``."""
    deadline = time.monotonic() + timeout
    reports: list[PassReport] = []
    first = True
    overtime = False
    while True:
        report = services.tick(detect=True if first else None)
        first = False
        reports.append(report)
        if on_pass:
            on_pass(report)
        if not report.moving and not report.skipped:
            return reports
        if time.monotonic() > deadline and (overtime or not report.moved_any):
            # Out of time (one pass more for a release that just moved into a wait on a
            # person): name what is still moving by itself.
            moving = [r for r in report.releases if r.moved or (r.wait and r.wait.on.moves_by_itself)]
            waiting = "; ".join(
                f"release {r.release_id} {r.state}: {r.wait.detail}" for r in moving if r.wait
            )
            raise SettleTimeout(f"still moving after {timeout:g}s: {waiting or report.skipped}")
        overtime = time.monotonic() > deadline
        time.sleep(1.0 if report.skipped else report.pause(services.clock()))
