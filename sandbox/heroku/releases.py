"""Releases: numbered, run one at a time per app, each through the release phase to the web dyno.

``Releaser.create`` records a ``pending`` release (the next version of the app) and queues it on
the app's single worker, so an app's releases deploy in the order they were made. Deploying one:
1. when its slug's Procfile has ``release:``, run it (``Runtime.run_release_phase``) with the
   release's config vars and Heroku's dyno variables; output to the release's log. A non-zero
   exit (or a timeout) makes the release ``failed``: it is not deployed, the current release stays
   current and its web dyno keeps running;
2. start the ``web:`` process of the slug (when the web formation has quantity >= 1) and retire
   the old one (``Runtime.start_web``);
3. mark it ``succeeded`` and current. A web process that crashes on boot does not fail the
   release: it is ``succeeded`` with a crashed dyno, as on Heroku.
Releases without a slug (the app's first ones) succeed at once and run nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sandbox.heroku.runtime import Runtime
from sandbox.heroku.shapes import POSTGRES_PLAN
from sandbox.heroku.state import Record, Store, new_id, now

log = logging.getLogger("sandbox")

RELEASE_PHASE_TIMEOUT = 600.0


class Releaser:
    def __init__(self, store: Store, state_dir: Path, runtime: Runtime, slugs_dir: Path) -> None:
        self.store = store
        self.runtime = runtime
        self.slugs_dir = slugs_dir
        self.logs_dir = state_dir / "logs" / "releases"
        self.release_phase_timeout = RELEASE_PHASE_TIMEOUT
        self._lock = threading.Lock()
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self._closed = False

    def log_path(self, release_id: str) -> Path:
        return self.logs_dir / f"{release_id}.log"

    def slug_path(self, slug_id: str) -> Path:
        return self.slugs_dir / f"{slug_id}.tgz"

    # -- making releases -------------------------------------------------------------------------

    def create(
        self,
        app_id: str,
        slug_id: str | None,
        description: str,
        *,
        config_vars: dict[str, str] | None = None,
    ) -> str:
        """Record the app's next release (pending) and queue its deployment; return its id.

        ``config_vars`` defaults to the app's config vars now (a rollback passes the old ones).
        """
        with self.store.change():
            app = self.store.apps[app_id]
            versions = [r["version"] for r in self.store.releases.values() if r["app_id"] == app_id]
            slug = self.store.slugs.get(slug_id) if slug_id else None
            stamp = now()
            release_id = new_id()
            self.store.releases[release_id] = {
                "id": release_id,
                "app_id": app_id,
                "version": max(versions, default=0) + 1,
                "slug_id": slug_id,
                "description": description,
                "status": "pending",
                "config_vars": dict(app["config_vars"] if config_vars is None else config_vars),
                "addon_plan_names": [POSTGRES_PLAN["name"] for _ in self.store.app_addons(app_id)],
                "release_command": (slug or {}).get("process_types", {}).get("release"),
                "token": new_id(),
                "created_at": stamp,
                "updated_at": stamp,
            }
        if self.store.releases[release_id]["release_command"]:
            self.log_path(release_id).parent.mkdir(parents=True, exist_ok=True)
            self.log_path(release_id).touch()
        self._submit(app_id, self._deploy, release_id)
        return release_id

    def restart(self, app_id: str) -> Future[None] | None:
        """Start the current release's web process again (dyno restart, scale up); no release phase."""
        return self._submit(app_id, self._restart, app_id)

    def _submit(self, app_id: str, fn: Callable[[str], None], arg: str) -> Future[None] | None:
        with self._lock:
            if self._closed:
                return None
            worker = self._workers.get(app_id)
            if worker is None:
                worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"release-{app_id[:8]}")
                self._workers[app_id] = worker
            return worker.submit(self._guarded, fn, arg)

    def _guarded(self, fn: Callable[[str], None], arg: str) -> None:
        try:
            fn(arg)
        except Exception as exc:
            if not self._closed:
                log.exception("the sandbox failed to deploy %s", arg)
            with self.store.lock:
                release = self.store.releases.get(arg)
                pending = release is not None and release["status"] == "pending"
            if pending:
                with self.log_path(arg).open("a") as out:
                    out.write(f"The sandbox could not deploy this release: {exc}\n")
                self._set_status(arg, "failed")

    def wait(self, release_id: str, timeout: float) -> Record:
        """Block until the release is no longer pending (or ``timeout``); return its record."""
        with self.store.changed:
            self.store.changed.wait_for(
                lambda: self.store.releases[release_id]["status"] != "pending", timeout=timeout
            )
            return dict(self.store.releases[release_id])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.shutdown(wait=False, cancel_futures=True)

    # -- deploying -------------------------------------------------------------------------------

    def dyno_env(self, release: Record, app: Record) -> dict[str, str]:
        """Config vars plus Heroku's dyno metadata for a process of ``release``."""
        slug = self.store.slugs.get(release["slug_id"] or "") or {}
        return {
            **release["config_vars"],
            "HEROKU_APP_ID": app["id"],
            "HEROKU_APP_NAME": app["name"],
            "HEROKU_RELEASE_VERSION": f"v{release['version']}",
            "HEROKU_RELEASE_CREATED_AT": release["created_at"],
            "HEROKU_SLUG_COMMIT": slug.get("commit") or "",
            "HEROKU_SLUG_DESCRIPTION": release["description"],
        }

    def _set_status(self, release_id: str, status: str) -> None:
        with self.store.change():
            release = self.store.releases[release_id]
            release["status"] = status
            release["updated_at"] = now()
            if status == "succeeded":
                app = self.store.apps[release["app_id"]]
                app["current_release_id"] = release_id
                app["released_at"] = release["updated_at"]
                app["updated_at"] = release["updated_at"]
                slug = self.store.slugs.get(release["slug_id"] or "")
                if slug is not None:
                    app["slug_size"] = slug["size"]
                    self._sync_formation(app["id"], slug["process_types"])

    def _sync_formation(self, app_id: str, process_types: dict[str, str]) -> None:
        """Formation entries follow the slug's process types (not ``release``), like Heroku."""
        stamp = now()
        for kind, command in process_types.items():
            if kind == "release":
                continue
            formation = self.store.find_formation(app_id, kind)
            if formation is None:
                formation_id = new_id()
                self.store.formations[formation_id] = {
                    "id": formation_id,
                    "app_id": app_id,
                    "type": kind,
                    "command": command,
                    "quantity": 1 if kind == "web" else 0,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            elif formation["command"] != command:
                formation["command"] = command
                formation["updated_at"] = stamp

    def _deploy(self, release_id: str) -> None:
        with self.store.lock:
            release = dict(self.store.releases[release_id])
            app = dict(self.store.apps[release["app_id"]])
            slug = dict(self.store.slugs[release["slug_id"]]) if release["slug_id"] else None
            formation = self.store.find_formation(app["id"], "web")
            web_quantity = formation["quantity"] if formation else 1
            env = self.dyno_env(release, app)
        if slug is None:
            self._set_status(release_id, "succeeded")
            return
        command = release["release_command"]
        if command:
            log_path = self.log_path(release_id)
            code = self.runtime.run_release_phase(
                app["id"],
                self.slug_path(slug["id"]),
                command,
                {**env, "DYNO": "release.1"},
                log_path,
                self.release_phase_timeout,
            )
            if code != 0:
                with log_path.open("a") as out:
                    out.write(
                        f"Release command exited with status {code}; release v{release['version']} failed\n"
                    )
                self._set_status(release_id, "failed")
                return
        web = slug["process_types"].get("web")
        if web and web_quantity > 0:
            self.runtime.start_web(app["id"], release_id, self.slug_path(slug["id"]), web, env)
        else:
            self.runtime.stop_web(app["id"])
        self._set_status(release_id, "succeeded")

    def _restart(self, app_id: str) -> None:
        with self.store.lock:
            app = dict(self.store.apps[app_id])
            current = self.store.current_release(app_id)
            release = dict(current) if current else None
            slug = self.store.slugs.get(release["slug_id"] or "") if release else None
            formation = self.store.find_formation(app_id, "web")
            quantity = formation["quantity"] if formation else 0
            env = self.dyno_env(release, app) if release else {}
        web = (slug or {}).get("process_types", {}).get("web")
        if release is None or slug is None or not web or quantity < 1:
            self.runtime.stop_web(app_id)
            return
        self.runtime.start_web(app_id, release["id"], self.slug_path(slug["id"]), web, env)
