"""The JSON Heroku sends for each resource, built from the stand-in's records.

Every shape carries every property the official schema defines for the resource, null where
Heroku sends null. Constant ids (region, stack, plans) are fixed UUIDs so that they stay the same
across restarts. ``Urls`` builds absolute URLs from the current base URL (records hold none).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.heroku.state import Record, Store

REGION = {"id": "59accabd-516d-4f0e-83e6-6e3757701145", "name": "us"}
STACK = {"id": "ae6e1fc6-4f3a-4c2b-9c4f-5b6f0c9f2d24", "name": "heroku-24"}
GENERATION = {"id": "3d4d2a56-1c5e-4d48-9a42-2b4b3f0b6c11", "name": "cedar"}
DEFAULT_SIZE = "Standard-1X"
POSTGRES_SERVICE = {"id": "6b0ae1b0-6e0a-4b0e-8f0f-5e3e7a1b2c3d", "name": "heroku-postgresql"}
POSTGRES_PLAN = {"id": "0f4a3b2c-1d2e-4f5a-8b9c-0d1e2f3a4b5c", "name": "heroku-postgresql:standard-0"}
POSTGRES_PRICE = {"cents": 5000, "contract": False, "unit": "month"}
BUILDPACK = {"url": "heroku/python", "name": "heroku/python"}


@dataclass(frozen=True)
class Urls:
    """Absolute URLs of the stand-in's own endpoints, from the base URL it serves on now."""

    base_url: str
    web_url: Callable[[str], str]  # app name -> the router's URL

    def source_get(self, source: Record) -> str:
        return f"{self.base_url}/blobs/sources/{source['id']}?token={source['get_token']}"

    def source_put(self, source: Record) -> str:
        return f"{self.base_url}/blobs/sources/{source['id']}?token={source['put_token']}"

    def slug_blob(self, slug: Record) -> str:
        return f"{self.base_url}/blobs/slugs/{slug['id']}?token={slug['token']}"

    def build_output(self, build: Record) -> str:
        return f"{self.base_url}/streams/builds/{build['id']}?token={build['token']}"

    def release_output(self, release: Record) -> str:
        return f"{self.base_url}/streams/releases/{release['id']}?token={release['token']}"


def dyno_size(name: str) -> dict[str, str]:
    """A dyno size's ``{id, name}``; the id is derived from the name, so it is stable."""
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"heroku-dyno-size:{name}")), "name": name}


def owner(store: Store) -> dict[str, str]:
    return {"id": store.account["id"], "email": store.account["email"]}


def account(store: Store) -> dict[str, Any]:
    a = store.account
    return {
        "allow_tracking": True,
        "beta": False,
        "created_at": a["created_at"],
        "email": a["email"],
        "federated": False,
        "id": a["id"],
        "identity_provider": None,
        "last_login": a["created_at"],
        "name": a["name"],
        "sms_number": None,
        "suspended_at": None,
        "delinquent_at": None,
        "two_factor_authentication": False,
        "updated_at": a["updated_at"],
        "verified": True,
        "country_of_residence": None,
        "default_organization": None,
        "default_team": None,
    }


def app(store: Store, urls: Urls, rec: Record) -> dict[str, Any]:
    return {
        "acm": False,
        "archived_at": None,
        "buildpack_provided_description": "heroku/python" if rec.get("released_at") else None,
        "build_stack": dict(STACK),
        "created_at": rec["created_at"],
        "generation": dict(GENERATION),
        "git_url": f"https://git.heroku.com/{rec['name']}.git",
        "id": rec["id"],
        "internal_routing": None,
        "maintenance": rec["maintenance"],
        "name": rec["name"],
        "owner": owner(store),
        "organization": None,
        "team": None,
        "region": dict(REGION),
        "released_at": rec.get("released_at"),
        "repo_size": None,
        "slug_size": rec.get("slug_size"),
        "space": None,
        "stack": dict(STACK),
        "updated_at": rec["updated_at"],
        "web_url": urls.web_url(rec["name"]),
    }


