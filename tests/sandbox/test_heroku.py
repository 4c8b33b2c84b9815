"""The Heroku Platform API stand-in over real HTTP, with heroku3 unchanged and with plain requests.

Each app deployed here is a small tarball made in the test: a Procfile whose ``web:`` runs a tiny
Python server answering its release version, and a ``release:`` command that passes or fails on
demand. The apps really run; their web processes answer on the app's stable ``web_url``.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import heroku3
import pytest
import requests

from sandbox.databases import Databases
from sandbox.faults import Faults
from sandbox.heroku import HerokuPlatform
from sandbox.server import ServiceServer

ACCEPT = "application/vnd.heroku+json; version=3"
DEADLINE = 30.0
APPS = {"staging": "claims-staging", "production": "claims-production"}

SERVER = """\
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        version = os.environ.get("HEROKU_RELEASE_VERSION", "")
        body = (version + " " + os.environ.get("GREETING", "hello")).encode()
        self.send_response(200 if self.path != "/crash" else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/crash":
            os._exit(3)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def make_tarball(files: dict[str, str], top: str = "whisper-claims-0123abc") -> bytes:
    """A gzipped tarball with every file under one top-level folder, like a Bitbucket archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def app_tarball(*, release: str | None = "echo migrating", web: str = "python server.py") -> bytes:
    procfile = f"web: {web}\n" + (f"release: {release}\n" if release else "")
    return make_tarball({"Procfile": procfile, "server.py": SERVER})


def wait_for(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Stand:
    """One Heroku stand-in on its own server, and a requests session speaking to it."""

    def __init__(self, state_dir: Path, *, rate_limit: int = 4500, port: int = 0) -> None:
        self.state_dir = state_dir
        self.server = ServiceServer("heroku", Faults(), port=port)
        self.url = self.server.url
        self.databases = Databases(state_dir / "databases")
        self.platform = HerokuPlatform(
            state_dir / "heroku",
            self.server.url,
            self.databases,
            rate_limit=rate_limit,
            boot_timeout=15.0,
            stop_grace=2.0,
        )
        self.server.start(self.platform.wsgi_app, self.platform.fault_response)
        self.platform.seed(pipeline="claims", apps=APPS)
        self.session = requests.Session()
        self.session.headers.update({"Accept": ACCEPT, "Authorization": f"Bearer {self.platform.api_key}"})

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=10, **kwargs)

    def patch(self, path: str, body: Any) -> requests.Response:
        return self.session.patch(self.url + path, json=body, timeout=10)

    def app_id(self, name: str) -> str:
        return str(self.get(f"/apps/{name}").json()["id"])

    def upload(self, tarball: bytes) -> str:
        """POST /sources and PUT the bytes to put_url; return get_url."""
        created = self.post("/sources", None)
        assert created.status_code == 201, created.text
        blob = created.json()["source_blob"]
        put = requests.put(blob["put_url"], data=tarball, timeout=10)
        assert put.status_code == 200
        return str(blob["get_url"])

    def build(self, app: str, tarball: bytes, version: str, *, checksum: bool = True) -> dict[str, Any]:
        """Upload, build, and wait until the build and its release are done; return the build."""
        url = self.upload(tarball)
        blob = {
            "url": url,
            "checksum": "SHA256:" + hashlib.sha256(tarball).hexdigest() if checksum else None,
            "version": version,
        }
        created = self.post(f"/apps/{app}/builds", {"source_blob": blob})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "pending"
        build_id = created.json()["id"]
        build = wait_for(
            lambda: (b := self.get(f"/apps/{app}/builds/{build_id}").json())["status"] != "pending" and b,
            "the build",
        )
        if build["status"] == "succeeded":
            self.wait_release(app, build["release"]["id"])
        return dict(build)

    def wait_release(self, app: str, release_id: str) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (
                    (r := self.get(f"/apps/{app}/releases/{release_id}").json())["status"] != "pending" and r
                ),
                "the release",
            )
        )

    def close(self, *, keep_databases: bool = False) -> None:
        self.platform.close()
        self.server.stop()
        if not keep_databases:
            self.databases.drop_all()


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    stand = Stand(tmp_path_factory.mktemp("heroku"))
    try:
        yield stand
    finally:
        stand.close()


@pytest.fixture(scope="module")
def h(stand: Stand) -> heroku3.api.Heroku:
    client = heroku3.api.Heroku(session=requests.Session())
    client._heroku_url = stand.url
    assert client.authenticate(stand.platform.api_key)
    return client


# -- heroku3, unchanged -----------------------------------------------------------------------------


def test_heroku3_apps_and_maintenance(stand: Stand, h: heroku3.api.Heroku) -> None:
    names = {a.name for a in h.apps()}
    assert names == set(APPS.values())
    app = h.app("claims-staging")
    assert app.web_url == stand.platform.web_url("claims-staging")
    assert h.app(app.id).name == "claims-staging"
    assert app.enable_maintenance_mode().maintenance is True
    assert stand.get("/apps/claims-staging").json()["maintenance"] is True
    assert app.disable_maintenance_mode().maintenance is False
    assert h.account().email == stand.get("/account").json()["email"]


def test_heroku3_build_releases_rollback_and_runtime(stand: Stand, h: heroku3.api.Heroku) -> None:
    app = h.app("claims-production")
    tarball = app_tarball()
    url = stand.upload(tarball)
    build = app.create_build(url, checksum="SHA256:" + hashlib.sha256(tarball).hexdigest(), version="c" * 40)
    assert build.status == "pending"
    assert wait_for(
        lambda: any(b.id == build.id and b.status == "succeeded" for b in app.builds()), "the build"
    )
    done = stand.get(f"/apps/claims-production/builds/{build.id}").json()
    first = stand.wait_release("claims-production", done["release"]["id"])
    assert first["status"] == "succeeded" and first["description"] == "Deploy cccccccc"

    second = stand.build("claims-production", app_tarball(), "d" * 40)
    second_release = stand.wait_release("claims-production", second["release"]["id"])
    releases = app.releases()
    assert [r.version for r in releases] == sorted(r.version for r in releases)
    assert releases[-1].id == second_release["id"]
    web = stand.platform.web_url("claims-production")
    assert requests.get(web, timeout=5).text.startswith(f"v{second_release['version']} ")

    newest = app.rollback(first["id"])
    assert newest.description == f"Rollback to v{first['version']}"
    rolled = stand.wait_release("claims-production", newest.id)
    assert rolled["status"] == "succeeded" and rolled["slug"]["id"] == first["slug"]["id"]
    assert wait_for(
        lambda: requests.get(web, timeout=5).text.startswith(f"v{rolled['version']} "), "rollback"
    )

    slug = h._get_resource(
        ("apps", "claims-production", "slugs", first["slug"]["id"]), heroku3.models.slug.Slug
    )
    assert slug.commit == "c" * 40

    config = app.config()
    assert config["DATABASE_URL"]
    config.update({"GREETING": "bonjour"})
    assert app.config()["GREETING"] == "bonjour"
    set_release = app.releases()[-1]
    assert set_release.description == "Set GREETING config vars"
    stand.wait_release("claims-production", set_release.id)
    assert wait_for(lambda: "bonjour" in requests.get(web, timeout=5).text, "the new config on web")
    app.update_config({"GREETING": None})
    assert "GREETING" not in app.config()

    formation = app.process_formation()
    assert formation["web"].quantity == 1
    dynos = app.dynos()
    assert [d.name for d in dynos] == ["web.1"] and dynos[0].state == "up"
    scaled = app.scale_formation_process("web", 0)
    assert scaled.quantity == 0
    assert wait_for(lambda: not app.dynos(), "the dyno to stop")
    assert requests.get(web, timeout=5).status_code == 503
    app.batch_scale_formation_processes({"web": 1})
    assert wait_for(lambda: [d.state for d in app.dynos()] == ["up"], "the dyno to come back")

    addons = app.addons()
    assert len(addons) == 1 and addons[0].plan.name.startswith("heroku-postgresql:")
    assert h.rate_limit.remaining > 0


# -- the release path with plain requests -------------------------------------------------------------


def test_build_release_phase_and_web_url(stand: Stand) -> None:
    web = stand.platform.web_url("claims-staging")
    build = stand.build("claims-staging", app_tarball(release="echo migrating the database"), "e" * 40)
    assert build["status"] == "succeeded", requests.get(build["output_stream_url"], timeout=10).text
    log = requests.get(build["output_stream_url"], timeout=10).text
    assert "Procfile declares types -> release, web" in log
    release = stand.wait_release("claims-staging", build["release"]["id"])
    assert release["status"] == "succeeded" and release["current"] is True
    assert "migrating the database" in requests.get(release["output_stream_url"], timeout=10).text
    assert requests.get(web, timeout=5).text == f"v{release['version']} hello"
    slug = stand.get(f"/apps/claims-staging/slugs/{build['slug']['id']}").json()
    assert slug["process_types"] == {"web": "python server.py", "release": "echo migrating the database"}
    assert slug["commit"] == "e" * 40
    assert stand.platform.web_url("claims-staging") == web  # stable across releases


def test_failing_release_phase_keeps_the_previous_release(stand: Stand) -> None:
    web = stand.platform.web_url("claims-staging")
    good = stand.build("claims-staging", app_tarball(), "f" * 40)
    good_release = stand.wait_release("claims-staging", good["release"]["id"])
    bad = stand.build("claims-staging", app_tarball(release="echo migration failed >&2; exit 1"), "0" * 40)
    assert bad["status"] == "succeeded"
    bad_release = stand.wait_release("claims-staging", bad["release"]["id"])
    assert bad_release["status"] == "failed" and bad_release["current"] is False
    assert "migration failed" in requests.get(bad_release["output_stream_url"], timeout=10).text
    current = [r for r in stand.get("/apps/claims-staging/releases").json() if r["current"]]
    assert [r["id"] for r in current] == [good_release["id"]]
    assert requests.get(web, timeout=5).text == f"v{good_release['version']} hello"
    dynos = stand.get("/apps/claims-staging/dynos").json()
    assert dynos[0]["release"] == {"id": good_release["id"], "version": good_release["version"]}


def test_failed_builds_say_why(stand: Stand) -> None:
    no_procfile = stand.build("claims-staging", make_tarball({"app.py": "print(1)"}), "1" * 40)
    assert no_procfile["status"] == "failed" and no_procfile["release"] is None
    assert "No Procfile" in requests.get(no_procfile["output_stream_url"], timeout=10).text
    hook = make_tarball(
        {"Procfile": "web: python server.py\n", "bin/post_compile": "echo compiling; exit 4\n"}
    )
    failed_hook = stand.build("claims-staging", hook, "2" * 40)
    assert failed_hook["status"] == "failed"
    assert (
        "bin/post_compile exited with status 4"
        in requests.get(failed_hook["output_stream_url"], timeout=10).text
    )
    url = stand.upload(app_tarball())
    created = stand.post(
        "/apps/claims-staging/builds", {"source_blob": {"url": url, "checksum": "SHA256:" + "0" * 64}}
    ).json()
    build = wait_for(
        lambda: (
            (b := stand.get(f"/apps/claims-staging/builds/{created['id']}").json())["status"] != "pending"
            and b
        ),
        "the build",
    )
    assert build["status"] == "failed"
    assert "Checksum mismatch" in requests.get(build["output_stream_url"], timeout=10).text


def test_promotion_copies_the_slug(stand: Stand) -> None:
    build = stand.build("claims-staging", app_tarball(), "3" * 40)
    source = stand.wait_release("claims-staging", build["release"]["id"])
    pipeline = stand.get("/pipelines/claims").json()
    couplings = stand.get(f"/pipelines/{pipeline['id']}/pipeline-couplings").json()
    assert {c["stage"] for c in couplings} == {"staging", "production"}
    staging_id, production_id = stand.app_id("claims-staging"), stand.app_id("claims-production")
    assert stand.get("/apps/claims-production/pipeline-couplings").json()["stage"] == "production"
    created = stand.post(
        "/pipeline-promotions",
        {
            "pipeline": {"id": pipeline["id"]},
            "source": {"app": {"id": staging_id}},
            "targets": [{"app": {"id": production_id}}],
        },
    )
    assert created.status_code == 201, created.text
    promotion = created.json()
    assert promotion["source"]["release"]["id"] == source["id"]
    wait_for(
        lambda: stand.get(f"/pipeline-promotions/{promotion['id']}").json()["status"] == "completed",
        "promotion",
    )
    [target] = stand.get(f"/pipeline-promotions/{promotion['id']}/promotion-targets").json()
    assert target["status"] == "succeeded" and target["error_message"] is None
    release = stand.get(f"/apps/claims-production/releases/{target['release']['id']}").json()
    assert release["slug"]["id"] == source["slug"]["id"]
    assert release["description"] == f"Promote claims-staging v{source['version']}"
    web = stand.platform.web_url("claims-production")
    assert requests.get(web, timeout=5).text.startswith(f"v{release['version']} ")


def test_release_pagination(stand: Stand) -> None:
    total = len(stand.get("/apps/claims-staging/releases", headers={"Range": "version ..; max=1000"}).json())
    assert total >= 3
    first = stand.get("/apps/claims-staging/releases", headers={"Range": "version ..; max=2, order=desc"})
    assert first.status_code == 206
    versions = [r["version"] for r in first.json()]
    assert versions == sorted(versions, reverse=True) and len(versions) == 2
    next_range = first.headers["Next-Range"]
    seen = list(versions)
    while next_range:
        more = stand.get("/apps/claims-staging/releases", headers={"Range": next_range})
        assert more.status_code in (200, 206)
        seen += [r["version"] for r in more.json()]
        next_range = more.headers.get("Next-Range", "")
        if more.status_code == 200:
            assert not next_range
    assert seen == sorted(seen, reverse=True) and len(seen) == total
    odd = stand.get("/apps/claims-staging/releases", headers={"Range": "version ..; ;"})
    assert odd.status_code == 200 and len(odd.json()) == total
    by_version = stand.get("/apps/claims-staging/releases/1").json()
    assert by_version["version"] == 1 and by_version["description"] == "Initial release"
    bad = stand.get("/apps/claims-staging/releases", headers={"Range": "colour ..;"})
    assert bad.status_code == 416 and bad.json()["id"] == "requested_range_not_satisfiable"


def test_errors_have_heroku_bodies(stand: Stand) -> None:
    plain = requests.get(stand.url + "/apps", headers={"Accept": "application/json"}, timeout=5)
    assert plain.status_code == 406 and plain.json()["id"] == "not_acceptable"
    for accept in (
        "application/vnd.heroku+json; version=3.cedar-acm",
        "application/vnd.heroku+json; version=3.sdk",
    ):
        assert stand.get("/apps", headers={"Accept": accept}).status_code == 200
    anonymous = requests.get(stand.url + "/apps", headers={"Accept": ACCEPT}, timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["id"] == "unauthorized"
    wrong = requests.get(stand.url + "/apps", headers={"Accept": ACCEPT}, auth=("", "nope"), timeout=5)
    assert wrong.status_code == 401
    basic = requests.get(stand.url + "/apps", headers={"Accept": ACCEPT}, auth=("", stand.platform.api_key))
    assert basic.status_code == 200
    for response in (anonymous, basic):
        assert response.headers["RateLimit-Remaining"].isdigit() and response.headers["Request-Id"]
    missing = stand.get("/apps/no-such-app")
    assert missing.status_code == 404 and missing.json() == {
        "id": "not_found",
        "message": "Couldn't find that app.",
        "resource": "app",
    }
    assert stand.get("/apps/claims-staging/releases/999").json()["resource"] == "release"
    assert stand.get("/no/such/endpoint").json()["id"] == "not_found"
    malformed = stand.session.post(stand.url + "/apps/claims-staging/builds", data="{not json", timeout=5)
    assert malformed.status_code == 400 and malformed.json()["id"] == "bad_request"
    no_blob = stand.post("/apps/claims-staging/builds", {})
    assert no_blob.status_code == 422 and no_blob.json()["id"] == "invalid_params"
    assert "source_blob" in no_blob.json()["message"]
    no_url = stand.post("/apps/claims-staging/builds", {"source_blob": {"checksum": None}})
    assert "source_blob.url" in no_url.json()["message"]
    no_slug = stand.post("/apps/claims-staging/releases", {})
    assert no_slug.status_code == 422 and "slug" in no_slug.json()["message"]
    bad_config = stand.patch("/apps/claims-staging/config-vars", {"A": 1})
    assert bad_config.status_code == 422 and "A" in bad_config.json()["message"]
    bad_promotion = stand.post("/pipeline-promotions", {"pipeline": {"id": "x"}})
    assert bad_promotion.status_code == 422 and "pipeline.id" in bad_promotion.json()["message"]


def test_crashed_dyno_is_reported(stand: Stand) -> None:
    build = stand.build("claims-staging", app_tarball(release=None), "4" * 40)
    stand.wait_release("claims-staging", build["release"]["id"])
    web = stand.platform.web_url("claims-staging")
    requests.get(web + "crash", timeout=5)
    wait_for(lambda: stand.get("/apps/claims-staging/dynos/web.1").json()["state"] == "crashed", "the crash")
    down = requests.get(web, timeout=5)
    assert down.status_code == 503 and "Application Error" in down.text
    assert down.headers["X-Heroku-Error"].startswith("H10")
    restarted = stand.session.delete(stand.url + "/apps/claims-staging/dynos", timeout=5)
    assert restarted.status_code == 202
    wait_for(lambda: stand.get("/apps/claims-staging/dynos/web.1").json()["state"] == "up", "the restart")
    assert requests.get(web, timeout=5).status_code == 200


def test_rate_limit_runs_out(tmp_path: Path) -> None:
    small = Stand(tmp_path, rate_limit=5)
    try:
        statuses = [small.get("/apps").status_code for _ in range(8)]
        assert statuses[0] == 200 and statuses[-1] == 429
        limited = small.get("/apps")
        assert limited.status_code == 429 or int(limited.headers["RateLimit-Remaining"]) < 2  # refilled one
        if limited.status_code == 429:
            assert limited.json()["id"] == "rate_limit"
        free = small.get("/account/rate-limits")  # costs nothing, answers even when out of budget
        assert free.status_code == 200 and free.json()["remaining"] < 2
        client = heroku3.api.Heroku(session=requests.Session())
        client._heroku_url = small.url
        client.authenticate(small.platform.api_key)
        with pytest.raises(heroku3.api.RateLimitExceeded):
            client.apps()
    finally:
        small.close()


def test_restart_on_the_same_state_dir(tmp_path: Path) -> None:
    first = Stand(tmp_path)
    try:
        build = first.build("claims-staging", app_tarball(), "5" * 40)
        release = first.wait_release("claims-staging", build["release"]["id"])
        web = first.platform.web_url("claims-staging")
        key = first.platform.api_key
        port = first.server.port
    finally:
        first.close(keep_databases=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(web, timeout=2)
    second = Stand(tmp_path, port=port)
    try:
        second.platform.start_runtime()
        assert second.platform.api_key == key
        assert second.platform.web_url("claims-staging") == web
        assert requests.get(web, timeout=5).text == f"v{release['version']} hello"
        again = second.get(f"/apps/claims-staging/releases/{release['id']}").json()
        assert again["current"] is True and again["status"] == "succeeded"
        assert requests.get(again["output_stream_url"], timeout=10).text.startswith("migrating")
    finally:
        second.close()


# -- what the heroku CLI relies on beyond the schema ------------------------------------------------


def test_couplings_name_their_pipeline_and_pipelines_filter_by_name(stand: Stand) -> None:
    coupling = stand.get("/apps/claims-staging/pipeline-couplings").json()
    assert coupling["pipeline"]["name"] == "claims"  # `pipelines:promote` prints "Fetching apps from claims"
    found = stand.get("/pipelines", params={"eq[name]": "claims"})
    assert [p["name"] for p in found.json()] == ["claims"]
    assert stand.get("/pipelines", params={"eq[name]": "other"}).json() == []
    assert stand.get("/pipelines", params={"eq[color]": "red"}).status_code == 422


def test_filters_apps_lists_the_apps_asked_for(stand: Stand) -> None:
    staging = stand.app_id("claims-staging")
    answer = stand.post("/filters/apps", {"in": {"id": [staging, "7f0b9c1e-0000-4000-8000-000000000000"]}})
    assert answer.status_code == 200, answer.text
    assert [a["name"] for a in answer.json()] == ["claims-staging"]
    assert stand.post("/filters/apps", {}).status_code == 422


def test_addon_attachments_and_their_resolver(stand: Stand) -> None:
    [attachment] = stand.get("/apps/claims-production/addon-attachments").json()
    assert attachment["name"] == "DATABASE" and attachment["app"]["name"] == "claims-production"
    assert "config_vars" not in attachment and "plan" not in attachment["addon"]
    assert stand.get(f"/addon-attachments/{attachment['id']}").json() == attachment
    assert stand.get("/apps/claims-production/addon-attachments/DATABASE").json() == attachment
    assert len(stand.get("/addon-attachments").json()) == 2

    # the pg commands resolve DATABASE_URL to an attachment, asking for the plan and config vars
    inclusion = {"Accept-Inclusion": "addon:plan,config_vars"}
    resolved = stand.post(
        "/actions/addon-attachments/resolve",
        {"addon_attachment": "DATABASE_URL", "app": "claims-production"},
        headers=inclusion,
    )
    assert resolved.status_code == 200, resolved.text
    [found] = resolved.json()
    assert found["id"] == attachment["id"]
    assert found["config_vars"] == ["DATABASE_URL"]
    assert found["addon"]["plan"]["name"] == "heroku-postgresql:standard-0"
    by_addon = stand.post(
        "/actions/addon-attachments/resolve", {"addon_attachment": attachment["addon"]["name"]}
    )
    assert [a["id"] for a in by_addon.json()] == [attachment["id"]]
    missing = stand.post(
        "/actions/addon-attachments/resolve", {"addon_attachment": "REDIS", "app": "claims-production"}
    )
    assert missing.status_code == 404 and missing.json()["id"] == "not_found"
    assert stand.post("/actions/addon-attachments/resolve", {}).status_code == 422


def test_addons_expand_service_and_plan_on_request(stand: Stand) -> None:
    [plain] = stand.get("/apps/claims-staging/addons").json()
    assert set(plain["plan"]) == {"id", "name"}
    [expanded] = stand.get(
        "/apps/claims-staging/addons", headers={"Accept-Expansion": "addon_service,plan"}
    ).json()
    assert expanded["plan"]["price"] == {"cents": 5000, "contract": False, "unit": "month", "metered": False}
    assert expanded["addon_service"]["human_name"] == "Heroku Postgres"


def test_releases_without_a_slug_are_not_eligible_for_rollback(stand: Stand) -> None:
    first = stand.get("/apps/claims-production/releases/1").json()
    assert first["description"] == "Initial release" and first["slug"] is None
    assert first["eligible_for_rollback"] is False
    refused = stand.post("/apps/claims-production/releases", {"release": first["id"]})
    assert refused.status_code == 422
    assert refused.json()["id"] == "invalid_params" and "release" in refused.json()["message"]
