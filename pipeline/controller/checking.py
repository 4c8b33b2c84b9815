"""Running a stage's checks: the dynos first (they must run the release being verified), then one
attempt of every check that is due, through the check plugins of ``checks``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import checks
from pipeline import domain
from pipeline.config import Settings, StageSettings
from pipeline.model import CheckProgress, CheckResult, Dyno
from pipeline.ports import Platform, ReleaseStore


@dataclass(frozen=True)
class StageLook:
    """What one look at a stage saw: its dynos (None: no check was due, nothing looked at), and the
    attempts of the due checks, by their position in the stage's list (None: none made)."""

    dynos: tuple[Dyno, ...] | None = None
    checks: Mapping[int, CheckResult] | None = None


class Checker:
    def __init__(self, settings: Settings, platform: Platform, store: ReleaseStore) -> None:
        self.settings = settings
        self.platform = platform
        self.store = store
        self._web_urls: dict[str, str] = {}

    def look(
        self,
        stage: StageSettings,
        commit: str,
        version: int | None,
        progress: tuple[CheckProgress, ...],
        now: datetime,
    ) -> StageLook:
        """The stage's dynos, and an attempt of every check that is due (by ``progress``) once the
        dynos run ``version`` (of ``commit``); nothing when no check is due yet."""
        due = due_checks(stage, progress, now)
        if not due:
            return StageLook()
        dynos = tuple(self.platform.dynos(stage.app))
        if domain.dyno_problem(dynos, version)[0] is not None:
            return StageLook(dynos=dynos)
        return StageLook(dynos=dynos, checks=self._run(stage, commit, version, due))

    def _run(
        self, stage: StageSettings, commit: str, version: int | None, due: list[int]
    ) -> dict[int, CheckResult]:
        """One attempt of each due check of the stage, by its position in the stage's list."""
        target = checks.Target(
            stage=stage.name,
            app=stage.app,
            web_url=self.web_url(stage.app),
            release_version=version,
            commit=commit,
            platform=self.platform,
        )
        return {
            index: checks.run_check(stage.checks[index].kind, stage.checks[index].options, target)
            for index in due
        }

    def web_url(self, app: str) -> str:
        """Where the app answers HTTP (looked up once)."""
        if app not in self._web_urls:
            self._web_urls[app] = self.platform.web_url(app)
        return self._web_urls[app]

    def commit_of_slug(self, slug_id: str | None) -> str:
        """The commit of the controller's release built as ``slug_id`` ("" when it is not ours)."""
        found = next(
            (
                r
                for r in self.store.history(self.settings.name, 500)
                if slug_id and r.staging_slug_id == slug_id
            ),
            None,
        )
        return found.commit if found else ""


def due_checks(stage: StageSettings, progress: tuple[CheckProgress, ...], now: datetime) -> list[int]:
    """The positions of the stage's checks to try now: not done, and their next try has come."""
    if len(progress) != len(stage.checks):
        return list(range(len(stage.checks)))
    return [i for i, p in enumerate(progress) if not p.done and (p.next_at is None or p.next_at <= now)]
