"""The use cases the CLI, the scheduler and (later) the web app and runbooks share.

Nobody else calls the adapters: a command asks a service, the service asks the controller, the
store or a port, and answers in plain JSON-ready values.

``Services`` is where every use case is asked for and says what it does; each one's work is in the
module of its concern:

- ``wiring``: what the use cases work with (settings, store, controller, ports, clock), a pass and
  a stage by name.
- ``passes``: passes until things settle, and ``SettleTimeout``.
- ``environments``: freezes, locks and one-time overrides; ``frozen_text``, ``given_reason``,
  ``parse_until``.
- ``hotfixes``: a hotfix branch through staging and approval on its own.
- ``backups``: the restore drill.
- ``credentials``: the credentials checked after rotating them, and the webhook.
- ``rolling_back``: the rollback's plan, request, passes and conversation.
- ``views``: the JSON views (``release_summary``, ``release_detail``, ``event_json``) and the
  reading use cases (history, show, log, status).
- ``audit``: the history's hash chain verified (``ChainReport``) and exported for an auditor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pipeline import restore, rollbacks
from pipeline.controller import PassReport
from pipeline.model import EnvironmentState, PermissionCheck, Release, Rollback, Webhook
from pipeline.services import (
    aborts,
    audit,
    backups,
    credentials,
    environments,
    hotfixes,
    passes,
    rolling_back,
    views,
)
from pipeline.services.audit import ChainProblem, ChainReport
from pipeline.services.credentials import check_line
from pipeline.services.environments import frozen_text, given_reason, parse_until
from pipeline.services.passes import SettleTimeout
from pipeline.services.views import event_json, release_detail, release_summary
from pipeline.services.wiring import Wiring


class Services(Wiring):
    """Every use case, built on its ``Wiring`` (``bootstrap.services(settings)`` builds it):
    ``tick`` (one pass) and ``stage`` (a stage by name) come from there."""

    # --- Passes --------------------------------------------------------------------------------

    def settle(self, timeout: float, on_pass: Callable[[PassReport], None] | None = None) -> list[PassReport]:
        """Run passes until nothing can move without a person or the clock; SettleTimeout after
        ``timeout`` seconds. Between passes it sleeps until the next check is due (at most 1 s).
        The first pass always looks at the watched branch."""
        return passes.settle(self, timeout, on_pass)

    # --- Environments: freezes, locks, overrides ------------------------------------------------

    def freeze(self, name: str, reason: str, until: str | None = None) -> EnvironmentState:
        """Freeze a stage: nothing starts deploying to it until it is unfrozen or ``until`` (a
        duration such as 2h, or a time) passes. Freezing again replaces the reason and end."""
        return environments.freeze(self, name, reason, until)

    def unfreeze(self, name: str, reason: str = "") -> EnvironmentState | None:
        """Lift a stage's freeze; None (and nothing recorded) when it was not frozen."""
        return environments.unfreeze(self, name, reason)

    def unlock(self, name: str, reason: str) -> EnvironmentState | None:
        """Clear a stage's lock (set by a rollback); None (nothing recorded) when it was not locked."""
        return environments.unlock(self, name, reason)

    def promote_now(self, name: str, reason: str) -> Release:
        """Let the release waiting for stage ``name`` start now, outside its window or freeze (a
        one-time override, recorded as such), then run a pass. The approval rules still hold; a
        lock does not give way (unlock first). Refused when nothing waits for the stage."""
        return environments.promote_now(self, name, reason)

    def abort(self, release_id: int, reason: str | None) -> Release:
        """End a release before it is promoted, with the person's reason (``pipeline abort``):
        declined in Bitbucket, recorded as aborted. NotFound for no such release; BadInput for no
        reason; Refused once it is promoting or ended."""
        return aborts.abort(self, release_id, reason)

    # --- Hotfixes ------------------------------------------------------------------------------

    def start_hotfix(self, branch: str) -> Release:
        """Take the head of a hotfix branch (``source.hotfix_branches``) through staging and approval
        to production on its own, without what else is on the watched branch. BadInput for a branch
        that is no hotfix branch or does not exist; Refused when it is not based on production's
        branch (it would take production's other commits out) or is a release already."""
        return hotfixes.start_hotfix(self, branch)

    # --- Backups: the restore drill --------------------------------------------------------------

    def restore_drill(
        self, context: restore.Shell, backup: str | None = None, *, keep: bool = False
    ) -> restore.RestoreReport:
        """Restore a production backup (``backup``: its name b012, number or uuid; default the
        newest completed one) into a scratch database and check it (the tables come back with rows;
        every ``backups.restore_checks`` query holds), through ``context``: ``invoke.Context()`` on
        this machine, or a ``fabric.Connection`` to a verification host. The outcome goes into the
        history; the database is dropped unless ``keep``."""
        return backups.restore_drill(self, context, backup, keep=keep)

    # --- Credentials -------------------------------------------------------------------------------

    def check_credentials(self, webhook_url: str | None = None) -> list[PermissionCheck]:
        """Each credential in the environment (after rotating them too): which kind it is taken to
        be, which account it acts as, each permission the release path needs and whether it has it
        (with what to do when not); then the webhook is given its secret again. Recorded in the
        history; nothing of the secrets themselves is printed or recorded."""
        return credentials.check_credentials(self, webhook_url)

    # --- Rollbacks -----------------------------------------------------------------------------

    def plan_rollback(self, name: str, to: str | None = None) -> rollbacks.RollbackPlan:
        """What rolling stage ``name`` back (to version ``to``: "12" or "v12"; default the newest
        earlier release running other code) would take out, and what of it needs --force."""
        return rolling_back.plan_rollback(self, name, to)

    def request_rollback(
        self, the_plan: rollbacks.RollbackPlan, reason: str, force: bool = False
    ) -> Rollback:
        """Record the rollback of a plan and lock its stage (the controller's passes carry it out);
        Refused when it needs --force, or while something deploys to the stage."""
        return rolling_back.request_rollback(self, the_plan, reason, force)

    def roll_back(
        self,
        name: str,
        to: str | None,
        reason: str,
        *,
        force: bool,
        confirm: Callable[[rollbacks.RollbackPlan], bool],
        say: Callable[[str], None],
        timeout: float = 600,
    ) -> Rollback | None:
        """All of `pipeline rollback` (and its runbook): say the plan; refuse one that needs --force
        without it; ``confirm`` (None when declined: nothing changed); record it (locking ``name``);
        carry it out, saying each step and the outcome. BadInput, Refused and SettleTimeout as the
        steps raise them."""
        return rolling_back.roll_back(
            self, name, to, reason, force=force, confirm=confirm, say=say, timeout=timeout
        )

    def carry_out(
        self, rollback_id: int, timeout: float = 600, on_pass: Callable[[Rollback], None] | None = None
    ) -> Rollback:
        """Run passes until the rollback ends (a ``serve`` running beside may carry it out instead:
        then this only watches); SettleTimeout after ``timeout`` seconds."""
        return rolling_back.carry_out(self, rollback_id, timeout, on_pass)

    def log(self, environment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The history of releases and environments, newest first (one environment's only, if named)."""
        return views.log(self, environment, limit)

    # --- Webhooks ------------------------------------------------------------------------------

    def install_webhook(self, url: str) -> tuple[Webhook, str]:
        """Register (or update) the repository's webhook to ``url`` with the configured secret and
        the events that can move a release; ("created" | "updated"). Idempotent: one hook per URL."""
        return credentials.install_webhook(self, url)

    # --- Reading -------------------------------------------------------------------------------

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Releases newest first, in the history JSON contract (see README)."""
        return views.history(self, limit)

    def show(self, release_id: int) -> dict[str, Any]:
        """One release, everything known about it, and every event oldest first."""
        return views.show(self, release_id)

    def status(self) -> dict[str, Any]:
        """Per environment what runs now, and which releases wait on what."""
        return views.status(self)

    # --- Audit ---------------------------------------------------------------------------------

    def verify_history(self) -> ChainReport:
        """Walk the store's hash chain of events: whole, or the first event edited, removed or
        inserted behind the controller's back. Reads the store only."""
        return audit.verify(self.store)

    def export_history(self, since: str | None = None) -> Iterator[str]:
        """The events (``since``: a duration back from now such as 7d, or an ISO time) oldest
        first with their hashes, one JSON object per line. BadInput for a ``since`` that is neither."""
        start = audit.parse_since(since, self.clock()) if since else None
        return audit.export(self.store, start)


__all__ = [
    "ChainProblem",
    "ChainReport",
    "Services",
    "SettleTimeout",
    "check_line",
    "event_json",
    "frozen_text",
    "given_reason",
    "parse_until",
    "release_detail",
    "release_summary",
]
