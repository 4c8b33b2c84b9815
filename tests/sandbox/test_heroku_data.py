"""The Heroku Data API stand-in over real HTTP: backups of real databases, signed downloads,
schedules, database info, errors, and state that survives a restart.

The Platform API stand-in is not needed: ``FakePlatform`` below is a small real implementation of
the ``HerokuLookup`` Protocol that keeps its apps and add-ons, whose databases are provisioned
through a real ``Databases`` and migrated by the demo app's own release phase. Every test runs on
SQLite, and again on PostgreSQL when a server answers.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from sandbox.databases import Databases, postgres_available
from sandbox.demo import demo_files
from sandbox.faults import Faults
from sandbox.heroku.refs import AddonRef, AppRef
from sandbox.heroku_data import HerokuData
from sandbox.heroku_data.store import parse_timestamp
from sandbox.server import ServiceServer

API_KEY = "hrku-sandbox-test-key"
DEADLINE = 30.0


@dataclass
class FakePlatform:
    """Apps and heroku-postgresql add-ons, as the Platform stand-in would answer about them."""

    api_key: str
    apps: list[AppRef] = field(default_factory=list)
    addons: list[AddonRef] = field(default_factory=list)

    def add(self, app_name: str, plan: str, databases: Databases) -> AddonRef:
        app = AppRef(id=f"00000000-0000-4000-8000-{len(self.apps):012d}", name=app_name)
        addon_id = f"11111111-0000-4000-8000-{len(self.addons):012d}"
        url = databases.provision(addon_id, app_name)
        addon = AddonRef(
            id=addon_id,
            name=f"postgresql-{app_name}-{len(self.addons)}",
            plan=plan,
            app=app,
            database_url=url,
        )
        self.apps.append(app)
        self.addons.append(addon)
        return addon

    def check_api_key(self, key: str) -> bool:
        return key == self.api_key

    def find_app(self, id_or_name: str) -> AppRef | None:
        return next((a for a in self.apps if id_or_name in (a.id, a.name)), None)

    def find_addon(self, id_or_name: str) -> AddonRef | None:
        return next((a for a in self.addons if id_or_name in (a.id, a.name)), None)

    def app_addons(self, app_id: str) -> list[AddonRef]:
        return [a for a in self.addons if a.app.id == app_id]


def migrate(database_url: str, workdir: Path) -> None:
    """Give the database the demo app's tables by running the demo app's release phase."""
    for name, content in demo_files().items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(content)
    result = subprocess.run(
        [sys.executable, "release.py"],
        cwd=workdir,
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


class DataApi:
    """A running Data API stand-in on loopback, restartable on the same state dir."""

    def __init__(self, state_dir: Path, platform: FakePlatform, databases: Databases) -> None:
        self.state_dir, self.platform, self.databases = state_dir, platform, databases
        self.faults = Faults()
        self.server: ServiceServer | None = None
        self.data: HerokuData | None = None
        self.start()

    def start(self) -> None:
        self.server = ServiceServer("heroku-data", self.faults)
        self.data = HerokuData(self.state_dir, self.server.url, self.platform, self.databases)
        self.server.start(self.data.wsgi_app, self.data.fault_response)

    def stop(self) -> None:
        if self.data is not None:
            self.data.close()
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def call(self, method: str, path: str, *, key: str | None = API_KEY, **kwargs: Any) -> requests.Response:
        headers = {"Accept": "application/vnd.heroku+json; version=3", **kwargs.pop("headers", {})}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def wait_finished(self, app: str, num: int) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while True:
            transfer = self.call("GET", f"/client/v11/apps/{app}/transfers/{num}?verbose=true").json()
            if transfer["finished_at"] is not None:
                return transfer
            assert time.monotonic() < deadline, f"backup {num} did not finish: {transfer}"
            time.sleep(0.1)

    def capture(self, addon: AddonRef) -> dict[str, Any]:
        answer = self.call("POST", f"/client/v11/databases/{addon.id}/backups")
        assert answer.status_code == 201, answer.text
        return self.wait_finished(addon.app.name, answer.json()["num"])


@dataclass
class World:
    api: DataApi
    platform: FakePlatform
    databases: Databases
    standard: AddonRef  # claims-staging on heroku-postgresql:standard-0, migrated
    essential: AddonRef  # claims-essential on heroku-postgresql:essential-0, empty


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    kind: str = request.param
    if kind == "postgres" and not postgres_available():
        pytest.skip("no PostgreSQL server answers at SANDBOX_POSTGRES_URL (default 127.0.0.1:5432)")
    databases = Databases(tmp_path / "databases", kind=kind)
    platform = FakePlatform(API_KEY)
    api: DataApi | None = None
    try:
        standard = platform.add("claims-staging", "heroku-postgresql:standard-0", databases)
        essential = platform.add("claims-essential", "heroku-postgresql:essential-0", databases)
        migrate(standard.database_url, tmp_path / "app")
        api = DataApi(tmp_path / "heroku-data", platform, databases)
        yield World(api, platform, databases, standard, essential)
    finally:
        if api is not None:
            api.stop()
        databases.drop_all()


def check_archive(world: World, archive: bytes, tmp_path: Path) -> None:
    """The archive restores: pg_restore lists the demo table, or SQLite opens it with its rows."""
    path = tmp_path / "latest.dump"
    path.write_bytes(archive)
    if world.databases.kind == "postgres":
        listing = subprocess.run(
            ["pg_restore", "--list", str(path)], capture_output=True, text=True, timeout=60
        )
        assert listing.returncode == 0, listing.stderr
        assert "TABLE public claims" in listing.stdout
    else:
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("SELECT count(*) FROM claims").fetchone() == (3,)
            assert conn.execute("SELECT max(name) FROM schema_migrations").fetchone() == ("002_seed_claims",)
        finally:
            conn.close()


# -- capture, list, get ------------------------------------------------------------------------------


def test_capture_makes_a_real_backup_that_completes(world: World) -> None:
    answer = world.api.call("POST", f"/client/v11/databases/{world.standard.name}/backups")
    assert answer.status_code == 201
    pending = answer.json()
    assert pending["num"] == 1 and pending["from_type"] == "pg_dump" and pending["to_type"] == "gof3r"
    assert pending["finished_at"] is None and pending["succeeded"] is None
    assert "logs" not in pending  # logs only with ?verbose=true, as Heroku does

    done = world.api.wait_finished("claims-staging", 1)
    assert done["succeeded"] is True
    assert done["processed_bytes"] > 0 and done["source_bytes"] > 0
    assert done["started_at"] and done["finished_at"] and done["canceled_at"] is None
    assert done["schedule"] is None and done["from_name"] == "DATABASE"
    parse_timestamp(done["created_at"])  # "2015-03-23 20:38:10 +0000", the Data API's format
    assert [entry["level"] for entry in done["logs"]] and all(entry["message"] for entry in done["logs"])
    assert "@" not in (done["from_url"] or "")  # never the database's credentials


def test_list_and_get_by_num_and_uuid(world: World) -> None:
    first = world.api.capture(world.standard)
    second = world.api.capture(world.standard)
    listed = world.api.call("GET", "/client/v11/apps/claims-staging/transfers")
    assert listed.status_code == 200
    assert [t["num"] for t in listed.json()] == [1, 2]  # newest last
    by_app_id = world.api.call("GET", f"/client/v11/apps/{world.standard.app.id}/transfers").json()
    assert [t["uuid"] for t in by_app_id] == [first["uuid"], second["uuid"]]
    for ident in ("2", second["uuid"]):
        got = world.api.call("GET", f"/client/v11/apps/claims-staging/transfers/{ident}")
        assert got.status_code == 200 and got.json()["uuid"] == second["uuid"]
    assert world.api.call("GET", "/client/v11/apps/claims-essential/transfers").json() == []


def test_a_failing_dump_finishes_not_succeeded_with_the_error_in_its_logs(world: World) -> None:
    broken_app = AppRef(id="22222222-0000-4000-8000-000000000000", name="claims-broken")
    broken = AddonRef(
        id="33333333-0000-4000-8000-000000000000",
        name="postgresql-broken",
        plan="heroku-postgresql:standard-0",
        app=broken_app,
        database_url="sqlite:////nonexistent/dir/broken.sqlite3"
        if world.databases.kind == "sqlite"
        else "postgres://postgres@127.0.0.1:5432/sbx_no_such_database",
    )
    world.platform.apps.append(broken_app)
    world.platform.addons.append(broken)
    done = world.api.capture(broken)
    assert done["succeeded"] is False and done["finished_at"] is not None
    assert any(entry["level"] == "error" for entry in done["logs"])
    assert (
        world.api.call("POST", "/client/v11/apps/claims-broken/transfers/1/actions/public-url").status_code
        == 422
    )


# -- public URL --------------------------------------------------------------------------------------


def test_public_url_downloads_a_restorable_archive(world: World, tmp_path: Path) -> None:
    backup = world.api.capture(world.standard)
    answer = world.api.call(
        "POST", f"/client/v11/apps/claims-staging/transfers/{backup['num']}/actions/public-url"
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url"].startswith(world.api.url)
    expires_at = parse_timestamp(body["expires_at"])
    assert 3000 < (expires_at - datetime.now(UTC)).total_seconds() <= 3600  # an hour, like Heroku's
    download = requests.get(body["url"], timeout=30)  # no credentials: the URL is the secret
    assert download.status_code == 200
    assert len(download.content) == backup["processed_bytes"]
    check_archive(world, download.content, tmp_path)


def test_unsigned_tampered_and_expired_urls_are_refused(world: World) -> None:
    backup = world.api.capture(world.standard)
    assert requests.get(backup["to_url"], timeout=30).status_code == 403  # the private object
    url = world.api.call("POST", "/client/v11/apps/claims-staging/transfers/1/actions/public-url").json()[
        "url"
    ]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}

    tampered = dict(query, signature=("0" if query["signature"][0] != "0" else "1") + query["signature"][1:])
    later = dict(query, expires=str(int(query["expires"]) + 3600))
    for changed in (tampered, later):
        refused = requests.get(
            f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(changed)}", timeout=30
        )
        assert refused.status_code == 403 and b"AccessDenied" in refused.content

    assert world.api.data is not None
    expired = world.api.data.signer.sign(world.api.url, parts.path, int(time.time()) - 1)
    refused = requests.get(expired, timeout=30)
    assert refused.status_code == 403 and b"expired" in refused.content


def test_public_url_lifetime_can_be_asked_for(world: World) -> None:
    world.api.capture(world.standard)
    path = "/client/v11/apps/claims-staging/transfers/1/actions/public-url"
    short = world.api.call("POST", path, json={"ttl": 60})
    assert short.status_code == 200
    assert (parse_timestamp(short.json()["expires_at"]) - datetime.now(UTC)).total_seconds() <= 60
    assert world.api.call("POST", path, json={"ttl": -5}).status_code == 422


# -- delete and cancel ---------------------------------------------------------------------------------


def test_delete_removes_the_backup_and_its_archive(world: World) -> None:
    world.api.capture(world.standard)
    url = world.api.call("POST", "/client/v11/apps/claims-staging/transfers/1/actions/public-url").json()[
        "url"
    ]
    deleted = world.api.call("DELETE", "/client/v11/apps/claims-staging/transfers/1")
    assert deleted.status_code == 200 and deleted.json()["deleted_at"] is not None
    assert world.api.call("GET", "/client/v11/apps/claims-staging/transfers/1").status_code == 404
    assert world.api.call("GET", "/client/v11/apps/claims-staging/transfers").json() == []
    assert requests.get(url, timeout=30).status_code == 404
    assert world.api.capture(world.standard)["num"] == 2  # numbers are never reused


def test_cancelling_a_finished_backup_is_refused(world: World) -> None:
    world.api.capture(world.standard)
    refused = world.api.call("POST", "/client/v11/apps/claims-staging/transfers/1/actions/cancel")
    assert refused.status_code == 422 and refused.json()["id"] == "invalid_params"


# -- schedules -----------------------------------------------------------------------------------------


def test_schedules_create_list_replace_and_delete(world: World) -> None:
    path = f"/client/v11/databases/{world.standard.id}/transfer-schedules"
    assert world.api.call("GET", path).json() == []
    created = world.api.call(
        "POST", path, json={"hour": "2", "timezone": "America/New_York", "schedule_name": "DATABASE_URL"}
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["hour"], schedule["timezone"], schedule["name"]) == (
        2,
        "America/New_York",
        "DATABASE_URL",
    )
    assert len(schedule["days"]) == 7

    moved = world.api.call("POST", path, json={"hour": 5, "timezone": "UTC", "schedule_name": "DATABASE_URL"})
    assert moved.json()["uuid"] == schedule["uuid"]  # one schedule per name: changed, not added
    listed = world.api.call("GET", path).json()
    assert [(s["uuid"], s["hour"], s["timezone"]) for s in listed] == [(schedule["uuid"], 5, "UTC")]

    for bad, field_name in (({"hour": 24}, "hour"), ({"hour": 1, "timezone": "Mars/Base"}, "timezone")):
        refused = world.api.call("POST", path, json={"schedule_name": "DATABASE_URL", **bad})
        assert refused.status_code == 422 and refused.json()["message"].startswith(field_name)

    assert world.api.call("DELETE", f"{path}/{schedule['uuid']}").status_code == 200
    assert world.api.call("GET", path).json() == []
    assert world.api.call("DELETE", f"{path}/{schedule['uuid']}").status_code == 404


def test_a_due_schedule_captures_a_scheduled_backup_once_a_day(world: World) -> None:
    path = f"/client/v11/databases/{world.standard.id}/transfer-schedules"
    schedule = world.api.call(
        "POST", path, json={"hour": 3, "timezone": "UTC", "schedule_name": "DATABASE_URL"}
    )
    assert world.api.data is not None
    worker = world.api.data.worker
    assert worker.run_due_schedules(datetime(2030, 1, 2, 2, 59, tzinfo=UTC)) == []  # not its hour yet
    started = worker.run_due_schedules(datetime(2030, 1, 2, 3, 10, tzinfo=UTC))
    assert [t.name for t in started] == ["a001"]
    assert worker.run_due_schedules(datetime(2030, 1, 2, 3, 40, tzinfo=UTC)) == []  # once a day
    done = world.api.wait_finished("claims-staging", 1)
    assert done["succeeded"] is True and done["schedule"] == {"uuid": schedule.json()["uuid"]}


# -- database info -------------------------------------------------------------------------------------


def test_database_info_reports_what_pg_info_shows(world: World) -> None:
    answer = world.api.call("GET", f"/client/v11/databases/{world.standard.id}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["addon_id"] == world.standard.id and body["num_bytes"] > 0
    info = {entry["name"]: entry["values"] for entry in body["info"]}
    for name in ("Plan", "Status", "Data Size", "Tables", "PG Version", "Continuous Protection", "Rollback"):
        assert info[name], name
    assert {"Fork/Follow", "Created", "Connections"} <= set(info)
    assert info["Plan"] == ["Standard 0"] and info["Status"] == ["Available"]
    assert info["Tables"] == ["2"]  # claims and schema_migrations
    assert info["Continuous Protection"] == ["On"] and info["Rollback"][0].startswith("earliest from ")

    essential = world.api.call("GET", f"/client/v11/databases/{world.essential.name}").json()
    info = {entry["name"]: entry["values"] for entry in essential["info"]}
    assert info["Continuous Protection"] == ["Off"] and info["Rollback"] == ["Unsupported"]
    assert info["Tables"] == ["0"]


# -- errors --------------------------------------------------------------------------------------------


def test_credentials_are_required(world: World) -> None:
    path = "/client/v11/apps/claims-staging/transfers"
    for key in (None, "wrong-key"):
        refused = world.api.call("GET", path, key=key)
        assert refused.status_code == 401 and refused.json()["id"] == "unauthorized"
    basic = requests.get(f"{world.api.url}{path}", auth=("", API_KEY), timeout=30)
    assert basic.status_code == 200


def test_unknown_things_are_404_and_malformed_json_is_400(world: World) -> None:
    for path in (
        "/client/v11/apps/no-such-app/transfers",
        "/client/v11/apps/claims-staging/transfers/99",
        "/client/v11/apps/claims-staging/transfers/99/actions/public-url",
        "/client/v11/databases/no-such-addon",
        "/client/v11/databases/no-such-addon/transfer-schedules",
        "/client/v11/no/such/endpoint",
    ):
        method = "POST" if path.endswith("public-url") else "GET"
        answer = world.api.call(method, path)
        assert answer.status_code == 404, path
        assert answer.json()["id"] == "not_found" and answer.json()["message"]
    for path in (
        f"/client/v11/databases/{world.standard.id}/transfer-schedules",
        f"/client/v11/databases/{world.standard.id}/backups",
    ):
        bad = world.api.call("POST", path, data=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["id"] == "bad_request"


def test_injected_faults_answer_in_the_data_api_error_shape(world: World) -> None:
    world.api.faults.add(service="heroku-data", path="/client/v11/apps/*/transfers", kind="error", status=502)
    answer = world.api.call("GET", "/client/v11/apps/claims-staging/transfers")
    assert answer.status_code == 502 and set(answer.json()) == {"id", "message"}
    world.api.faults.add(service="heroku-data", path="/client/v11/apps/*/transfers", kind="rate_limit")
    limited = world.api.call("GET", "/client/v11/apps/claims-staging/transfers")
    assert limited.status_code == 429 and limited.json()["id"] == "rate_limit"


# -- restart -------------------------------------------------------------------------------------------


def test_transfers_schedules_and_archives_survive_a_restart(world: World, tmp_path: Path) -> None:
    backup = world.api.capture(world.standard)
    path = f"/client/v11/databases/{world.standard.id}/transfer-schedules"
    world.api.call("POST", path, json={"hour": 4, "timezone": "UTC", "schedule_name": "DATABASE_URL"})

    world.api.stop()
    world.api.start()  # same state dir, another port

    again = world.api.call("GET", "/client/v11/apps/claims-staging/transfers/1").json()
    assert (again["uuid"], again["succeeded"], again["processed_bytes"]) == (
        backup["uuid"],
        True,
        backup["processed_bytes"],
    )
    assert again["to_url"].startswith(world.api.url)
    assert [s["hour"] for s in world.api.call("GET", path).json()] == [4]
    url = world.api.call("POST", "/client/v11/apps/claims-staging/transfers/1/actions/public-url").json()[
        "url"
    ]
    download = requests.get(url, timeout=30)
    assert download.status_code == 200
    check_archive(world, download.content, tmp_path)
    assert world.api.capture(world.standard)["num"] == 2
