"""The Heroku Data API stand-in (``api.data.heroku.com``): Postgres backups and database info.

Endpoints (all but the download need the account's API key, as ``Authorization: Bearer KEY`` or
HTTP Basic with the key as password; anything else is ``401 unauthorized``):

    GET    /client/v11/apps/{app}/transfers                          oldest first
    GET    /client/v11/apps/{app}/transfers/{num|uuid}[?verbose=true] logs only when verbose
    DELETE /client/v11/apps/{app}/transfers/{num|uuid}                marks it deleted
    POST   /client/v11/apps/{app}/transfers/{num|uuid}/actions/public-url   {"url", "expires_at"}
    POST   /client/v11/apps/{app}/transfers/{num|uuid}/actions/cancel
    POST   /client/v11/databases/{addon}/backups                      capture: 201, pending transfer
    GET    /client/v11/databases/{addon}                              pg:info's document
    GET    /client/v11/databases/{addon}/transfer-schedules
    POST   /client/v11/databases/{addon}/transfer-schedules           {hour, timezone, schedule_name}
    DELETE /client/v11/databases/{addon}/transfer-schedules/{uuid|name}
    GET    /backups/{uuid}/{name}.dump?expires=...&signature=...      the archive (no API key)

``{app}`` is an app id or name, ``{addon}`` a heroku-postgresql add-on id or name. Errors are
``{"id", "message"}``: 400 bad_request, 401 unauthorized, 404 not_found, 422 invalid_params.
The archive's storage URL (``to_url``) answers 403 without a valid signature, like a private S3
object; the signed URL from ``public-url`` expires after ``public_url_ttl`` seconds.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import flask
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from sandbox.databases import Databases
from sandbox.faults import Fault
from sandbox.heroku.refs import AddonRef, AppRef, HerokuLookup
from sandbox.heroku_data.backups import BackupWorker
from sandbox.heroku_data.database_info import database_info
from sandbox.heroku_data.signed_urls import DEFAULT_TTL, MAX_TTL, Signer
from sandbox.heroku_data.store import BackupStore, Schedule, Transfer, timestamp
from sandbox.server import json_object

ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid_params",
    429: "rate_limit",
}


class ApiError(Exception):
    """An answer in the Data API's error shape."""

    def __init__(self, status: int, message: str, error_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_id = error_id or ERROR_IDS.get(status, "internal_server_error")


def error_response(status: int, message: str, error_id: str | None = None) -> Response:
    body = {"id": error_id or ERROR_IDS.get(status, "internal_server_error"), "message": message}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _storage_error(status: int, code: str, message: str) -> Response:
    """An error as the object store behind the download URLs (S3) answers it."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status=status, mimetype="application/xml")


def _without_credentials(url: str) -> str:
    """The URL with user and password removed (``postgres://host:5432/db``)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class HerokuData:
    """The Data API of one sandbox. ``wsgi_app`` is served by a ``sandbox.server.ServiceServer``.

    Construction loads the state dir (transfers, schedules, the URL-signing secret) and starts the
    capture worker and the scheduler, resuming backups a previous run left unfinished; ``close``
    stops them. ``public_url_ttl`` is the default lifetime of a public URL in seconds (a request
    may ask for another with ``{"ttl": N}``); ``schedule_poll`` how often schedules are checked.
    """

    service = "heroku-data"

    def __init__(
        self,
        state_dir: Path,
        base_url: str,
        platform: HerokuLookup,
        databases: Databases,
        *,
        public_url_ttl: float = DEFAULT_TTL,
        schedule_poll: float = 30.0,
    ) -> None:
        self.state_dir = state_dir
        self.base_url = base_url.rstrip("/")
        self.platform = platform
        self.databases = databases
        self.public_url_ttl = public_url_ttl
        self.store = BackupStore(state_dir)
        self.signer = Signer(state_dir / "signing.key")
        self.worker = BackupWorker(self.store, platform, databases, poll=schedule_poll)
        self.wsgi_app = self._build_app()
        self.worker.start()

    def close(self) -> None:
        """Stop the capture worker and the scheduler."""
        self.worker.close()

    def fault_response(self, fault: Fault) -> Response:
        if fault.kind == "rate_limit":
            return error_response(429, "Your account reached the API rate limit. Please wait a few minutes.")
        message = "Internal server error (injected by the sandbox)"
        return error_response(fault.status or 503, message, "internal_server_error")

    # -- rendering -------------------------------------------------------------------------------

    def archive_path(self, transfer: Transfer) -> str:
        """Where this server serves the transfer's archive (signed URLs only)."""
        return f"/backups/{transfer.uuid}/{transfer.name}.dump"

    def render_transfer(self, transfer: Transfer, *, verbose: bool = False) -> dict[str, Any]:
        addon = self.platform.find_addon(transfer.addon_id)
        body: dict[str, Any] = {
            "uuid": transfer.uuid,
            "num": transfer.num,
            "from_name": transfer.from_name,
            "from_type": transfer.from_type,
            "from_url": _without_credentials(addon.database_url) if addon else None,
            "to_name": transfer.to_name,
            "to_type": transfer.to_type,
            "to_url": f"{self.base_url}{self.archive_path(transfer)}",
            "options": {},
            "source_bytes": transfer.source_bytes,
            "processed_bytes": transfer.processed_bytes,
            "succeeded": transfer.succeeded,
            "warnings": transfer.warnings,
            "created_at": transfer.created_at,
            "started_at": transfer.started_at,
            "canceled_at": transfer.canceled_at,
            "updated_at": transfer.updated_at,
            "finished_at": transfer.finished_at,
            "deleted_at": transfer.deleted_at,
            "purged_at": None,
            "num_keep": 25,
            "schedule": {"uuid": transfer.schedule_uuid} if transfer.schedule_uuid else None,
        }
        if verbose:
            body["logs"] = list(transfer.logs)
        return body

    @staticmethod
    def render_schedule(schedule: Schedule) -> dict[str, Any]:
        return {
            "uuid": schedule.uuid,
            "name": schedule.name,
            "hour": schedule.hour,
            "days": list(schedule.days),
            "timezone": schedule.timezone,
            "created_at": schedule.created_at,
            "updated_at": schedule.updated_at,
            "deleted_at": None,
        }

    # -- request helpers ---------------------------------------------------------------------------

    def _authenticate(self) -> None:
        auth = flask.request.authorization
        key = None
        if auth is not None and auth.type == "bearer":
            key = auth.token
        elif auth is not None and auth.type == "basic":
            key = auth.password
        if not key or not self.platform.check_api_key(key):
            raise ApiError(401, "Invalid credentials provided.")

    def _app(self, ident: str) -> AppRef:
        app = self.platform.find_app(ident)
        if app is None:
            raise ApiError(404, f"Couldn't find that app: {ident}.")
        return app

    def _addon(self, ident: str) -> AddonRef:
        addon = self.platform.find_addon(ident)
        if addon is None:
            raise ApiError(404, f"Couldn't find that database: {ident}.")
        return addon

    def _transfer(self, app_ident: str, ident: str) -> Transfer:
        app = self._app(app_ident)
        transfer = self.store.find(app.id, ident)
        if transfer is None:
            raise ApiError(404, f"Couldn't find that transfer: {ident}.")
        return transfer

    @staticmethod
    def _body() -> dict[str, Any]:
        """The JSON object in the request body; an empty body is an empty object."""
        try:
            return json_object(flask.request.get_data())
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    # -- the app -----------------------------------------------------------------------------------

    def _build_app(self) -> flask.Flask:
        app = flask.Flask(__name__, root_path=str(Path(__file__).parent))

        @app.errorhandler(ApiError)
        def api_error(exc: ApiError) -> Response:
            return error_response(exc.status, exc.message, exc.error_id)

        @app.errorhandler(HTTPException)
        def http_error(exc: HTTPException) -> Response:
            status = exc.code or 500
            return error_response(status, exc.description or exc.name)

        @app.before_request
        def authenticate() -> None:
            if not flask.request.path.startswith("/backups/"):
                self._authenticate()

        prefix = "/client/v11"
        app.add_url_rule(f"{prefix}/apps/<app_id>/transfers", view_func=self._list_transfers)
        app.add_url_rule(f"{prefix}/apps/<app_id>/transfers/<ident>", view_func=self._get_transfer)
        app.add_url_rule(
            f"{prefix}/apps/<app_id>/transfers/<ident>",
            endpoint="delete_transfer",
            view_func=self._delete_transfer,
            methods=["DELETE"],
        )
        app.add_url_rule(
            f"{prefix}/apps/<app_id>/transfers/<ident>/actions/public-url",
            view_func=self._public_url,
            methods=["POST"],
        )
        app.add_url_rule(
            f"{prefix}/apps/<app_id>/transfers/<ident>/actions/cancel",
            view_func=self._cancel,
            methods=["POST"],
        )
        app.add_url_rule(f"{prefix}/databases/<addon_id>", view_func=self._database)
        app.add_url_rule(f"{prefix}/databases/<addon_id>/backups", view_func=self._capture, methods=["POST"])
        app.add_url_rule(f"{prefix}/databases/<addon_id>/transfer-schedules", view_func=self._list_schedules)
        app.add_url_rule(
            f"{prefix}/databases/<addon_id>/transfer-schedules",
            endpoint="create_schedule",
            view_func=self._create_schedule,
            methods=["POST"],
        )
        app.add_url_rule(
            f"{prefix}/databases/<addon_id>/transfer-schedules/<ident>",
            view_func=self._delete_schedule,
            methods=["DELETE"],
        )
        app.add_url_rule("/backups/<transfer_uuid>/<filename>", view_func=self._download)
        return app

    # -- transfers ---------------------------------------------------------------------------------

    def _list_transfers(self, app_id: str) -> Response:
        app = self._app(app_id)
        verbose = flask.request.args.get("verbose") == "true"
        return _json([self.render_transfer(t, verbose=verbose) for t in self.store.transfers(app.id)])

    def _get_transfer(self, app_id: str, ident: str) -> Response:
        transfer = self._transfer(app_id, ident)
        return _json(self.render_transfer(transfer, verbose=flask.request.args.get("verbose") == "true"))

    def _delete_transfer(self, app_id: str, ident: str) -> Response:
        transfer = self._transfer(app_id, ident)
        if transfer.finished_at is None:
            raise ApiError(422, f"Transfer {transfer.name} is still running; cancel it before deleting it.")
        return _json(self.render_transfer(self.store.delete(transfer)))

    def _cancel(self, app_id: str, ident: str) -> Response:
        transfer = self._transfer(app_id, ident)
        if transfer.finished_at is not None:
            raise ApiError(422, f"Transfer {transfer.name} has already finished.")
        now = timestamp()
        self.store.update(
            transfer, canceled_at=now, finished_at=now, succeeded=False, log=("info", "Canceled by the user")
        )
        return _json(self.render_transfer(transfer))

    def _public_url(self, app_id: str, ident: str) -> Response:
        transfer = self._transfer(app_id, ident)
        if transfer.to_type != "gof3r" or not transfer.succeeded:
            raise ApiError(422, "Can only generate public URL for completed backups.")
        ttl = self._body().get("ttl", self.public_url_ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
            raise ApiError(422, f"ttl: must be a number of seconds between 1 and {int(MAX_TTL)}.")
        expires = int(time.time() + ttl)
        url = self.signer.sign(self.base_url, self.archive_path(transfer), expires)
        return _json({"url": url, "expires_at": timestamp(datetime.fromtimestamp(expires, UTC))})

    def _download(self, transfer_uuid: str, filename: str) -> Response:
        args = flask.request.args
        path = flask.request.path
        reason = self.signer.verify(path, args.get("expires"), args.get("signature"), time.time())
        if reason is not None:
            return _storage_error(403, "AccessDenied", reason)
        transfer = self.store.by_uuid(transfer_uuid)
        if transfer is None or transfer.deleted_at is not None or not self.store.dump_path(transfer).exists():
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return flask.send_file(
            self.store.dump_path(transfer),
            mimetype="application/octet-stream",
            download_name=filename,
            max_age=0,
        )

    # -- databases ---------------------------------------------------------------------------------

    def _capture(self, addon_id: str) -> Response:
        addon = self._addon(addon_id)
        self._body()  # the CLI sends none; a malformed one is still a 400
        self.store.addon_created_at(addon.id)
        return _json(self.render_transfer(self.worker.capture(addon)), 201)

    def _database(self, addon_id: str) -> Response:
        addon = self._addon(addon_id)
        created_at = self.store.addon_created_at(addon.id)
        return _json(database_info(addon, created_at, datetime.now(UTC)))

    def _list_schedules(self, addon_id: str) -> Response:
        addon = self._addon(addon_id)
        return _json([self.render_schedule(s) for s in self.store.schedules(addon.id)])

    def _create_schedule(self, addon_id: str) -> Response:
        addon = self._addon(addon_id)
        body = self._body()
        hour = body.get("hour")
        if isinstance(hour, str) and hour.strip().isdigit():
            hour = int(hour)  # the CLI sends the hour as a string
        if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
            raise ApiError(422, "hour: must be a whole number from 0 to 23.")
        timezone = body.get("timezone", "UTC")
        try:
            if not isinstance(timezone, str):
                raise ValueError(timezone)
            ZoneInfo(timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise ApiError(422, f"timezone: {timezone!r} is not a known time zone, such as 'UTC'.") from None
        name = body.get("schedule_name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(422, "schedule_name: required, the config var naming the database (DATABASE_URL).")
        self.store.addon_created_at(addon.id)
        schedule = self.store.put_schedule(addon.id, name.strip(), hour, timezone)
        return _json(self.render_schedule(schedule), 201)

    def _delete_schedule(self, addon_id: str, ident: str) -> Response:
        addon = self._addon(addon_id)
        schedule = self.store.delete_schedule(addon.id, ident)
        if schedule is None:
            raise ApiError(404, f"Couldn't find that schedule: {ident}.")
        return _json(self.render_schedule(schedule))