def addon(store: Store, rec: Record, expansion: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An add-on. ``expansion`` holds what ``Accept-Expansion`` asks for (the CLI's ``addons``
    sends ``addon_service,plan``): Heroku then sends those two objects whole instead of
    ``{id, name}``, the plan with its price (the CLI prints its unit)."""
    owning = store.apps[rec["app_id"]]
    body = {
        "actions": [],
        "addon_service": dict(POSTGRES_SERVICE),
        "billing_entity": {"id": owning["id"], "name": owning["name"], "type": "app"},
        "app": {"id": owning["id"], "name": owning["name"]},
        "billed_price": dict(POSTGRES_PRICE),
        "config_vars": ["DATABASE_URL"],
        "created_at": rec["created_at"],
        "id": rec["id"],
        "name": rec["name"],
        "plan": dict(POSTGRES_PLAN),
        "provider_id": rec["provider_id"],
        "provision_message": "Your database is available",
        "state": "provisioned",
        "updated_at": rec["updated_at"],
        "web_url": f"https://data.heroku.com/datastores/{rec['id']}",
    }
    if "addon_service" in expansion:
        body["addon_service"] = {**POSTGRES_SERVICE, "human_name": "Heroku Postgres", "state": "ga"}
    if "plan" in expansion:
        body["plan"] = {
            **POSTGRES_PLAN,
            "human_name": "Standard 0",
            "description": "Heroku Postgres Standard 0",
            "addon_service": dict(POSTGRES_SERVICE),
            "price": {**POSTGRES_PRICE, "metered": False},
            "state": "public",
            "default": False,
        }
    return body


def attachment_id(addon_id: str) -> str:
    """The id of an add-on's one attachment (``DATABASE``); derived from the add-on's, so stable."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"heroku-addon-attachment:{addon_id}"))


def attachment(store: Store, rec: Record, inclusion: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The add-on's attachment to its app as ``DATABASE``, as Heroku attaches a first database.

    ``inclusion`` holds what the client asked for in ``Accept-Inclusion`` (the CLI's pg commands
    send ``addon:plan,config_vars``): Heroku then adds ``addon.plan`` and ``config_vars``, which
    the schema's attachment does not list.
    """
    owning = store.apps[rec["app_id"]]
    app_ref = {"id": owning["id"], "name": owning["name"]}
    body: dict[str, Any] = {
        "addon": {"id": rec["id"], "name": rec["name"], "app": dict(app_ref)},
        "app": dict(app_ref),
        "created_at": rec["created_at"],
        "id": attachment_id(rec["id"]),
        "name": "DATABASE",
        "namespace": None,
        "updated_at": rec["updated_at"],
        "web_url": f"https://data.heroku.com/datastores/{rec['id']}",
        "log_input_url": None,
    }
    if "addon:plan" in inclusion:
        body["addon"]["plan"] = dict(POSTGRES_PLAN)
    if "config_vars" in inclusion:
        body["config_vars"] = ["DATABASE_URL"]
    return body


def team_app(store: Store, urls: Urls, rec: Record) -> dict[str, Any]:
    """An app as ``POST /filters/apps`` lists it (the schema's ``team-app``)."""
    body = app(store, urls, rec)
    for key in ("acm", "generation", "organization"):
        body.pop(key, None)
    return {**body, "joined": False, "locked": False}


def build(store: Store, urls: Urls, rec: Record) -> dict[str, Any]:
    return {
        "app": {"id": rec["app_id"]},
        "buildpacks": rec.get("buildpacks") or None,
        "created_at": rec["created_at"],
        "generation": GENERATION["name"],
        "id": rec["id"],
        "output_stream_url": urls.build_output(rec),
        "source_blob": {
            "checksum": rec["source_blob"].get("checksum"),
            "url": rec["source_blob"]["url"],
            "version": rec["source_blob"].get("version"),
            "version_description": rec["source_blob"].get("version_description"),
        },
        "release": {"id": rec["release_id"]} if rec.get("release_id") else None,
        "slug": {"id": rec["slug_id"]} if rec.get("slug_id") else None,
        "stack": STACK["name"],
        "status": rec["status"],
        "updated_at": rec["updated_at"],
        "user": owner(store),
    }


def slug(store: Store, urls: Urls, rec: Record) -> dict[str, Any]:
    return {
        "blob": {"method": "get", "url": urls.slug_blob(rec)},
        "buildpack_provided_description": "Python",
        "checksum": rec["checksum"],
        "commit": rec.get("commit"),
        "commit_description": rec.get("commit_description"),
        "created_at": rec["created_at"],
        "id": rec["id"],
        "process_types": dict(rec["process_types"]),
        "size": rec["size"],
        "stack": dict(STACK),
        "updated_at": rec["updated_at"],
        "deleted_at": None,
    }


def eligible_for_rollback(rec: Record) -> bool:
    """A release can be rolled back to when it succeeded and has code (a slug) to run again: the
    first releases of an app (``Initial release``, ``Attach DATABASE``) have none."""
    return rec["status"] == "succeeded" and bool(rec.get("slug_id"))


def release(store: Store, urls: Urls, rec: Record) -> dict[str, Any]:
    owning = store.apps[rec["app_id"]]
    return {
        "addon_plan_names": list(rec.get("addon_plan_names", [])),
        "artifacts": [{"type": "slug", "id": rec["slug_id"]}] if rec.get("slug_id") else [],
        "app": {"id": owning["id"], "name": owning["name"]},
        "created_at": rec["created_at"],
        "description": rec["description"],
        "id": rec["id"],
        "updated_at": rec["updated_at"],
        "slug": {"id": rec["slug_id"]} if rec.get("slug_id") else None,
        "status": rec["status"],
        "user": owner(store),
        "version": rec["version"],
        "current": owning.get("current_release_id") == rec["id"],
        "output_stream_url": urls.release_output(rec) if rec.get("release_command") else None,
        "eligible_for_rollback": eligible_for_rollback(rec),
    }


def formation(store: Store, rec: Record) -> dict[str, Any]:
    owning = store.apps[rec["app_id"]]
    return {
        "app": {"id": owning["id"], "name": owning["name"]},
        "command": rec["command"],
        "created_at": rec["created_at"],
        "dyno_size": dyno_size(rec.get("size", DEFAULT_SIZE)),
        "id": rec["id"],
        "quantity": rec["quantity"],
        "size": rec.get("size", DEFAULT_SIZE),
        "type": rec["type"],
        "updated_at": rec["updated_at"],
    }


def dyno(store: Store, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` comes from ``Runtime.dynos``: id, name, type, command, state, release_id, times."""
    owning = store.apps[info["app_id"]]
    rel = store.releases.get(info["release_id"])
    formation = store.find_formation(info["app_id"], info["type"])
    return {
        "attach_url": None,
        "command": info["command"],
        "created_at": info["created_at"],
        "id": info["id"],
        "name": info["name"],
        "release": {"id": info["release_id"], "version": rel["version"] if rel else 0},
        "app": {"id": owning["id"], "name": owning["name"]},
        "size": formation.get("size", DEFAULT_SIZE) if formation else DEFAULT_SIZE,
        "state": info["state"],
        "type": info["type"],
        "updated_at": info["updated_at"],
    }


def pipeline(store: Store, rec: Record) -> dict[str, Any]:
    return {
        "created_at": rec["created_at"],
        "id": rec["id"],
        "name": rec["name"],
        "owner": {"id": store.account["id"], "type": "user"},
        "updated_at": rec["updated_at"],
        "generation": dict(GENERATION),
    }


def coupling(store: Store, rec: Record) -> dict[str, Any]:
    """A pipeline coupling; like Heroku's, its ``pipeline`` carries the name beside the id (the
    schema lists only the id, but the CLI's ``pipelines:promote`` and ``apps:info`` print it)."""
    pipe = store.pipelines.get(rec["pipeline_id"])
    return {
        "app": {"id": rec["app_id"]},
        "created_at": rec["created_at"],
        "id": rec["id"],
        "pipeline": {"id": rec["pipeline_id"], "name": pipe["name"] if pipe else None},
        "stage": rec["stage"],
        "updated_at": rec["updated_at"],
    }


def promotion(rec: Record) -> dict[str, Any]:
    return {
        "created_at": rec["created_at"],
        "id": rec["id"],
        "pipeline": {"id": rec["pipeline_id"]},
        "source": {"app": {"id": rec["source_app_id"]}, "release": {"id": rec["source_release_id"]}},
        "status": rec["status"],
        "updated_at": rec["updated_at"],
    }


def promotion_target(rec: Record) -> dict[str, Any]:
    return {
        "app": {"id": rec["app_id"]},
        "error_message": rec.get("error_message"),
        "id": rec["id"],
        "pipeline_promotion": {"id": rec["promotion_id"]},
        "release": {"id": rec["release_id"]} if rec.get("release_id") else None,
        "status": rec["status"],
    }


def source(urls: Urls, rec: Record) -> dict[str, Any]:
    return {"source_blob": {"get_url": urls.source_get(rec), "put_url": urls.source_put(rec)}}
