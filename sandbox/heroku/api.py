"""The Platform API's routes (Flask), answering like api.heroku.com.

Every API request passes the wire rules first (``sandbox.heroku.wire``): Accept (406), auth (401),
then the account's budget (429; ``GET /account/rate-limits`` costs nothing). Every response
carries ``RateLimit-Remaining`` and ``Request-Id``. ``/blobs/...`` (the S3 URLs of sources and
slugs) and ``/streams/...`` (build and release output) need no Accept nor auth: they are
capability URLs carrying a token, as on Heroku.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from sandbox.heroku import shapes
from sandbox.heroku.builds import CHECKSUM, new_build
from sandbox.heroku.state import UUID_RE, Record, new_id, now
from sandbox.heroku.wire import (
    ENDPOINT_NOT_FOUND,
    RATE_LIMIT_MESSAGE,
    ApiError,
    acceptable,
    invalid,
    json_response,
    not_found,
    page,
    parse_range,
    request_id,
    token_from,
)
from sandbox.server import json_object

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform

CONFIG_KEY = re.compile(r"^\w+$")
STAGES = ("test", "review", "development", "staging", "production")
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
STREAM_LIMIT = 900.0  # seconds an output stream follows a running build or release


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status=status, content_type="application/xml")


def _body() -> dict[str, Any]:
    try:
        return json_object(request.get_data())
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


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


def create_app(platform: HerokuPlatform) -> Flask:
    store = platform.store
    urls = platform.urls
    app = Flask(__name__, root_path=str(Path(__file__).parent))

    def listing(
        items: list[dict[str, Any]], fields: list[str], fields_map: dict[str, str] | None = None
    ) -> Response:
        rng = parse_range(request.headers.get("Range"), fields)
        chunk, headers, status = page(items, rng, fields_map)
        headers["Accept-Ranges"] = ", ".join(fields)
        return json_response(chunk, status, headers)

    def find_app(ident: str) -> Record:
        rec = store.find_app(ident)
        if rec is None:
            raise not_found("app")
        return rec

    # -- wire rules ------------------------------------------------------------------------------

    @app.before_request
    def wire_rules() -> Response | None:
        path = request.path
        if path.startswith(("/blobs/", "/streams/")):
            return None
        if not acceptable(request.headers.get("Accept")):
            raise ApiError(
                406,
                "not_acceptable",
                "Please specify a version along with Heroku's API MIME type. For example, "
                "`Accept: application/vnd.heroku+json; version=3`.",
            )
        token = token_from(request.headers.get("Authorization"))
        if token is None or not platform.check_api_key(token):
            raise ApiError(401, "unauthorized", "Invalid credentials provided.")
        if path.rstrip("/") != "/account/rate-limits" and not platform.budget.spend():
            raise ApiError(429, "rate_limit", RATE_LIMIT_MESSAGE)
        return None

    @app.after_request
    def common_headers(response: Response) -> Response:
        response.headers["RateLimit-Remaining"] = str(platform.budget.remaining())
        response.headers["Request-Id"] = request_id()
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return json_response(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code in (404, 405):
            return json_response({"id": "not_found", "message": ENDPOINT_NOT_FOUND}, 404)
        return json_response(
            {"id": "bad_request", "message": exc.description or "Bad request."}, exc.code or 400
        )

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        app.logger.exception("the Heroku stand-in failed")
        return json_response({"id": "internal_server_error", "message": f"Internal server error: {exc}"}, 500)

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
            return json_response(shapes.app(store, urls, find_app(ident)))

    @app.patch("/apps/<ident>")
    def app_update(ident: str) -> Response:
        data = _body()
        with store.change():
            rec = find_app(ident)
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

    # -- sources and their blobs -----------------------------------------------------------------

    @app.post("/sources")
    @app.post("/apps/<ident>/sources")
    def source_create(ident: str | None = None) -> Response:
        with store.change():
            if ident is not None:
                find_app(ident)
            rec = {"id": new_id(), "get_token": new_id(), "put_token": new_id(), "created_at": now()}
            store.sources[rec["id"]] = rec
            return json_response(shapes.source(urls, rec), 201)

    @app.route("/blobs/sources/<source_id>", methods=["GET", "PUT"])
    def source_blob(source_id: str) -> Response:
        with store.lock:
            rec = store.sources.get(source_id)
        token = request.args.get("token")
        if rec is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        path = platform.source_path(source_id)
        if request.method == "PUT":
            if token != rec["put_token"]:
                return _s3_error(
                    403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(request.get_data())
            return Response(b"", status=200)
        if token != rec["get_token"]:
            return _s3_error(403, "AccessDenied", "Access Denied")
        if not path.is_file():
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(path.read_bytes(), content_type="application/octet-stream")

    @app.get("/blobs/slugs/<slug_id>")
    def slug_blob(slug_id: str) -> Response:
        with store.lock:
            rec = store.slugs.get(slug_id)
        if rec is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if request.args.get("token") != rec["token"]:
            return _s3_error(403, "AccessDenied", "Access Denied")
        return Response(
            platform.builder.slug_path(slug_id).read_bytes(), content_type="application/octet-stream"
        )

    # -- output streams --------------------------------------------------------------------------

    def follow(path: Path, finished: Callable[[], bool]) -> Iterator[bytes]:
        position = 0
        deadline = time.monotonic() + STREAM_LIMIT
        while True:
            done = finished() or time.monotonic() > deadline
            try:
                with path.open("rb") as f:
                    f.seek(position)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            position += len(chunk)
            if chunk:
                yield chunk
            if done:
                return
            time.sleep(0.1)

    def output_stream(records: dict[str, Record], record_id: str, log_path: Path) -> Response:
        """A build's or release's log, followed until it stops being pending (capability URL)."""
        with store.lock:
            rec = records.get(record_id)
        if rec is None or request.args.get("token") != rec["token"]:
            return Response("Not found\n", status=404, content_type="text/plain")

        def finished() -> bool:
            with store.lock:
                return bool(records[record_id]["status"] != "pending")

        stream = follow(log_path, finished)
        return Response(stream, content_type="text/plain; charset=utf-8", direct_passthrough=True)

    @app.get("/streams/builds/<build_id>")
    def build_stream(build_id: str) -> Response:
        return output_stream(store.builds, build_id, platform.builder.log_path(build_id))

    @app.get("/streams/releases/<release_id>")
    def release_stream(release_id: str) -> Response:
        return output_stream(store.releases, release_id, platform.releaser.log_path(release_id))

    # -- builds ----------------------------------------------------------------------------------

    @app.post("/apps/<ident>/builds")
    def build_create(ident: str) -> Response:
        data = _body()
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
            owning = find_app(ident)
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
            owning = find_app(ident)
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
            return json_response(shapes.build(store, urls, find_build(find_app(ident), build_id)))

    @app.delete("/apps/<ident>/builds/<build_id>")
    def build_cancel(ident: str, build_id: str) -> Response:
        with store.lock:
            rec = find_build(find_app(ident), build_id)
            if rec["status"] != "pending":
                raise ApiError(
                    409, "conflict", f"Build {build_id} has already {rec['status']}; it cannot be canceled."
                )
        platform.builder.cancel(build_id)
        with store.lock:
            return json_response(shapes.build(store, urls, rec))

    @app.post("/filters/apps")
    def apps_filter() -> Response:
        data = _body()
        wanted = data.get("in", {}).get("id") if isinstance(data.get("in"), dict) else None
        if wanted is None:
            raise invalid("in.id", "is required")
        if not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted):
            raise invalid("in.id", "must be a list of app ids")
        with store.lock:
            found = [store.apps[i] for i in dict.fromkeys(wanted) if i in store.apps]
            items = [shapes.team_app(store, urls, a) for a in found]
        return listing(items, ["id", "name", "updated_at"])

    # -- slugs -----------------------------------------------------------------------------------

    @app.get("/apps/<ident>/slugs/<slug_id>")
    def slug_info(ident: str, slug_id: str) -> Response:
        with store.lock:
            find_app(ident)
            rec = store.slugs.get(slug_id)
            if rec is None:
                raise not_found("slug")
            return json_response(shapes.slug(store, urls, rec))

    # -- releases --------------------------------------------------------------------------------

    @app.get("/apps/<ident>/releases")
    def releases_list(ident: str) -> Response:
        with store.lock:
            owning = find_app(ident)
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
            return json_response(shapes.release(store, urls, find_release(find_app(ident), release_ident)))

    @app.get("/apps/<ident>/releases/<release_ident>/config-vars")
    def release_config(ident: str, release_ident: str) -> Response:
        with store.lock:
            return json_response(dict(find_release(find_app(ident), release_ident)["config_vars"]))

    @app.post("/apps/<ident>/releases")
    def release_create(ident: str) -> Response:
        data = _body()
        with store.lock:
            owning = find_app(ident)
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

    # -- config vars -----------------------------------------------------------------------------

    @app.get("/apps/<ident>/config-vars")
    def config_info(ident: str) -> Response:
        with store.lock:
            return json_response(dict(find_app(ident)["config_vars"]))

    @app.patch("/apps/<ident>/config-vars")
    def config_update(ident: str) -> Response:
        data = _body()
        for key, value in data.items():
            if not CONFIG_KEY.match(key):
                raise invalid(key, "is not a valid config var name (letters, digits and underscores)")
            if value is not None and not isinstance(value, str):
                raise invalid(key, "must be a string, or null to remove it")
        with store.change():
            owning = find_app(ident)
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

    # -- add-ons ---------------------------------------------------------------------------------

    def expansion() -> frozenset[str]:
        """The add-on parts ``Accept-Expansion`` asks to send whole (``addon_service``, ``plan``)."""
        header = request.headers.get("Accept-Expansion", "")
        return frozenset(part.strip() for part in header.split(",") if part.strip())

    @app.get("/apps/<ident>/addons")
    def addons_by_app(ident: str) -> Response:
        with store.lock:
            owning = find_app(ident)
            items = [shapes.addon(store, a, expansion()) for a in store.app_addons(owning["id"])]
        return listing(items, ["id", "name"])

    @app.get("/apps/<ident>/addons/<addon_ident>")
    def addon_by_app(ident: str, addon_ident: str) -> Response:
        with store.lock:
            owning = find_app(ident)
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
            return attachments(store.app_addons(find_app(ident)["id"]))

    @app.get("/apps/<ident>/addon-attachments/<attachment_ident>")
    def attachment_by_app(ident: str, attachment_ident: str) -> Response:
        with store.lock:
            rec = find_attachment(attachment_ident, find_app(ident)["id"])
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
        data = _body()
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
                owning = find_app(app_ident)
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

    # -- formation and dynos ---------------------------------------------------------------------

    @app.get("/apps/<ident>/formation")
    def formation_list(ident: str) -> Response:
        with store.lock:
            owning = find_app(ident)
            items = [shapes.formation(store, f) for f in store.app_formations(owning["id"])]
        return listing(items, ["id", "type"])

    @app.get("/apps/<ident>/formation/<formation_ident>")
    def formation_info(ident: str, formation_ident: str) -> Response:
        with store.lock:
            rec = store.find_formation(find_app(ident)["id"], formation_ident)
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
        data = _body()
        updates = data.get("updates")
        if updates is None:
            raise invalid("updates", "is required")
        if not isinstance(updates, list):
            raise invalid("updates", "must be a list")
        with store.lock:
            owning = find_app(ident)
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
        data = _body()
        with store.lock:
            owning = find_app(ident)
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
            owning = find_app(ident)
            items = [shapes.dyno(store, d) for d in platform.runtime.dynos(owning["id"])]
        return listing(items, ["id", "name"])

    @app.get("/apps/<ident>/dynos/<dyno_ident>")
    def dyno_info(ident: str, dyno_ident: str) -> Response:
        with store.lock:
            owning = find_app(ident)
            found = [d for d in platform.runtime.dynos(owning["id"]) if dyno_ident in (d["id"], d["name"])]
            if not found:
                raise not_found("dyno")
            return json_response(shapes.dyno(store, found[0]))

    @app.delete("/apps/<ident>/dynos")
    @app.delete("/apps/<ident>/dynos/<dyno_ident>")
    def dyno_restart(ident: str, dyno_ident: str | None = None) -> Response:
        with store.lock:
            owning = find_app(ident)
            if dyno_ident is not None and not any(
                dyno_ident in (d["id"], d["name"], d["type"]) for d in platform.runtime.dynos(owning["id"])
            ):
                raise not_found("dyno")
        platform.releaser.restart(owning["id"])
        return json_response({}, 202)

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
            rec = store.app_coupling(find_app(ident)["id"])
            if rec is None:
                raise not_found("pipeline coupling")
            return json_response(shapes.coupling(store, rec))

    # -- promotions ------------------------------------------------------------------------------

    @app.post("/pipeline-promotions")
    def promotion_create() -> Response:
        data = _body()
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

    return app
