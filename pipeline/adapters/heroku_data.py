"""``ports.Backups`` over the Heroku Data API (``/client/v11``), the way ``heroku pg:backups`` does.

The database is the app's ``heroku-postgresql`` add-on attached as ``DATABASE`` (the one that
gives the app ``DATABASE_URL``), read from the Platform API's ``GET /apps/{app}/addons`` on every
call (an app's primary database can change). Backups are the app's transfers to ``gof3r``; their
status and name are computed as the CLI computes them. Both APIs get the same key as a Bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from pipeline.adapters import http
from pipeline.adapters.heroku import two_factor_explained
from pipeline.errors import NotFound, Permanent
from pipeline.model import Backup, BackupSchedule, DatabaseInfo, PermissionCheck

SERVICE = "heroku-data"
CREDENTIAL = "HEROKU_API_KEY"
ACCEPT = "application/vnd.heroku+json; version=3"
POSTGRES = "heroku-postgresql"
ATTACHMENT_VAR = "DATABASE_URL"
BACKUP_TYPE = "gof3r"


def status(data: Mapping[str, Any]) -> str:
    """As the CLI shows it: finished and succeeded = completed; finished only = failed (canceled
    included); started = running; else pending."""
    if data.get("finished_at"):
        return "completed" if data.get("succeeded") else "failed"
    if data.get("started_at"):
        return "running"
    return "pending"


def name(data: Mapping[str, Any]) -> str:
    """``b001`` for a manual backup, ``a001`` for a scheduled one."""
    prefix = "a" if data.get("schedule") else "b"
    return f"{prefix}{int(data['num']):03d}"


def backup(data: Mapping[str, Any]) -> Backup:
    """A backup from its transfer's raw JSON (logs when the answer has them)."""
    logs = tuple(
        f"{entry.get('created_at', '')} {entry.get('message', '')}".strip()
        for entry in data.get("logs") or ()
        if isinstance(entry, Mapping)
    )
    return Backup(
        id=str(data["uuid"]),
        num=int(data["num"]),
        name=name(data),
        status=status(data),
        created_at=http.parse_time(data["created_at"]),
        finished_at=http.parse_optional_time(data.get("finished_at")),
        size_bytes=int(data.get("processed_bytes") or 0),
        database=str(data.get("from_name") or ""),
        logs=logs,
    )


def schedule(data: Mapping[str, Any]) -> BackupSchedule:
    """A transfer schedule from its raw JSON (``hour`` may come as a number or as text)."""
    return BackupSchedule(
        uuid=str(data.get("uuid") or ""),
        name=str(data.get("name") or ""),
        hour=int(data["hour"]),
        timezone=str(data.get("timezone") or "UTC"),
    )


def is_backup(data: Mapping[str, Any]) -> bool:
    """A transfer that is a backup (to gof3r) and was not deleted."""
    return data.get("to_type") == BACKUP_TYPE and not data.get("deleted_at")


