"""Sources, builds and slugs (their blobs and the builds' output are in ``routes_blobs``)::

    POST  /sources, /apps/{app}/sources          a source: where to PUT the tarball, where to GET it
    POST  /apps/{app}/builds                     {source_blob: {url, checksum, version}, buildpacks}
    GET   /apps/{app}/builds                     GET|DELETE /apps/{app}/builds/{id} (DELETE cancels)
    GET   /apps/{app}/slugs/{id}

A build runs in the builder's worker (``sandbox.heroku.builds``); one that succeeds makes a slug and
a release of it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.api import find_app, json_body, listing
from sandbox.heroku.builds import CHECKSUM, new_build
from sandbox.heroku.state import Record, new_id, now
from sandbox.heroku.wire import ApiError, invalid, json_response, not_found

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store
    urls = platform.urls

    # -- sources ---------------------------------------------------------------------------------

    @app.post("/sources")
    @app.post("/apps/<ident>/sources")
    def source_create(ident: str | None = None) -> Response:
        with store.change():
            if ident is not None:
                find_app(store, ident)
            rec = {"id": new_id(), "get_token": new_id(), "put_token": new_id(), "created_at": now()}
            store.sources[rec["id"]] = rec
            return json_response(shapes.source(urls, rec), 201)

    # -- builds ----------------------------------------------------------------------------------

    @app.post("/apps/<ident>/builds")
    def build_create(ident: str) -> Response:
        data = json_body()
        blob = data.get("source_blob")
        if blob is None:
            raise invalid("source_blob", "is required")
        if not isinstance(blob, dict):
            raise invalid("source_blob", "must be an object")
        url = blob.get("url")
        if url is None:
            raise invalid("source_blob.url", "is required")
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise invalid("source_blob.url", "must be an http(s) URL")
        checksum = blob.get("checksum")
        if checksum is not None and (not isinstance(checksum, str) or not CHECKSUM.match(checksum)):
            raise invalid("source_blob.checksum", "must be null or SHA256:<64 hex digits>")
        for key in ("version", "version_description"):
            if blob.get(key) is not None and not isinstance(blob[key], str):
                raise invalid(f"source_blob.{key}", "must be a string or null")
        buildpacks = data.get("buildpacks")
        if buildpacks is not None and (
            not isinstance(buildpacks, list)
            or not all(
                isinstance(b, dict) and isinstance(b.get("url", b.get("name")), str) for b in buildpacks
            )
        ):
            raise invalid("buildpacks", "must be a list of {url}")
        packs = [
            {"url": b.get("url") or b["name"], "name": b.get("name") or b["url"]} for b in buildpacks or []
        ]
        with store.change():
            owning = find_app(store, ident)
            rec = new_build(
                owning["id"],
                {
                    "url": url,
                    "checksum": checksum,
                    "version": blob.get("version"),
                    "version_description": blob.get("version_description"),
                },
                packs,
            )
            store.builds[rec["id"]] = rec
            shape = shapes.build(store, urls, rec)
        platform.builder.start(rec["id"])
        return json_response(shape, 201)

    @app.get("/apps/<ident>/builds")
    def builds_list(ident: str) -> Response:
        with store.lock:
            owning = find_app(store, ident)
            items = [
                shapes.build(store, urls, b) for b in store.builds.values() if b["app_id"] == owning["id"]
            ]
        return listing(items, ["id", "started_at"], {"started_at": "created_at"})

    def find_build(owning: Record, build_id: str) -> Record:
        rec = store.builds.get(build_id)
        if rec is None or rec["app_id"] != owning["id"]:
            raise not_found("build")
        return rec

    @app.get("/apps/<ident>/builds/<build_id>")
    def build_info(ident: str, build_id: str) -> Response:
        with store.lock:
            return json_response(shapes.build(store, urls, find_build(find_app(store, ident), build_id)))

    @app.delete("/apps/<ident>/builds/<build_id>")
    def build_cancel(ident: str, build_id: str) -> Response:
        with store.lock:
            rec = find_build(find_app(store, ident), build_id)
            if rec["status"] != "pending":
                raise ApiError(
                    409, "conflict", f"Build {build_id} has already {rec['status']}; it cannot be canceled."
                )
        platform.builder.cancel(build_id)
        with store.lock:
            return json_response(shapes.build(store, urls, rec))

    # -- slugs -----------------------------------------------------------------------------------

    @app.get("/apps/<ident>/slugs/<slug_id>")
    def slug_info(ident: str, slug_id: str) -> Response:
        with store.lock:
            find_app(store, ident)
            rec = store.slugs.get(slug_id)
            if rec is None:
                raise not_found("slug")
            return json_response(shapes.slug(store, urls, rec))
