"""The account and its apps::

    GET   /account                  GET /account/rate-limits (costs nothing)
    GET   /apps                     GET|PATCH /apps/{app}     (maintenance, name, build_stack)
    POST  /filters/apps             the apps of a list of ids, as a team app list

``{app}`` is an app's id or name, in every route of the API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.api import find_app, json_body, listing
from sandbox.heroku.state import now
from sandbox.heroku.wire import invalid, json_response

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store
    urls = platform.urls

    # -- account ---------------------------------------------------------------------------------

    @app.get("/account")
    def account_info() -> Response:
        with store.lock:
            return json_response(shapes.account(store))

    @app.get("/account/rate-limits")
    def rate_limits() -> Response:
        return json_response({"remaining": platform.budget.remaining()})

    # -- apps ------------------------------------------------------------------------------------

    @app.get("/apps")
    def apps_list() -> Response:
        with store.lock:
            items = [shapes.app(store, urls, a) for a in store.apps.values()]
        return listing(items, ["id", "name", "updated_at"])

    @app.get("/apps/<ident>")
    def app_info(ident: str) -> Response:
        with store.lock:
            return json_response(shapes.app(store, urls, find_app(store, ident)))

    @app.patch("/apps/<ident>")
    def app_update(ident: str) -> Response:
        data = json_body()
        with store.change():
            rec = find_app(store, ident)
            if "maintenance" in data:
                # heroku3's disable_maintenance_mode() sends 0, which Heroku takes as false
                if data["maintenance"] not in (True, False, 0, 1):
                    raise invalid("maintenance", "must be a boolean")
                rec["maintenance"] = bool(data["maintenance"])
            if "name" in data:
                name = data["name"]
                if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$", name):
                    raise invalid("name", "must match ^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
                other = store.find_app(name)
                if other is not None and other["id"] != rec["id"]:
                    raise invalid("name", "is already taken")
                rec["name"] = name
            if "build_stack" in data and data["build_stack"] not in (
                shapes.STACK["id"],
                shapes.STACK["name"],
            ):
                raise invalid("build_stack", f"must be {shapes.STACK['name']}")
            rec["updated_at"] = now()
            return json_response(shapes.app(store, urls, rec))

    @app.post("/filters/apps")
    def apps_filter() -> Response:
        data = json_body()
        wanted = data.get("in", {}).get("id") if isinstance(data.get("in"), dict) else None
        if wanted is None:
            raise invalid("in.id", "is required")
        if not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted):
            raise invalid("in.id", "must be a list of app ids")
        with store.lock:
            found = [store.apps[i] for i in dict.fromkeys(wanted) if i in store.apps]
            items = [shapes.team_app(store, urls, a) for a in found]
        return listing(items, ["id", "name", "updated_at"])
