"""The scheduler of ``pipeline serve``: passes one at a time, brought forward on request, and a
shutdown that never hangs on the pass it waits for."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from pipeline.controller import PassReport
from pipeline.scheduler import Scheduler


def test_shutdown_during_a_pass_that_brings_the_next_one_forward_returns() -> None:
    started = threading.Event()

    def slow_moving_pass(detect: bool | None) -> PassReport:
        started.set()
        time.sleep(0.5)
        return PassReport(detected=1)  # "something moves": the pass asks for the next one at its end

    scheduler = Scheduler(slow_moving_pass, timedelta(hours=1))
    scheduler.start()
    assert started.wait(10), "the first pass never started"
    stopping = threading.Thread(target=scheduler.shutdown, daemon=True)
    stopping.start()
    stopping.join(20)
    assert not stopping.is_alive(), "shutdown hung waiting for the pass (APScheduler's job store lock)"


def test_a_request_during_a_pass_gets_a_pass_of_its_own_right_after() -> None:
    passes: list[bool | None] = []
    first = threading.Event()
    release = threading.Event()

    def run(detect: bool | None) -> PassReport:
        passes.append(detect)
        if len(passes) == 1:
            first.set()
            release.wait(10)
        return PassReport()

    scheduler = Scheduler(run, timedelta(hours=1))
    scheduler.start()
    try:
        assert first.wait(10)
        scheduler.run_now(look=True)  # a webhook arrives while the first pass runs
        release.set()
        deadline = time.monotonic() + 10
        while len(passes) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert passes[:2] == [True, True]  # the second pass looks at everything, without waiting an hour
    finally:
        scheduler.shutdown()
