"""``pipeline serve``: passes on a schedule (and at once on each webhook) until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline import bootstrap
from pipeline.cli.common import CONFIG_OPTION, read_settings
from pipeline.config import Settings, missing_webhook_secret
from pipeline.errors import ConfigInvalid, ExternalError, Temporary
from pipeline.scheduler import Scheduler
from pipeline.services import Services
from pipeline.web.app import WEBHOOK_PATH
from pipeline.web.server import WebServer

START_RETRY_MAX = 300.0  # the longest wait between two tries to start


@click.command()
@CONFIG_OPTION
def serve(config_path: Path) -> None:
    """Run passes every schedule.poll_interval until SIGINT or SIGTERM."""
    settings = read_settings(config_path)
    services = started(settings, StopSignal())
    if services is not None:
        serve_until_stopped(services)


def started(settings: Settings, stop: StopSignal) -> Services | None:
    """The services, once Bitbucket and Heroku answer: a service that is rate limiting, down or out
    of reach at start is waited for (as a pass would wait), saying so; a refusal (a bad token, an
    unknown repository) exits 1 at once. None when stopped while waiting."""
    while True:
        try:
            return bootstrap.services(settings)
        except Temporary as exc:
            wait = min(max(exc.retry_after, 1.0), START_RETRY_MAX)
            click.echo(f"waiting {wait:g}s to start: {exc}", err=True)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if stop.received:
                    return None
                time.sleep(0.2)
        except ConfigInvalid as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(2)
        except ExternalError as exc:
            raise click.ClickException(f"cannot start: {exc}") from exc


def serve_until_stopped(
    services: Services, ready: Callable[[Scheduler, WebServer | None], None] | None = None
) -> None:
    """Passes on the scheduler and, with ``webhooks:``, the webhook receiver, until a signal.
    ``ready(scheduler, server)`` runs in a thread of its own once both are up."""
    settings = services.settings
    for problem in missing_webhook_secret(settings):
        click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    stop = StopSignal.installed or StopSignal()
    interval = settings.schedule.poll_interval
    scheduler = Scheduler(lambda detect: services.tick(detect=detect), interval)
    try:
        server = bootstrap.web_server(services, scheduler)
    except OSError as exc:
        hooks = settings.webhooks
        where = f"{hooks.host}:{hooks.port}" if hooks else ""
        raise click.ClickException(
            f"cannot take webhooks on {where}: {exc}; set webhooks.port (or PIPELINE_WEBHOOK_PORT) "
            "to a free port, or 0 for any"
        ) from exc
    click.echo(
        f"Serving pipeline {settings.name}: a pass every {interval.total_seconds():g}s"
        + (f", and at once on each Bitbucket webhook to {server.url}{WEBHOOK_PATH}" if server else "")
        + "; SIGINT or SIGTERM stops after the running pass.",
        err=True,
    )
    if server is not None:
        server.start()
    if ready is not None:
        threading.Thread(target=ready, args=(scheduler, server), daemon=True).start()
    scheduler.start()
    try:
        stop.wait(until=lambda: scheduler.fatal is not None)
    finally:
        if server is not None:
            server.stop()
        scheduler.shutdown()
    if scheduler.fatal is not None:
        raise click.ClickException(f"stopped: {scheduler.fatal}")
    click.echo("Stopped.", err=True)


class StopSignal:
    """SIGINT or SIGTERM, asking a long-running command to stop.

    The handler only sets a flag and the main thread polls it: a handler that takes a lock (as
    ``threading.Event.set`` does) can deadlock with the main thread interrupted inside that very
    lock (in ``Event.wait``), and the process would then never stop."""

    installed: StopSignal | None = None  # the one handler of this process, once made

    def __init__(self) -> None:
        self.received = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        StopSignal.installed = self

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = True

    def wait(self, until: Callable[[], bool] = lambda: False) -> None:
        """Until a signal comes (or ``until()`` says to stop anyway)."""
        while not self.received and not until():
            time.sleep(0.2)
