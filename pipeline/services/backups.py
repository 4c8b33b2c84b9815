"""Production's backups: the restore drill, its outcome recorded in the history."""

from __future__ import annotations

import json

from pipeline import restore
from pipeline.errors import BadInput, NotFound, Refused
from pipeline.model import Event, EventKind
from pipeline.services.views import iso
from pipeline.services.wiring import Wiring


def restore_drill(
    services: Wiring, context: restore.Shell, backup: str | None = None, *, keep: bool = False
) -> restore.RestoreReport:
    """A backup restored and checked through ``context``, the outcome noted, for
    ``Services.restore_drill``."""
    assert services.controller is not None, "built without adapters: use bootstrap.services(settings)"
    production = services.settings.production
    store = services.controller.backups
    try:
        chosen = store.backup(production.app, backup) if backup else None
    except NotFound:
        raise BadInput(
            "--backup", f"{backup!r} is no backup of {production.app} (`heroku pg:backups` lists them)"
        ) from None
    if chosen is None:
        completed = [b for b in store.backups(production.app) if b.status == "completed"]
        if not completed:
            raise Refused(f"{production.app} has no completed backup to restore")
        chosen = completed[0]
    elif chosen.status != "completed":
        raise BadInput(
            "--backup", f"{chosen.name} is {chosen.status}: only a completed backup can be restored"
        )
    url = store.public_url(production.app, chosen.id)
    checks = production.backups.restore_checks if production.backups else ()
    report = restore.restore_drill(
        context, url, server=services.settings.restore_server.get_secret_value(), checks=checks, keep=keep
    )
    now = services.clock()
    kind = EventKind.BackupRestoreVerified if report.ok else EventKind.BackupRestoreFailed
    detail = json.dumps(
        {
            "backup": {"id": chosen.id, "name": chosen.name, "finished_at": iso(chosen.finished_at)},
            "where": report.where,
            "tables": dict(report.tables),
            "checks": [{"query": c.query, "ok": c.ok, "returned": c.returned} for c in report.checks],
            "problems": list(report.problems),
        },
        indent=2,
    )
    event = Event(
        None,
        now,
        kind,
        services.settings.actor,
        f"{chosen.name}: {report.summary()}",
        refs={"backup": chosen.id},
        detail=detail,
        environment=production.name,
    )
    services.store.note(services.settings.name, [event])
    return report
