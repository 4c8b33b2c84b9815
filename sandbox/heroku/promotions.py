"""Pipeline promotions: the source app's release slug, released on each target app.

A promotion is ``pending`` while its targets deploy, then ``completed``. Each target gets a new
release of the source release's slug, described ``Promote <source app> v<N>``, deployed through
the normal release path (release phase included); the target is ``succeeded`` when that release
succeeds, otherwise ``failed`` with ``error_message``. Targets deploy one after another in a worker
thread, as the CLI's polling expects.
"""

from __future__ import annotations

import logging
import threading

from sandbox.heroku.releases import Releaser
from sandbox.heroku.state import Record, Store, new_id, now

log = logging.getLogger("sandbox")

TARGET_TIMEOUT = 900.0


class Promoter:
    def __init__(self, store: Store, releaser: Releaser) -> None:
        self.store = store
        self.releaser = releaser
        self._threads: list[threading.Thread] = []

    def create(
        self, pipeline_id: str, source_app_id: str, source_release_id: str, target_app_ids: list[str]
    ) -> Record:
        """Record the promotion and its targets (pending) and start deploying; return the promotion."""
        stamp = now()
        promotion_id = new_id()
        with self.store.change():
            promotion = {
                "id": promotion_id,
                "pipeline_id": pipeline_id,
                "source_app_id": source_app_id,
                "source_release_id": source_release_id,
                "status": "pending",
                "created_at": stamp,
                "updated_at": stamp,
            }
            self.store.promotions[promotion_id] = promotion
            for app_id in target_app_ids:
                target_id = new_id()
                self.store.promotion_targets[target_id] = {
                    "id": target_id,
                    "promotion_id": promotion_id,
                    "app_id": app_id,
                    "release_id": None,
                    "status": "pending",
                    "error_message": None,
                }
        thread = threading.Thread(
            target=self._run, args=(promotion_id,), daemon=True, name=f"promote-{promotion_id[:8]}"
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return dict(promotion)

    def targets(self, promotion_id: str) -> list[Record]:
        return [t for t in self.store.promotion_targets.values() if t["promotion_id"] == promotion_id]

    def _run(self, promotion_id: str) -> None:
        with self.store.lock:
            promotion = dict(self.store.promotions[promotion_id])
            source_app = self.store.apps[promotion["source_app_id"]]
            source_release = self.store.releases[promotion["source_release_id"]]
            slug_id = source_release["slug_id"]
            description = f"Promote {source_app['name']} v{source_release['version']}"
            targets = [dict(t) for t in self.targets(promotion_id)]
        for target in targets:
            error: str | None = None
            try:
                release_id = self.releaser.create(target["app_id"], slug_id, description)
                with self.store.change():
                    self.store.promotion_targets[target["id"]]["release_id"] = release_id
                release = self.releaser.wait(release_id, TARGET_TIMEOUT)
                if release["status"] == "failed":
                    error = f"Release v{release['version']} failed: the release phase exited non-zero"
                elif release["status"] == "pending":
                    error = "The release did not finish in time"
            except Exception as exc:
                log.exception("promotion %s to %s failed", promotion_id, target["app_id"])
                error = f"Promotion failed: {exc}"
            with self.store.change():
                record = self.store.promotion_targets[target["id"]]
                record["status"] = "failed" if error else "succeeded"
                record["error_message"] = error
        with self.store.change():
            record = self.store.promotions[promotion_id]
            record["status"] = "completed"
            record["updated_at"] = now()

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=1)
