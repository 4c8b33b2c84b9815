"""Every response of the release path validates against its link's targetSchema in Heroku's own
JSON hyper-schema (``../shared/contracts/heroku-platform-api.schema.json``), and carries every
property the resource's definition lists.

The schema is draft 4 with interagent extensions: ``strictProperties`` (a hyper-schema keyword that
jsonschema ignores) is checked here by hand: each object the schema marks strict, and each
resource itself, must carry every property listed.

One deliberate deviation is accepted and checked instead: an app's ``web_url`` is the stand-in's
router on loopback (``http://127.0.0.1:<port>/``), which Heroku's pattern
(``https://<name>.herokuapp.com/``) cannot describe; it is validated as such a URL, and the rest of
the app against the schema with the URL Heroku would give.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from sandbox.databases import Databases
from sandbox.faults import Faults
from sandbox.heroku import HerokuPlatform
from sandbox.server import ServiceServer

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "heroku-platform-api.schema.json"
ACCEPT = "application/vnd.heroku+json; version=3"
LOOPBACK_WEB_URL = re.compile(r"^http://127\.0\.0\.1:\d+/$")

pytestmark = pytest.mark.skipif(
    not SCHEMA_PATH.is_file(),
    reason=f"Heroku's schema is not at {SCHEMA_PATH} (../shared is absent beside the repository)",
)


def _tarball() -> bytes:
    files = {
        "Procfile": "web: python -m http.server $PORT --bind 127.0.0.1\nrelease: echo release phase\n",
        "index.html": "hello",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"src/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Contract:
    """Heroku's hyper-schema: find the link for a request, validate a response against it."""

    def __init__(self, path: Path) -> None:
        self.root: dict[str, Any] = json.loads(path.read_text())
        self.links: list[tuple[str, re.Pattern[str], str, dict[str, Any]]] = []
        for name, definition in self.root["definitions"].items():
            for link in definition.get("links", []):
                if "targetSchema" not in link:
                    continue
                pattern = re.sub(r"\\\{\\\([^)]*\\\)\\\}", "[^/]+", re.escape(link["href"]))
                self.links.append((link["method"], re.compile(f"^{pattern}$"), name, link))

    def link(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        found = [(name, link) for m, rx, name, link in self.links if m == method and rx.match(path)]
        # a literal segment beats a template one (GET /account/rate-limits vs /account/{id})
        found.sort(key=lambda f: f[1]["href"].count("{"))
        assert found, f"no link in Heroku's schema for {method} {path}"
        return found[0]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.root
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def check(self, method: str, path: str, body: Any) -> str:
        """Validate ``body`` against the link's targetSchema; return the resource name."""
        name, link = self.link(method, path)
        target = link["targetSchema"]
        body = json.loads(json.dumps(body))
        items = body if isinstance(body, list) else [body]
        for item in items:
            if isinstance(item, dict) and "web_url" in item and "git_url" in item:  # an app
                assert LOOPBACK_WEB_URL.match(item["web_url"]), item["web_url"]
                item["web_url"] = f"https://{item['name']}.herokuapp.com/"
        schema = {"definitions": self.root["definitions"], **target}
        validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {path}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )
        item_schema = self.resolve(target.get("items", target) if isinstance(body, list) else target)
        for item in items:
            self._strict(item_schema, item, f"{method} {path}", top=True)
        return name

    def _strict(self, schema: dict[str, Any], value: Any, where: str, *, top: bool = False) -> None:
        schema = self.resolve(schema)
        if not isinstance(value, dict) or "properties" not in schema:
            return
        if top or schema.get("strictProperties"):
            missing = sorted(set(schema["properties"]) - set(value))
            assert not missing, f"{where}: missing properties {missing}"
        for key, sub in schema["properties"].items():
            if key in value:
                self._strict(sub, value[key], f"{where} .{key}")


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(SCHEMA_PATH)


@pytest.fixture(scope="module")
def heroku(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, HerokuPlatform]]:
    state = tmp_path_factory.mktemp("heroku-schema")
    server = ServiceServer("heroku", Faults())
    databases = Databases(state / "databases")
    platform = HerokuPlatform(state / "heroku", server.url, databases, stop_grace=2.0)
    server.start(platform.wsgi_app, platform.fault_response)
    try:
        platform.seed(
            pipeline="claims", apps={"staging": "claims-staging", "production": "claims-production"}
        )
        platform.deploy("claims-staging", _tarball(), "a" * 40)
        yield server.url, platform
    finally:
        platform.close()
        server.stop()
        databases.drop_all()


