"""``HerokuPlatform``: the Heroku Platform API stand-in, composed from its parts.

It owns the records (``state.Store`` in ``<state_dir>/heroku.json``), the builder, the releaser
with the runtime that really runs each app's release phase and web process, the promoter, one
router per app (the stable ``web_url``) and the Flask app ``wsgi_app`` that ``ServiceServer``
serves (``api.create_app``, with the routes of each ``routes_*`` module). It also answers the
Data API stand-in's questions (``sandbox.heroku.refs.HerokuLookup``).

The two-factor switch (``require_two_factor``, or ``POST /_sandbox/two-factor {"required": true}``
through ``admin``) makes every Platform API call answer 403 ``two_factor``, as Heroku answers an
API key whose account needs a second factor, until it is switched off. It lives in memory only.

Life cycle: construct (binds the routers of known apps), serve ``wsgi_app``, ``seed`` (idempotent)
and ``deploy``, or after a restart on the same state dir ``start_runtime``; ``close`` stops every
process and router it started. Builds, releases and promotions that were still pending when the
last run stopped are marked failed on construction: their worker died with that run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import secrets
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.databases import Databases
from sandbox.faults import Fault
from sandbox.heroku import (
    api,
    routes_addons,
    routes_apps,
    routes_blobs,
    routes_builds,
    routes_pipelines,
    routes_releases,
    routes_runtime,
    shapes,
)
from sandbox.heroku.builds import Builder, new_build
from sandbox.heroku.promotions import Promoter
from sandbox.heroku.refs import AddonRef, AppRef
from sandbox.heroku.releases import Releaser
from sandbox.heroku.router import Router
from sandbox.heroku.runtime import Runtime
from sandbox.heroku.state import Record, Store, new_id, now
from sandbox.heroku.wire import RATE_LIMIT_MESSAGE, RateBudget, json_response, request_id

log = logging.getLogger("sandbox")

ACCOUNT_EMAIL = "release-controller@whisper.example"
DEPLOY_TIMEOUT = 600.0
ADJECTIVES = (
    "shaped",
    "curved",
    "rigid",
    "silent",
    "solid",
    "sinuous",
    "flat",
    "fluffy",
    "vertical",
    "cubed",
)


class HerokuPlatform:
    service = "heroku"

    def __init__(
        self,
        state_dir: Path,
        base_url: str,
        databases: Databases,
        *,
        rate_limit: int = 4500,
        boot_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self.databases = databases
        self.store = Store(state_dir / "heroku.json")
        self._recover()
        self.budget = RateBudget(rate_limit)
        self.urls = shapes.Urls(self.base_url, self.web_url)
        self.runtime = Runtime(state_dir, boot_timeout=boot_timeout, grace=stop_grace)
        self.releaser = Releaser(self.store, state_dir, self.runtime, state_dir / "slugs")
        self.builder = Builder(self.store, state_dir, self.releaser.create, self.web_url)
        self.promoter = Promoter(self.store, self.releaser)
        self._routers: dict[str, Router] = {}
        self._routers_lock = threading.Lock()
        self.two_factor_required = False
        with self.store.lock:
            app_ids = list(self.store.apps)
        for app_id in app_ids:
            self._router(app_id)
        self.wsgi_app = api.create_app(self)
        for routes in (
            routes_apps,
            routes_builds,
            routes_blobs,
            routes_releases,
            routes_runtime,
            routes_addons,
            routes_pipelines,
        ):
            routes.register(self.wsgi_app, self)

    # -- the account -----------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        with self.store.lock:
            key = self.store.account.get("api_key")
        if not key:
            raise RuntimeError("the Heroku stand-in is not seeded: no account yet")
        return str(key)

    def check_api_key(self, key: str) -> bool:
        with self.store.lock:
            expected = self.store.account.get("api_key")
        return bool(expected) and secrets.compare_digest(str(expected), key)

    def require_two_factor(self, required: bool) -> None:
        """Switch on (or off) the 403 ``two_factor`` answer to every Platform API call."""
        self.two_factor_required = bool(required)

    def admin(self, request: Request) -> Response | None:
        """``GET|POST /_sandbox/two-factor`` (``{"required": bool}``); None for other admin paths."""
        if request.path.rstrip("/") != "/_sandbox/two-factor":
            return None
        if request.method == "POST":
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("required"), bool):
                return json_response({"error": 'the body must be {"required": true|false}'}, 400)
            self.require_two_factor(body["required"])
        elif request.method != "GET":
            return json_response({"error": f"{request.method} is not allowed on {request.path}"}, 405)
        return json_response({"required": self.two_factor_required})

    # -- answers the server gives without the app --------------------------------------------------

    def fault_response(self, fault: Fault) -> Response:
        """Heroku's error body for an injected fault; a rate_limit fault is Heroku's 429."""
        if fault.kind == "rate_limit":
            body = {"id": "rate_limit", "message": RATE_LIMIT_MESSAGE}
            status = 429
        else:
            status = fault.status or 503
            error_id = "unavailable" if status == 503 else "internal_server_error"
            body = {"id": error_id, "message": f"Heroku is temporarily unavailable (HTTP {status})."}
        return json_response(
            body, status, {"RateLimit-Remaining": str(self.budget.remaining()), "Request-Id": request_id()}
        )

    # -- files -----------------------------------------------------------------------------------

    def source_path(self, source_id: str) -> Path:
        return self.state_dir / "sources" / f"{source_id}.tgz"

    # -- seeding ---------------------------------------------------------------------------------

    def seed(self, *, pipeline: str, apps: dict[str, str]) -> None:
        """Create the account, the apps (each with a Postgres add-on and a web formation), the
        pipeline and its couplings, where they do not exist yet. Idempotent."""
        with self.store.change():
            if not self.store.account:
                stamp = now()
                self.store.account.update(
                    {
                        "id": new_id(),
                        "email": ACCOUNT_EMAIL,
                        "name": "Release Controller",
                        "api_key": "HRKU-" + secrets.token_hex(30),
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                )
        app_ids = {stage: self._seed_app(name) for stage, name in apps.items()}
        with self.store.change():
            rec = self.store.find_pipeline(pipeline)
            if rec is None:
                stamp = now()
                rec = {"id": new_id(), "name": pipeline, "created_at": stamp, "updated_at": stamp}
                self.store.pipelines[rec["id"]] = rec
            for stage, app_id in app_ids.items():
                if self.store.app_coupling(app_id) is None:
                    stamp = now()
                    coupling_id = new_id()
                    self.store.couplings[coupling_id] = {
                        "id": coupling_id,
                        "app_id": app_id,
                        "pipeline_id": rec["id"],
                        "stage": stage,
                        "created_at": stamp,
                        "updated_at": stamp,
                    }

    def _seed_app(self, name: str) -> str:
        with self.store.lock:
            existing = self.store.find_app(name)
        if existing is not None:
            self._router(existing["id"])
            return str(existing["id"])
        stamp = now()
        app_id = new_id()
        addon_id = new_id()
        rng = random.Random(hashlib.sha256(addon_id.encode()).digest())
        addon_name = f"postgresql-{rng.choice(ADJECTIVES)}-{rng.randint(10000, 99999)}"
        database_url = self.databases.provision(addon_id, name)
        with self.store.change():
            self.store.apps[app_id] = {
                "id": app_id,
                "name": name,
                "maintenance": False,
                "config_vars": {},
                "current_release_id": None,
                "released_at": None,
                "slug_size": None,
                "router_port": 0,
                "created_at": stamp,
                "updated_at": stamp,
            }
            formation_id = new_id()
            self.store.formations[formation_id] = {
                "id": formation_id,
                "app_id": app_id,
                "type": "web",
                "command": "",
                "quantity": 1,
                "size": shapes.DEFAULT_SIZE,
                "created_at": stamp,
                "updated_at": stamp,
            }
        first = self.releaser.create(app_id, None, "Initial release")
        with self.store.change():
            self.store.addons[addon_id] = {
                "id": addon_id,
                "app_id": app_id,
                "name": addon_name,
                "provider_id": str(rng.randint(10_000_000, 99_999_999)),
                "database_url": database_url,
                "created_at": stamp,
                "updated_at": stamp,
            }
            self.store.apps[app_id]["config_vars"]["DATABASE_URL"] = database_url
        second = self.releaser.create(app_id, None, f"Attach DATABASE (@ref:{addon_name})")
        for release_id in (first, second):
            self.releaser.wait(release_id, 30)
        self._router(app_id)
        return app_id

    # -- deploying -------------------------------------------------------------------------------

    def deploy(
        self, app: str, tarball: bytes, version: str, *, description: str | None = None
    ) -> dict[str, Any]:
        """Upload ``tarball`` as a source, build it and wait until its release is done.

        Returns the release's JSON (status succeeded or failed). Raises RuntimeError with the
        build log when the build fails (there is no release then).
        """
        with self.store.change():
            owning = self.store.find_app(app)
            if owning is None:
                raise KeyError(f"no app {app!r}")
            source = {"id": new_id(), "get_token": new_id(), "put_token": new_id(), "created_at": now()}
            self.store.sources[source["id"]] = source
        path = self.source_path(source["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tarball)
        build = new_build(
            owning["id"],
            {
                "url": self.urls.source_get(source),
                "checksum": "SHA256:" + hashlib.sha256(tarball).hexdigest(),
                "version": version,
                "version_description": None,
            },
            None,
        )
        build["description"] = description
        with self.store.change():
            self.store.builds[build["id"]] = build
        self.builder.start(build["id"])
        with self.store.changed:
            self.store.changed.wait_for(
                lambda: self.store.builds[build["id"]]["status"] != "pending", timeout=DEPLOY_TIMEOUT
            )
            done = dict(self.store.builds[build["id"]])
        if done["status"] != "succeeded" or not done.get("release_id"):
            log_text = self.builder.log_path(build["id"]).read_text(errors="replace")
            raise RuntimeError(f"the build of {app} {version} {done['status']}:\n{log_text}")
        self.releaser.wait(done["release_id"], DEPLOY_TIMEOUT)
        with self.store.lock:
            return shapes.release(self.store, self.urls, self.store.releases[done["release_id"]])

    # -- routers and runtime ---------------------------------------------------------------------

    def _router(self, app_id: str) -> Router:
        with self._routers_lock:
            router = self._routers.get(app_id)
            if router is not None:
                return router
            with self.store.lock:
                port = int(self.store.apps[app_id].get("router_port") or 0)

            def maintenance() -> bool:
                with self.store.lock:
                    return bool(self.store.apps[app_id]["maintenance"])

            router = Router(port, lambda: self.runtime.backend(app_id), maintenance)
            self._routers[app_id] = router
        if router.port != port:
            with self.store.change():
                self.store.apps[app_id]["router_port"] = router.port
        return router

    def web_url(self, app: str) -> str:
        """The app's stable URL: ``http://127.0.0.1:<router port>/`` (app by id or name)."""
        with self.store.lock:
            rec = self.store.find_app(app)
            if rec is None:
                raise KeyError(f"no app {app!r}")
            app_id = rec["id"]
        return self._router(app_id).url

    def start_runtime(self) -> None:
        """Start the routers and each app's current web process (no release phase); wait for them."""
        with self.store.lock:
            app_ids = list(self.store.apps)
        futures: list[Future[None]] = []
        for app_id in app_ids:
            self._router(app_id)
            future = self.releaser.restart(app_id)
            if future is not None:
                futures.append(future)
        for future in futures:
            future.result(timeout=DEPLOY_TIMEOUT)

    def close(self) -> None:
        """Stop builds, release workers, every app process and every router."""
        self.releaser.close()
        self.builder.close()
        self.runtime.close()
        self.promoter.close()
        with self._routers_lock:
            routers = list(self._routers.values())
            self._routers.clear()
        for router in routers:
            router.close()

    def _recover(self) -> None:
        with self.store.change():
            for build in self.store.builds.values():
                if build["status"] == "pending":
                    build["status"], build["updated_at"] = "failed", now()
            for release in self.store.releases.values():
                if release["status"] == "pending":
                    release["status"], release["updated_at"] = "failed", now()
            for target in self.store.promotion_targets.values():
                if target["status"] == "pending":
                    target["status"] = "failed"
                    target["error_message"] = "The sandbox stopped before the promotion finished"
            for promotion in self.store.promotions.values():
                if promotion["status"] == "pending":
                    promotion["status"], promotion["updated_at"] = "completed", now()

    # -- what the Data API stand-in asks (HerokuLookup) -------------------------------------------

    def find_app(self, id_or_name: str) -> AppRef | None:
        with self.store.lock:
            rec = self.store.find_app(id_or_name)
            return AppRef(id=rec["id"], name=rec["name"]) if rec else None

    def _addon_ref(self, rec: Record) -> AddonRef:
        owning = self.store.apps[rec["app_id"]]
        return AddonRef(
            id=rec["id"],
            name=rec["name"],
            plan=shapes.POSTGRES_PLAN["name"],
            app=AppRef(id=owning["id"], name=owning["name"]),
            database_url=rec["database_url"],
        )

    def find_addon(self, id_or_name: str) -> AddonRef | None:
        with self.store.lock:
            rec = self.store.find_addon(id_or_name)
            return self._addon_ref(rec) if rec else None

    def app_addons(self, app_id: str) -> list[AddonRef]:
        with self.store.lock:
            rec = self.store.find_app(app_id)
            if rec is None:
                return []
            return [self._addon_ref(a) for a in self.store.app_addons(rec["id"])]
