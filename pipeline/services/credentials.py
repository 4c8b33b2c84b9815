"""The controller's credentials, checked after rotating them, and the webhook that carries its secret."""

from __future__ import annotations

from pipeline.model import Event, EventKind, Webhook
from pipeline.services.wiring import Wiring


def rotate_credentials(services: Wiring, webhook_url: str | None = None) -> list[str]:
    """Each credential tried, the webhook given its secret again, for ``Services.rotate_credentials``."""
    assert services.controller is not None and services.source is not None and services.platform is not None
    said = [
        f"BITBUCKET_TOKEN works: account {services.source.check_access()} reads "
        f"{services.settings.source.workspace}/{services.settings.source.repository}",
        f"HEROKU_API_KEY works: account {services.platform.check_access()}",
    ]
    for stage in services.settings.stages:
        live = services.platform.current_release(stage.app)
        said.append(f"HEROKU_API_KEY reads {stage.app} (v{live.version if live else '-'})")
    if services.settings.webhooks is not None and services.settings.webhook_secret is not None:
        hooks = services.settings.webhooks
        url = webhook_url or hooks.public_url or f"http://{hooks.host}:{hooks.port}/webhooks/bitbucket"
        hook, outcome = install_webhook(services, url)
        said.append(f"BITBUCKET_WEBHOOK_SECRET given to the webhook to {hook.url} ({outcome})")
    event = Event(
        None, services.clock(), EventKind.CredentialsRotated, services.settings.actor, "; ".join(said)
    )
    services.store.note(services.settings.name, [event])
    return said


def install_webhook(services: Wiring, url: str) -> tuple[Webhook, str]:
    """The repository's webhook to ``url``, for ``Services.install_webhook``."""
    from pipeline.web.webhooks import USED_EVENTS

    assert services.source is not None, "built without adapters: use bootstrap.services(settings)"
    assert services.settings.webhook_secret is not None, "the CLI checks the secret first"
    description = f"release controller: pipeline {services.settings.name}"
    return services.source.install_webhook(
        url, services.settings.webhook_secret.get_secret_value(), USED_EVENTS, description
    )
