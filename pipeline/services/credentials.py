"""The controller's credentials, checked (``pipeline credentials check``, after rotating them too):
for each, what it is taken to be, which account it acts as, and each permission the release path
needs, granted or not, with what to do; then the webhook is given its secret again. Recorded in the
history, never a secret."""

from __future__ import annotations

from pipeline import domain
from pipeline.errors import ExternalError
from pipeline.model import Event, EventKind, PermissionCheck, Webhook
from pipeline.services.wiring import Wiring

WEBHOOK_SECRET = "BITBUCKET_WEBHOOK_SECRET"


def check_credentials(services: Wiring, webhook_url: str | None = None) -> list[PermissionCheck]:
    """Each credential's permissions (see ``ports``' ``permissions``), for ``Services``."""
    assert services.source is not None and services.platform is not None and services.backups is not None
    settings = services.settings
    nicknames = any(not domain.is_account_ident(name) for name in settings.approval.approvers)
    checks = services.source.permissions(members=nicknames)
    production = settings.production
    apps = [stage.app for stage in settings.stages]
    checks += services.platform.permissions(apps, production.pipeline)
    checks += services.backups.permissions(production.app)
    if settings.webhooks is not None and settings.webhook_secret is not None:
        checks.append(_rearm_webhook(services, checks, webhook_url))
    said = "; ".join(f"{c.credential} {c.need}: {'ok' if c.ok else 'MISSING'}" for c in checks)
    event = Event(None, services.clock(), EventKind.CredentialsRotated, settings.actor, said)
    services.store.note(settings.name, [event])
    return checks


def _rearm_webhook(
    services: Wiring, checks: list[PermissionCheck], webhook_url: str | None
) -> PermissionCheck:
    """Give the webhook its secret again, when Bitbucket's credential may manage webhooks."""
    need = "sign webhook deliveries"
    hooks = services.settings.webhooks
    assert hooks is not None
    if not all(c.ok for c in checks if c.credential.startswith("BITBUCKET")):
        return PermissionCheck(
            WEBHOOK_SECRET, need, False, "not given to the webhook: BITBUCKET_TOKEN lacks a permission"
        )
    url = webhook_url or hooks.public_url or f"http://{hooks.host}:{hooks.port}/webhooks/bitbucket"
    try:
        hook, outcome = install_webhook(services, url)
    except ExternalError as exc:
        return PermissionCheck(WEBHOOK_SECRET, need, False, f"not given to the webhook to {url}: {exc}")
    return PermissionCheck(WEBHOOK_SECRET, need, True, f"given to the webhook to {hook.url} ({outcome})")


def check_line(check: PermissionCheck) -> str:
    """One check for people: ``ok`` or ``MISSING``, the credential, the need, what was seen."""
    return f"{'ok     ' if check.ok else 'MISSING'}  {check.credential}: {check.need}: {check.detail}"


def install_webhook(services: Wiring, url: str) -> tuple[Webhook, str]:
    """The repository's webhook to ``url``, for ``Services.install_webhook``."""
    from pipeline.web.webhooks import USED_EVENTS

    assert services.source is not None, "built without adapters: use bootstrap.services(settings)"
    assert services.settings.webhook_secret is not None, "the CLI checks the secret first"
    description = f"release controller: pipeline {services.settings.name}"
    return services.source.install_webhook(
        url, services.settings.webhook_secret.get_secret_value(), USED_EVENTS, description
    )
