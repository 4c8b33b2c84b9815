"""Ending a release a person no longer wants, before it is promoted (``pipeline abort``)."""

from __future__ import annotations

from pipeline.model import Release
from pipeline.services.environments import given_reason
from pipeline.services.wiring import Wiring


def abort(services: Wiring, release_id: int, reason: str | None) -> Release:
    """For ``Services.abort``."""
    assert services.controller is not None, "built without adapters: use bootstrap.services(settings)"
    services.store.get(release_id)  # NotFound for an unknown release, before anything else
    return services.controller.abort(release_id, services.settings.actor, given_reason(reason))
