"""What runs and with what settings: config vars, the formation and the dynos::

    GET|PATCH  /apps/{app}/config-vars      a change (null removes a var) makes a new release
    GET|PATCH  /apps/{app}/formation        GET|PATCH /apps/{app}/formation/{id|type}
    GET        /apps/{app}/dynos            GET /apps/{app}/dynos/{id|name}
    DELETE     /apps/{app}/dynos[/{id|name|type}]   restart

Scaling web up from 0 starts the current release's web process again; scaling it to 0 stops it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.api import find_app, json_body, listing
from sandbox.heroku.state import Record, now
from sandbox.heroku.wire import invalid, json_response, not_found

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform

CONFIG_KEY = re.compile(r"^\w+$")
DYNO_SIZES = (
    "Eco",
    "Basic",
    "Standard-1X",
    "Standard-2X",
    "Performance-M",
    "Performance-L",
    "Performance-L-RAM",
    "Performance-XL",
    "Performance-2XL",
)


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store

    # -- config vars -----------------------------------------------------------------------------

    @app.get("/apps/<ident>/config-vars")
    def config_info(ident: str) -> Response:
        with store.lock:
            return json_response(dict(find_app(store, ident)["config_vars"]))

    @app.patch("/apps/<ident>/config-vars")
    def config_update(ident: str) -> Response:
        data = json_body()
        for key, value in data.items():
            if not CONFIG_KEY.match(key):
                raise invalid(key, "is not a valid config var name (letters, digits and underscores)")
            if value is not None and not isinstance(value, str):
                raise invalid(key, "must be a string, or null to remove it")
        with store.change():
            owning = find_app(store, ident)
            config = owning["config_vars"]
            set_keys = [k for k, v in data.items() if v is not None and config.get(k) != v]
            removed = [k for k, v in data.items() if v is None and k in config]
            for key in set_keys:
                config[key] = data[key]
            for key in removed:
                del config[key]
            owning["updated_at"] = now()
            result = dict(config)
            current = store.current_release(owning["id"])
            slug_id = current["slug_id"] if current else None
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if removed:
            parts.append(f"Remove {', '.join(removed)} config vars")
        if parts:
            platform.releaser.create(owning["id"], slug_id, "; ".join(parts))
        return json_response(result)

    # -- formation and dynos ---------------------------------------------------------------------

    @app.get("/apps/<ident>/formation")
    def formation_list(ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            items = [shapes.formation(store, f) for f in store.app_formations(owning["id"])]
        return listing(items, ["id", "type"])

    @app.get("/apps/<ident>/formation/<formation_ident>")
    def formation_info(ident: str, formation_ident: str) -> Response:
        with store.lock:
            rec = store.find_formation(find_app(store, ident)["id"], formation_ident)
            if rec is None:
                raise not_found("formation")
            return json_response(shapes.formation(store, rec))

    def check_update(update: Any, where: str) -> dict[str, Any]:
        if not isinstance(update, dict):
            raise invalid(where, "must be an object")
        changes: dict[str, Any] = {}
        if "quantity" in update:
            quantity = update["quantity"]
            if isinstance(quantity, str) and quantity.isdigit():
                quantity = int(quantity)
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                raise invalid(f"{where}quantity", "must be a whole number >= 0")
            changes["quantity"] = quantity
        size = update.get("dyno_size", update.get("size"))
        if isinstance(size, dict):
            size = size.get("name") or size.get("id")
        if size is not None:
            match = next((s for s in DYNO_SIZES if isinstance(size, str) and s.lower() == size.lower()), None)
            if match is None:
                raise invalid(f"{where}dyno_size", f"must be one of {', '.join(DYNO_SIZES)}")
            changes["size"] = match
        return changes

    def apply_updates(owning: Record, updates: list[tuple[Record, dict[str, Any]]]) -> Callable[[], None]:
        """Change the formation records (lock held); return what to do to the web dyno after."""
        restart = stop = False
        for rec, changes in updates:
            before = rec["quantity"]
            rec.update(changes)
            rec["updated_at"] = now()
            if rec["type"] == "web" and before == 0 and rec["quantity"] > 0:
                restart = True
            if rec["type"] == "web" and before > 0 and rec["quantity"] == 0:
                stop = True
        store.save()

        def follow_up() -> None:
            if restart:
                platform.releaser.restart(owning["id"])
            if stop:
                platform.runtime.stop_web(owning["id"])

        return follow_up

    @app.patch("/apps/<ident>/formation")
    def formation_batch(ident: str) -> Response:
        data = json_body()
        updates = data.get("updates")
        if updates is None:
            raise invalid("updates", "is required")
        if not isinstance(updates, list):
            raise invalid("updates", "must be a list")
        with store.lock:
            owning = find_app(store, ident)
            planned = []
            for i, update in enumerate(updates):
                where = f"updates[{i}]."
                if not isinstance(update, dict) or not isinstance(update.get("type"), str):
                    raise invalid(f"{where}type", "is required")
                rec = store.find_formation(owning["id"], update["type"])
                if rec is None:
                    raise not_found("formation")
                planned.append((rec, check_update(update, where)))
            follow_up = apply_updates(owning, planned)
            response = json_response([shapes.formation(store, rec) for rec, _ in planned])
        follow_up()
        return response

    @app.patch("/apps/<ident>/formation/<formation_ident>")
    def formation_update(ident: str, formation_ident: str) -> Response:
        data = json_body()
        with store.lock:
            owning = find_app(store, ident)
            rec = store.find_formation(owning["id"], formation_ident)
            if rec is None:
                raise not_found("formation")
            follow_up = apply_updates(owning, [(rec, check_update(data, ""))])
            response = json_response(shapes.formation(store, rec))
        follow_up()
        return response

    @app.get("/apps/<ident>/dynos")
    def dynos_list(ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            items = [shapes.dyno(store, d) for d in platform.runtime.dynos(owning["id"])]
        return listing(items, ["id", "name"])

    @app.get("/apps/<ident>/dynos/<dyno_ident>")
    def dyno_info(ident: str, dyno_ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            found = [d for d in platform.runtime.dynos(owning["id"]) if dyno_ident in (d["id"], d["name"])]
            if not found:
                raise not_found("dyno")
            return json_response(shapes.dyno(store, found[0]))

    @app.delete("/apps/<ident>/dynos")
    @app.delete("/apps/<ident>/dynos/<dyno_ident>")
    def dyno_restart(ident: str, dyno_ident: str | None = None) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            if dyno_ident is not None and not any(
                dyno_ident in (d["id"], d["name"], d["type"]) for d in platform.runtime.dynos(owning["id"])
            ):
                raise not_found("dyno")
        platform.releaser.restart(owning["id"])
        return json_response({}, 202)
