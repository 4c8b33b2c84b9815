"""Add-ons and their attachments (one per add-on: DATABASE on its app)::

    GET   /addons, /apps/{app}/addons       GET /addons/{id|name}, /apps/{app}/addons/{id|name}
    GET   /addon-attachments, /apps/{app}/addon-attachments, /addons/{id|name}/addon-attachments
    GET   /addon-attachments/{id}           GET /apps/{app}/addon-attachments/{id|DATABASE}
    POST  /actions/addon-attachments/resolve

``Accept-Expansion`` and ``Accept-Inclusion`` ask for more of an add-on and of an attachment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, request
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.api import find_app, json_body, listing
from sandbox.heroku.state import Record
from sandbox.heroku.wire import invalid, json_response, not_found

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store

    # -- add-ons ---------------------------------------------------------------------------------

    def expansion() -> frozenset[str]:
        """The add-on parts ``Accept-Expansion`` asks to send whole (``addon_service``, ``plan``)."""
        header = request.headers.get("Accept-Expansion", "")
        return frozenset(part.strip() for part in header.split(",") if part.strip())

    @app.get("/apps/<ident>/addons")
    def addons_by_app(ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            items = [shapes.addon(store, a, expansion()) for a in store.app_addons(owning["id"])]
        return listing(items, ["id", "name"])

    @app.get("/apps/<ident>/addons/<addon_ident>")
    def addon_by_app(ident: str, addon_ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            rec = store.find_addon(addon_ident)
            if rec is None or rec["app_id"] != owning["id"]:
                raise not_found("add-on")
            return json_response(shapes.addon(store, rec, expansion()))

    @app.get("/addons")
    def addons_list() -> Response:
        with store.lock:
            items = [shapes.addon(store, a, expansion()) for a in store.addons.values()]
        return listing(items, ["id", "name"])

    @app.get("/addons/<addon_ident>")
    def addon_info(addon_ident: str) -> Response:
        with store.lock:
            rec = store.find_addon(addon_ident)
            if rec is None:
                raise not_found("add-on")
            return json_response(shapes.addon(store, rec, expansion()))

    # -- add-on attachments (one per add-on: DATABASE on its app) -------------------------------

    def inclusion() -> frozenset[str]:
        """What ``Accept-Inclusion`` asks to add to an attachment (``addon:plan``, ``config_vars``)."""
        header = request.headers.get("Accept-Inclusion", "")
        return frozenset(part.strip() for part in header.split(",") if part.strip())

    def attachments(addons: list[Record]) -> Response:
        items = [shapes.attachment(store, a, inclusion()) for a in addons]
        return listing(items, ["id", "name"])

    def find_attachment(ident: str, app_id: str | None = None) -> Record:
        """The add-on whose attachment is ``ident`` (its id, or its name on ``app_id``)."""
        for rec in store.addons.values():
            named = ident == shapes.attachment_id(rec["id"]) or (ident == "DATABASE" and app_id is not None)
            if named and (app_id is None or rec["app_id"] == app_id):
                return rec
        raise not_found("add-on attachment")

    @app.get("/addon-attachments")
    def attachments_list() -> Response:
        with store.lock:
            return attachments(list(store.addons.values()))

    @app.get("/addon-attachments/<attachment_ident>")
    def attachment_info(attachment_ident: str) -> Response:
        with store.lock:
            return json_response(shapes.attachment(store, find_attachment(attachment_ident), inclusion()))

    @app.get("/apps/<ident>/addon-attachments")
    def attachments_by_app(ident: str) -> Response:
        with store.lock:
            return attachments(store.app_addons(find_app(store, ident)["id"]))

    @app.get("/apps/<ident>/addon-attachments/<attachment_ident>")
    def attachment_by_app(ident: str, attachment_ident: str) -> Response:
        with store.lock:
            rec = find_attachment(attachment_ident, find_app(store, ident)["id"])
            return json_response(shapes.attachment(store, rec, inclusion()))

    @app.get("/addons/<addon_ident>/addon-attachments")
    def attachments_by_addon(addon_ident: str) -> Response:
        with store.lock:
            rec = store.find_addon(addon_ident)
            if rec is None:
                raise not_found("add-on")
            return attachments([rec])

    @app.post("/actions/addon-attachments/resolve")
    def attachment_resolve() -> Response:
        """Attachments matching a name: the attachment's (``DATABASE``), its config var's
        (``DATABASE_URL``), its id, or its add-on's name or id; ``app::NAME`` names the app too."""
        data = json_body()
        name = data.get("addon_attachment")
        if name is None:
            raise invalid("addon_attachment", "is required")
        if not isinstance(name, str) or not name:
            raise invalid("addon_attachment", "must be a string")
        app_ident = data.get("app")
        if app_ident is not None and not isinstance(app_ident, str):
            raise invalid("app", "must be an app name")
        if "::" in name:
            app_ident, _, name = name.partition("::")
        service = data.get("addon_service")
        with store.lock:
            candidates = list(store.addons.values())
            if app_ident:
                owning = find_app(store, app_ident)
                candidates = [a for a in candidates if a["app_id"] == owning["id"]]
            if service is not None and service != shapes.POSTGRES_SERVICE["name"]:
                candidates = []
            found = [
                a
                for a in candidates
                if name in ("DATABASE", "DATABASE_URL", shapes.attachment_id(a["id"]), a["id"], a["name"])
            ]
            if not found:
                raise not_found("add-on attachment")
            items = [shapes.attachment(store, a, inclusion()) for a in found]
        return json_response(items)
