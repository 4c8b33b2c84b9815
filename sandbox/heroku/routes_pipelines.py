"""Pipelines, their couplings and promotions::

    GET   /pipelines[?eq[name]=...]         GET /pipelines/{id|name}
    GET   /pipelines/{id}/pipeline-couplings, /pipeline-couplings, /pipeline-couplings/{id}
    GET   /apps/{app}/pipeline-couplings    the app's coupling
    POST  /pipeline-promotions              {pipeline: {id}, source: {app: {id}, release?}, targets}
    GET   /pipeline-promotions/{id}         GET /pipeline-promotions/{id}/promotion-targets

A promotion deploys the source release's slug to each target in the promoter's worker
(``sandbox.heroku.promotions``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.api import find_app, json_body, listing
from sandbox.heroku.state import UUID_RE
from sandbox.heroku.wire import invalid, json_response, not_found

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform

STAGES = ("test", "review", "development", "staging", "production")


def _uuid_field(data: Any, path: str) -> str:
    """The uuid at a dotted ``path`` of ``data`` (422 naming the field when missing or no uuid)."""
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        raise invalid(path, "is required")
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise invalid(path, "must be a UUID")
    return value


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store

    # -- pipelines -------------------------------------------------------------------------------

    @app.get("/pipelines")
    def pipelines_list() -> Response:
        # Heroku filters a list on ``eq[<field>]=<value>``; the CLI finds a pipeline by name so
        wanted = {k[3:-1]: v for k, v in request.args.items() if k.startswith("eq[") and k.endswith("]")}
        unknown = sorted(set(wanted) - {"id", "name"})
        if unknown:
            raise invalid(f"eq[{unknown[0]}]", "is not a field pipelines can be filtered on")
        with store.lock:
            items = [
                shapes.pipeline(store, p)
                for p in store.pipelines.values()
                if all(p[field] == value for field, value in wanted.items())
            ]
        return listing(items, ["id", "name"])

    @app.get("/pipelines/<ident>")
    def pipeline_info(ident: str) -> Response:
        with store.lock:
            rec = store.find_pipeline(ident)
            if rec is None:
                raise not_found("pipeline")
            return json_response(shapes.pipeline(store, rec))

    @app.get("/pipelines/<pipeline_id>/pipeline-couplings")
    def couplings_by_pipeline(pipeline_id: str) -> Response:
        with store.lock:
            if pipeline_id not in store.pipelines:
                raise not_found("pipeline")
            coupled = [c for c in store.couplings.values() if c["pipeline_id"] == pipeline_id]
            items = [shapes.coupling(store, c) for c in coupled]
        return listing(items, ["id"])

    @app.get("/pipeline-couplings")
    def couplings_list() -> Response:
        with store.lock:
            items = [shapes.coupling(store, c) for c in store.couplings.values()]
        return listing(items, ["id"])

    @app.get("/pipeline-couplings/<coupling_id>")
    def coupling_info(coupling_id: str) -> Response:
        with store.lock:
            rec = store.couplings.get(coupling_id)
            if rec is None:
                raise not_found("pipeline coupling")
            return json_response(shapes.coupling(store, rec))

    @app.get("/apps/<ident>/pipeline-couplings")
    def coupling_by_app(ident: str) -> Response:
        with store.lock:
            rec = store.app_coupling(find_app(store, ident)["id"])
            if rec is None:
                raise not_found("pipeline coupling")
            return json_response(shapes.coupling(store, rec))

    # -- promotions ------------------------------------------------------------------------------

    @app.post("/pipeline-promotions")
    def promotion_create() -> Response:
        data = json_body()
        pipeline_id = _uuid_field(data, "pipeline.id")
        source_app_id = _uuid_field(data, "source.app.id")
        source = data.get("source")
        release_given = isinstance(source, dict) and isinstance(source.get("release"), dict)
        source_release_id = _uuid_field(data, "source.release.id") if release_given else None
        targets = data.get("targets")
        if targets is None:
            raise invalid("targets", "is required")
        if not isinstance(targets, list) or not targets:
            raise invalid("targets", "must be a non-empty list")
        target_ids = [_uuid_field(t, "app.id") if isinstance(t, dict) else "" for t in targets]
        if "" in target_ids:
            raise invalid("targets", "must be a list of {app: {id}}")
        with store.lock:
            if pipeline_id not in store.pipelines:
                raise not_found("pipeline")
            coupled = {c["app_id"]: c for c in store.couplings.values() if c["pipeline_id"] == pipeline_id}
            for app_id in [source_app_id, *target_ids]:
                if app_id not in store.apps:
                    raise not_found("app")
                if app_id not in coupled:
                    raise invalid("app", f"{store.apps[app_id]['name']} is not in this pipeline")
            if source_app_id in target_ids:
                raise invalid("targets", "cannot include the source app")
            if source_release_id is None:
                current = store.current_release(source_app_id)
                if current is None:
                    raise invalid("source.release.id", "is needed: the source app has no current release")
                source_release_id = current["id"]
            release = store.releases.get(source_release_id)
            if release is None or release["app_id"] != source_app_id:
                raise not_found("release")
            if not release.get("slug_id"):
                raise invalid("source.release.id", "has no slug to promote")
        rec = platform.promoter.create(pipeline_id, source_app_id, source_release_id, target_ids)
        return json_response(shapes.promotion(rec), 201)

    @app.get("/pipeline-promotions/<promotion_id>")
    def promotion_info(promotion_id: str) -> Response:
        with store.lock:
            rec = store.promotions.get(promotion_id)
            if rec is None:
                raise not_found("pipeline promotion")
            return json_response(shapes.promotion(rec))

    @app.get("/pipeline-promotions/<promotion_id>/promotion-targets")
    def promotion_targets(promotion_id: str) -> Response:
        with store.lock:
            if promotion_id not in store.promotions:
                raise not_found("pipeline promotion")
            items = [shapes.promotion_target(t) for t in platform.promoter.targets(promotion_id)]
        return listing(items, ["id"])
