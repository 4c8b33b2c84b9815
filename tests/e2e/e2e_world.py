"""The world of an end-to-end test: a sandbox, the shipped configuration with quicker checks, the
real adapters over HTTP, a store, and the people who merge and approve."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import Settings
from pipeline.demo import People
from pipeline.model import Release
from pipeline.services import Services
from sandbox.core import Sandbox

ROOT = Path(__file__).resolve().parents[2]
# Quicker than the shipped 5 retries 2 s apart, so a failing check fails in about a second.
FAST_CHECKS: list[dict[str, Any]] = [
    {"http": {"path": "/health", "expect_status": 200, "retries": 3, "interval": "300ms", "timeout": "5s"}}
]


@dataclass
class World:
    sandbox: Sandbox
    settings: Settings
    services: Services
    people: People
    env: dict[str, str]
    config_path: Path

    def settle(self, timeout: float = 90) -> None:
        self.services.settle(timeout)

    def configure(self, **sections: dict[str, Any]) -> None:
        """Change sections of pipeline.yml (``approval={"min_approvals": 2}`` merges into
        ``approval:``) and rebuild the settings and services on the same sandbox and store."""
        from pipeline import bootstrap, config

        data = yaml.safe_load(self.config_path.read_text())
        for name, changes in sections.items():
            data[name] = {**(data.get(name) or {}), **changes}
        self.config_path.write_text(yaml.safe_dump(data))
        self.settings = config.load(self.config_path, env=self.env)
        self.services = bootstrap.services(self.settings)

    def use_credential(
        self, token: str, email: str | None = None, approvers: list[str] | None = None
    ) -> None:
        """Give the controller another Bitbucket credential (``email``: an API token; none: an access
        token), and optionally approvers as written in pipeline.yml; rebuild settings and services."""
        from pipeline import bootstrap, config

        self.env = {k: v for k, v in self.env.items() if k != "BITBUCKET_EMAIL"}
        self.env["BITBUCKET_TOKEN"] = token
        if email is not None:
            self.env["BITBUCKET_EMAIL"] = email
        if approvers is not None:
            data = yaml.safe_load(self.config_path.read_text())
            data["approval"] = {**(data.get("approval") or {}), "approvers": approvers}
            self.config_path.write_text(yaml.safe_dump(data))
        self.settings = config.load(self.config_path, env=self.env)
        self.services = bootstrap.services(self.settings)

    def account_id(self, user: str) -> str:
        """A sandbox user's Atlassian account id (what approvers are written as with an access token)."""
        return str(self.sandbox.bitbucket.store.users[user]["account_id"])

    def configure_stage(self, stage: str, **keys: Any) -> None:
        """Set top-level keys of ``environments/<stage>.yml`` (``checks=[...]``, ``windows={...}``)
        and rebuild the settings and services."""
        from pipeline import bootstrap, config

        path = self.config_path.parent / "environments" / f"{stage}.yml"
        data = yaml.safe_load(path.read_text())
        data.update(keys)
        path.write_text(yaml.safe_dump(data))
        self.settings = config.load(self.config_path, env=self.env)
        self.services = bootstrap.services(self.settings)

    def restorable_backup(self) -> str:
        """A fresh, completed backup of production that the restore drill can restore here (its
        uuid); the test is skipped, saying why, where it cannot (SQLite databases, no pg_restore)."""

        import pytest

        if self.sandbox.databases is None or self.sandbox.databases.kind != "postgres":
            pytest.skip("the sandbox's databases are SQLite here: a Heroku backup is a PostgreSQL dump")
        missing = [tool for tool in ("pg_restore", "psql", "curl") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"the restore drill needs {', '.join(missing)} on this machine")
        app = self.settings.production.app
        backups = self.services.controller.backups  # type: ignore[union-attr]
        taken = backups.capture(app)
        wait_until("the backup", lambda: backups.backup(app, taken.id).status == "completed", 60)
        return str(taken.id)

    def pull_request_of(self, commit: str) -> int:
        """The release pull request of the release of ``commit``."""
        found = self.release(commit).pull_request_id
        assert found is not None, f"release of {commit[:12]} has no pull request yet"
        return found

    def release(self, commit: str) -> Release:
        found = self.services.store.by_commit(self.settings.name, commit)
        assert found is not None, f"no release of {commit[:12]}"
        return found

    def events(self, release: Release) -> list[str]:
        assert release.id is not None
        return [e.kind for e in self.services.store.events(release.id)]

    def heroku_builds(self, commit: str) -> list[dict[str, Any]]:
        store = self.sandbox.heroku.store
        return [b for b in store.builds.values() if (b.get("source_blob") or {}).get("version") == commit]

    def promotions(self) -> list[dict[str, Any]]:
        return list(self.sandbox.heroku.store.promotions.values())

    def production_backups(self) -> list[Any]:
        store = self.sandbox.heroku.store
        app_id = next(a["id"] for a in store.apps.values() if a["name"] == self.settings.production.app)
        return [t for t in self.sandbox.heroku_data.store.transfers(app_id) if t.to_type == "gof3r"]

    def production_releases(self) -> list[dict[str, Any]]:
        store = self.sandbox.heroku.store
        app_id = next(a["id"] for a in store.apps.values() if a["name"] == self.settings.production.app)
        return sorted(
            (r for r in store.releases.values() if r["app_id"] == app_id), key=lambda r: r["version"]
        )


def write_config(directory: Path, checks: list[dict[str, Any]] | None = None) -> Path:
    """The shipped pipeline.yml (effects asked again after 20 s) and environments/, with ``checks``
    (default FAST_CHECKS) for both stages."""
    directory.mkdir(parents=True, exist_ok=True)
    shipped = (ROOT / "pipeline.yml").read_text()
    # Effects whose answers the tests lose (crashes, the `lost` fault) are asked again after 20 s,
    # not the shipped 2 minutes: no test answers slower than that unless it sets its own grace.
    assert "  effect_grace: 2m\n" in shipped, "pipeline.yml no longer ships schedule.effect_grace"
    (directory / "pipeline.yml").write_text(shipped.replace("  effect_grace: 2m\n", "  effect_grace: 20s\n"))
    (directory / "environments").mkdir(exist_ok=True)
    for stage in ("staging", "production"):
        data = yaml.safe_load((ROOT / "environments" / f"{stage}.yml").read_text())
        data["checks"] = FAST_CHECKS if checks is None else checks
        (directory / "environments" / f"{stage}.yml").write_text(yaml.safe_dump(data))
    return directory / "pipeline.yml"


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