class HerokuBackups:
    """``ports.Backups`` with ``api_key`` against the Data API at ``data_api_url``
    (``https://api.data.heroku.com``) and the Platform API at ``platform_api_url`` (to find the
    add-on). Every request waits at most ``timeout`` seconds to connect and between two bytes.
    Building one sends no request.
    """

    def __init__(self, data_api_url: str, platform_api_url: str, api_key: str, timeout: float = 30.0) -> None:
        self._data_url = data_api_url.rstrip("/")
        self._platform_url = platform_api_url.rstrip("/")
        self._api_key = api_key
        self._session = http.session(timeout, auth=http.BearerAuth(api_key))
        self._session.headers["Accept"] = ACCEPT

    def __repr__(self) -> str:
        return f"HerokuBackups({self._data_url!r})"

    # -- plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            with http.calling(SERVICE, what, credential=CREDENTIAL, secrets=(self._api_key,)):
                yield
        except Permanent as exc:
            raise two_factor_explained(exc, CREDENTIAL, SERVICE) from exc.__cause__

    def _json(self, method: str, url: str, what: str, params: Mapping[str, str] | None = None) -> Any:
        with self._calling(what):
            answer = self._session.request(method, url, params=params, json={} if method == "POST" else None)
        if not answer.ok:
            failure = http.error_for(SERVICE, what, answer, credential=CREDENTIAL, secrets=(self._api_key,))
            raise (
                two_factor_explained(failure, CREDENTIAL, SERVICE)
                if isinstance(failure, Permanent)
                else failure
            )
        with http.reading(SERVICE, what):
            return answer.json()

    def _transfers_url(self, app: str) -> str:
        return f"{self._data_url}/client/v11/apps/{quote(app, safe='')}/transfers"

    def _database(self, app: str) -> str:
        """The id of ``app``'s heroku-postgresql add-on attached as DATABASE.

        With one Postgres add-on, that one; with several, the one exposing ``DATABASE_URL``.
        NotFound when the app has none; Permanent when it cannot tell which.
        """
        what = f"finding the database add-on of {app}"
        addons = self._json("GET", f"{self._platform_url}/apps/{quote(app, safe='')}/addons", what)
        with http.reading(SERVICE, what):
            postgres = [a for a in addons if (a.get("addon_service") or {}).get("name") == POSTGRES]
            primary = [a for a in postgres if ATTACHMENT_VAR in (a.get("config_vars") or ())]
            chosen = primary if primary else postgres
            if len(chosen) == 1:
                return str(chosen[0]["id"])
        if not chosen:
            raise NotFound(SERVICE, f"app {app} has no {POSTGRES} add-on to back up")
        raise Permanent(
            SERVICE,
            f"app {app} has {len(chosen)} {POSTGRES} add-ons and none is attached as DATABASE: "
            "attach the primary database as DATABASE",
        )

    # -- ports.Backups ---------------------------------------------------------------------------

    def capture(self, app: str) -> Backup:
        """Start a backup of the app's DATABASE; return it (pending)."""
        addon_id = self._database(app)
        what = f"capturing a backup of {app}"
        data = self._json(
            "POST", f"{self._data_url}/client/v11/databases/{quote(addon_id, safe='')}/backups", what
        )
        with http.reading(SERVICE, what):
            return backup(data)

    def backup(self, app: str, backup_id: str) -> Backup:
        """One backup by uuid or number (``b012`` and ``a012`` are read as 12), with its logs.
        NotFound when the transfer does not exist or is not a backup."""
        ident = backup_id[1:] if backup_id[:1] in ("a", "b") and backup_id[1:].isdigit() else backup_id
        what = f"reading backup {backup_id} of {app}"
        data = self._json(
            "GET", f"{self._transfers_url(app)}/{quote(ident, safe='')}", what, params={"verbose": "true"}
        )
        with http.reading(SERVICE, what):
            found = backup(data) if data.get("to_type") == BACKUP_TYPE else None
        if found is None:
            raise NotFound(SERVICE, f"transfer {backup_id} of {app} is not a backup")
        return found

    def backups(self, app: str) -> list[Backup]:
        """Every backup of the app's databases (deleted ones left out), newest (highest number) first."""
        what = f"listing the backups of {app}"
        items = self._json("GET", self._transfers_url(app), what)
        with http.reading(SERVICE, what):
            found = [backup(t) for t in items if is_backup(t)]
        return sorted(found, key=lambda b: b.num, reverse=True)

    def permissions(self, app: str) -> list[PermissionCheck]:
        """Whether the key reaches ``app``'s database and its backups on the Data API (a capture's
        own permission Heroku tells only when one is asked for: it goes with deploying the app)."""
        need = f"capture backups of {app}'s database"
        try:
            addon = self._database(app)
            count = len(self.backups(app))
        except Permanent as exc:
            return [PermissionCheck(CREDENTIAL, need, False, str(exc))]
        return [PermissionCheck(CREDENTIAL, need, True, f"reads add-on {addon} and its {count} backup(s)")]

    def database_info(self, app: str) -> DatabaseInfo:
        """The plan, creation time and rollback window of the app's DATABASE, from the Data API's
        database document (the ``info`` entries ``heroku pg:info`` prints: "Rollback" is ``earliest
        from 2026-12-02 05:00 UTC``, or ``Unsupported`` on a plan that keeps no window)."""
        addon_id = self._database(app)
        what = f"reading the database of {app}"
        data = self._json("GET", f"{self._data_url}/client/v11/databases/{quote(addon_id, safe='')}", what)
        with http.reading(SERVICE, what):
            info = {str(e["name"]): [str(v) for v in e.get("values") or ()] for e in data.get("info") or ()}
            rollback = (info.get("Rollback") or [""])[0]
            earliest = None
            if rollback.lower().startswith("earliest from "):
                text = rollback[len("earliest from ") :].removesuffix(" UTC").strip()
                earliest = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            return DatabaseInfo(
                addon=str(data.get("name") or addon_id),
                plan=str(data.get("plan") or ""),
                created_at=http.parse_optional_time(data.get("created_at")),
                rollback_earliest=earliest,
            )

    def schedules(self, app: str) -> list[BackupSchedule]:
        """The backup schedules of the app's DATABASE (``heroku pg:backups:schedules``)."""
        addon_id = self._database(app)
        what = f"listing the backup schedules of {app}"
        items = self._json("GET", self._schedules_url(addon_id), what)
        with http.reading(SERVICE, what):
            return [schedule(s) for s in items]

    def set_schedule(self, app: str, hour: int, timezone: str) -> BackupSchedule:
        """Create or replace the daily backup schedule of the app's DATABASE, at ``hour`` in
        ``timezone``, as ``heroku pg:backups:schedule --at 'HH:00 TZ'`` does. Idempotent."""
        addon_id = self._database(app)
        what = f"scheduling the backups of {app}"
        body = {"hour": f"{hour:02d}", "timezone": timezone, "schedule_name": ATTACHMENT_VAR}
        with self._calling(what):
            answer = self._session.post(self._schedules_url(addon_id), json=body)
        if not answer.ok:
            raise http.error_for(SERVICE, what, answer, credential=CREDENTIAL, secrets=(self._api_key,))
        with http.reading(SERVICE, what):
            return schedule(answer.json())

    def _schedules_url(self, addon_id: str) -> str:
        return f"{self._data_url}/client/v11/databases/{quote(addon_id, safe='')}/transfer-schedules"

    def public_url(self, app: str, backup_id: str) -> str:
        """A short-lived signed URL of the backup's ``pg_dump -Fc`` archive (the ``url`` of its
        transfer's ``actions/public-url``), by uuid, number or name, as ``heroku pg:backups:url``
        gets it. The action is addressed by number, as the CLI addresses it: a uuid is read first
        (one more request) to learn its number. NotFound when there is no such backup; Permanent
        when it is not completed (the Data API's 422) or the answer holds no http(s) URL.

        The URL is a capability (anyone holding it can download the database until it expires):
        it is returned, and never put in a message or a log line here.
        """
        ident = backup_id[1:] if backup_id[:1] in ("a", "b") and backup_id[1:].isdigit() else backup_id
        num = str(int(ident)) if ident.isdecimal() else str(self.backup(app, backup_id).num)
        what = f"getting the download URL of backup {backup_id} of {app}"
        data = self._json(
            "POST", f"{self._transfers_url(app)}/{quote(num, safe='')}/actions/public-url", what
        )
        url = data.get("url") if isinstance(data, Mapping) else None
        try:
            usable = (
                isinstance(url, str)
                and urlsplit(url).scheme in ("https", "http")
                and bool(urlsplit(url).netloc)
            )
        except ValueError:  # its message could quote the URL
            usable = False
        if not usable:
            raise Permanent(
                SERVICE, f"unexpected answer while {what}", evidence="no http(s) URL in the answer"
            )
        return str(url)
