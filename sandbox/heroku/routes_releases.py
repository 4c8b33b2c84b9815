"""Releases::

    GET   /apps/{app}/releases          GET /apps/{app}/releases/{id|version}[/config-vars]
    POST  /apps/{app}/releases          {slug, description} deploys a slug; {release} rolls back to it

A release deploys in its app's worker (``sandbox.heroku.releases``); rolling back to a release also
brings back its config vars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.api import find_app, json_body, listing
from sandbox.heroku.state import Record
from sandbox.heroku.wire import invalid, json_response, not_found

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store
    urls = platform.urls

    # -- releases --------------------------------------------------------------------------------

    @app.get("/apps/<ident>/releases")
    def releases_list(ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            items = [shapes.release(store, urls, r) for r in store.app_releases(owning["id"])]
        return listing(items, ["id", "version"])

    def find_release(owning: Record, ident: str) -> Record:
        rec = store.find_release(owning["id"], ident)
        if rec is None:
            raise not_found("release")
        return rec

    @app.get("/apps/<ident>/releases/<release_ident>")
    def release_info(ident: str, release_ident: str) -> Response:
        with store.lock:
            rec = find_release(find_app(store, ident), release_ident)
            return json_response(shapes.release(store, urls, rec))

    @app.get("/apps/<ident>/releases/<release_ident>/config-vars")
    def release_config(ident: str, release_ident: str) -> Response:
        with store.lock:
            return json_response(dict(find_release(find_app(store, ident), release_ident)["config_vars"]))

    @app.post("/apps/<ident>/releases")
    def release_create(ident: str) -> Response:
        data = json_body()
        with store.lock:
            owning = find_app(store, ident)
        if "release" in data:
            target_ident = data["release"]
            if not isinstance(target_ident, str | int) or isinstance(target_ident, bool):
                raise invalid("release", "must be a release id")
            with store.change():
                target = find_release(owning, str(target_ident))
                if target["status"] != "succeeded":
                    raise invalid(
                        "release", f"v{target['version']} is {target['status']} and cannot be rolled back to"
                    )
                if not shapes.eligible_for_rollback(target):
                    raise invalid("release", f"v{target['version']} has no slug to roll back to")
                config = dict(target["config_vars"])
                store.apps[owning["id"]]["config_vars"] = dict(config)
            release_id = platform.releaser.create(
                owning["id"], target["slug_id"], f"Rollback to v{target['version']}", config_vars=config
            )
        else:
            slug_id = data.get("slug")
            if slug_id is None:
                raise invalid("slug", "is required")
            if not isinstance(slug_id, str):
                raise invalid("slug", "must be a slug id")
            description = data.get("description")
            if description is not None and not isinstance(description, str):
                raise invalid("description", "must be a string")
            with store.lock:
                slug = store.slugs.get(slug_id)
                if slug is None:
                    raise not_found("slug")
            commit = slug.get("commit")
            default = "Deploy " + commit[:8] if commit else "Deploy"
            release_id = platform.releaser.create(owning["id"], slug_id, description or default)
        with store.lock:
            return json_response(shapes.release(store, urls, store.releases[release_id]), 201)