def test_release_path_responses_match_the_schema(
    contract: Contract, heroku: tuple[str, HerokuPlatform]
) -> None:
    url, platform = heroku
    session = requests.Session()
    session.headers.update({"Accept": ACCEPT, "Authorization": f"Bearer {platform.api_key}"})
    checked: set[str] = set()

    def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = session.request(method, url + path, json=body, timeout=10)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        assert response.headers["Content-Type"].startswith("application/json")
        data = response.json()
        checked.add(contract.check(method, path, data))
        return data

    def settle(path: str, field: str = "status", pending: str = "pending") -> Any:
        end = time.monotonic() + 30
        while (data := session.get(url + path, timeout=10).json())[field] == pending:
            assert time.monotonic() < end, f"{path} stayed {pending}"
            time.sleep(0.1)
        return data

    call("GET", "/account")
    call("GET", "/account/rate-limits")
    call("GET", "/apps")
    staging = call("GET", "/apps/claims-staging")
    call("GET", f"/apps/{staging['id']}")
    production = call("GET", "/apps/claims-production")
    call("PATCH", "/apps/claims-staging", {"maintenance": False})

    source = call("POST", "/sources", None, 201)
    tarball = _tarball()
    requests.put(source["source_blob"]["put_url"], data=tarball, timeout=10).raise_for_status()
    blob = {
        "url": source["source_blob"]["get_url"],
        "checksum": "SHA256:" + hashlib.sha256(tarball).hexdigest(),
        "version": "b" * 40,
    }
    build = call("POST", "/apps/claims-staging/builds", {"source_blob": blob}, 201)
    build = settle(f"/apps/claims-staging/builds/{build['id']}")
    call("GET", f"/apps/claims-staging/builds/{build['id']}")
    call("GET", "/apps/claims-staging/builds")
    slow = call("POST", "/apps/claims-staging/builds", {"source_blob": {**blob, "checksum": None}}, 201)
    canceled = session.delete(url + f"/apps/claims-staging/builds/{slow['id']}", timeout=10)
    if canceled.status_code == 200:  # it may have finished already (409 then)
        checked.add(contract.check("DELETE", f"/apps/claims-staging/builds/{slow['id']}", canceled.json()))
    settle(f"/apps/claims-staging/builds/{slow['id']}")

    release = settle(f"/apps/claims-staging/releases/{build['release']['id']}")
    call("GET", f"/apps/claims-staging/releases/{release['id']}")
    call("GET", f"/apps/claims-staging/releases/{release['version']}")
    call("GET", "/apps/claims-staging/releases")
    call("GET", f"/apps/claims-staging/slugs/{release['slug']['id']}")
    created = call("POST", "/apps/claims-staging/releases", {"slug": release["slug"]["id"]}, 201)
    settle(f"/apps/claims-staging/releases/{created['id']}")
    rollback = call("POST", "/apps/claims-staging/releases", {"release": release["id"]}, 201)
    settle(f"/apps/claims-staging/releases/{rollback['id']}")

    call("GET", "/apps/claims-staging/config-vars")
    call("PATCH", "/apps/claims-staging/config-vars", {"SCHEMA_CHECK": "1"})
    call("GET", "/apps/claims-staging/formation")
    call("GET", "/apps/claims-staging/formation/web")
    call("PATCH", "/apps/claims-staging/formation", {"updates": [{"type": "web", "quantity": 1}]})
    call("PATCH", "/apps/claims-staging/formation/web", {"quantity": 1})
    call("GET", "/apps/claims-staging/dynos")
    call("GET", "/apps/claims-staging/dynos/web.1")
    addons = call("GET", "/apps/claims-staging/addons")
    call("GET", f"/apps/claims-staging/addons/{addons[0]['id']}")
    call("GET", f"/addons/{addons[0]['name']}")
    # the CLI's pg commands reach the database through its attachment (DATABASE_URL -> DATABASE)
    attachments = call("GET", "/apps/claims-staging/addon-attachments")
    call("GET", "/addon-attachments")
    call("GET", f"/addon-attachments/{attachments[0]['id']}")
    call("GET", "/apps/claims-staging/addon-attachments/DATABASE")
    call("GET", f"/addons/{addons[0]['id']}/addon-attachments")
    resolve = {"addon_attachment": "DATABASE_URL", "app": "claims-staging"}
    call("POST", "/actions/addon-attachments/resolve", resolve)

    pipeline = call("GET", "/pipelines/claims")
    call("GET", f"/pipelines/{pipeline['id']}")
    call("GET", f"/pipelines/{pipeline['id']}/pipeline-couplings")
    call("GET", "/pipeline-couplings")
    call("GET", "/apps/claims-production/pipeline-couplings")
    call("POST", "/filters/apps", {"in": {"id": [staging["id"], production["id"]]}})
    promotion = call(
        "POST",
        "/pipeline-promotions",
        {
            "pipeline": {"id": pipeline["id"]},
            "source": {"app": {"id": staging["id"]}},
            "targets": [{"app": {"id": production["id"]}}],
        },
        201,
    )
    settle(f"/pipeline-promotions/{promotion['id']}")
    call("GET", f"/pipeline-promotions/{promotion['id']}")
    call("GET", f"/pipeline-promotions/{promotion['id']}/promotion-targets")

    release_path = {
        "account",
        "rate-limit",
        "app",
        "source",
        "build",
        "release",
        "slug",
        "config-var",
        "formation",
        "dyno",
        "add-on",
        "add-on-attachment",
        "pipeline",
        "pipeline-coupling",
        "pipeline-promotion",
        "pipeline-promotion-target",
        "filter-apps",
    }
    assert checked == release_path
