"""What the use cases work with: the settings and the store and, once connected
(``bootstrap.services``), the controller, Bitbucket and Heroku; and what they all ask of these: a
pass of the controller, a stage by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pipeline.config import Settings, StageSettings
from pipeline.controller import Controller, PassReport, utcnow
from pipeline.errors import BadInput
from pipeline.ports import Backups, Platform, ReleaseStore, SourceControl


@dataclass
class Wiring:
    """The parts ``Services`` is built from; every module of ``pipeline.services`` works with them."""

    settings: Settings
    store: ReleaseStore
    controller: Controller | None = None
    platform: Platform | None = None
    source: SourceControl | None = None
    backups: Backups | None = None
    clock: Callable[[], datetime] = utcnow

    def tick(self, detect: bool | None = True) -> PassReport:
        """One pass of the controller (``detect``: see ``Controller.tick``)."""
        assert self.controller is not None, "built without adapters: use bootstrap.services(settings)"
        return self.controller.tick(detect=detect)

    def stage(self, name: str) -> StageSettings:
        """The stage called ``name``; BadInput naming the known ones otherwise."""
        for stage in self.settings.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.settings.stages)
        raise BadInput("ENV", f"unknown environment {name!r}: the environments are {known}")
