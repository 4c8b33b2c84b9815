"""One change through the stand-ins by API alone, the way the release controller will move it:
feature commit -> pull request into develop -> merge -> archive -> source upload -> build ->
release (release phase) -> /health on web_url -> promotion -> backup -> backup download."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from sandbox.core import Sandbox

HEROKU_ACCEPT = "application/vnd.heroku+json; version=3"


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_change_travels_from_a_feature_branch_to_a_production_backup(sandbox: Sandbox) -> None:
    info = sandbox.info()
    bb_api = info["bitbucket"]["api"]
    repo = f"{bb_api}/repositories/whisper/claims"
    bb = info["bitbucket"]
    dev = requests.Session()
    dev.auth = (bb["emails"]["dev"], bb["users"]["dev"])
    controller = requests.Session()
    controller.auth = (bb["emails"]["controller"], bb["users"]["controller"])
    heroku = requests.Session()
    heroku.headers.update({"Authorization": f"Bearer {info['heroku']['api_key']}", "Accept": HEROKU_ACCEPT})
    hk = info["heroku"]["url"]
    data = info["heroku"]["data_url"]

    # 1. A developer commits on a feature branch through POST /src and merges it into develop.
    develop = dev.get(f"{repo}/refs/branches/develop").json()["target"]["hash"]
    marker = f"travelled-{int(time.time() * 1000)}"
    r = dev.post(
        f"{repo}/src",
        data={
            "message": "Say where the change travelled",
            "branch": "feature/travel",
            "parents": develop,
            "author": "Dev <dev@whisper.example>",
            "TRAVEL.txt": marker,
        },
    )
    assert r.status_code == 201, r.text
    pr = dev.post(
        f"{repo}/pullrequests",
        json={
            "title": "Travel",
            "source": {"branch": {"name": "feature/travel"}},
            "destination": {"branch": {"name": "develop"}},
        },
    )
    assert pr.status_code == 201, pr.text
    merged = dev.post(f"{repo}/pullrequests/{pr.json()['id']}/merge", json={"merge_strategy": "merge_commit"})
    assert merged.status_code == 200, merged.text
    assert merged.json()["state"] == "MERGED"
    head = dev.get(f"{repo}/refs/branches/develop").json()["target"]["hash"]
    assert len(head) == 40 and head != develop
    assert merged.json()["merge_commit"]["hash"] == head[:12]

    # 2. The controller downloads that exact commit's archive with its own credentials (from the
    #    website host, as from bitbucket.org).
    archive = controller.get(f"{bb['web_url']}/whisper/claims/get/{head}.tar.gz")
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        names = tar.getnames()
    assert any(n.endswith("/TRAVEL.txt") for n in names) and any(n.endswith("/Procfile") for n in names)

    # 3. Upload it as a source, build it on staging with version = the commit.
    source = heroku.post(f"{hk}/sources")
    assert source.status_code == 201, source.text
    blob = source.json()["source_blob"]
    assert requests.put(blob["put_url"], data=archive.content).status_code == 200
    build = heroku.post(
        f"{hk}/apps/claims-staging/builds",
        json={"source_blob": {"url": blob["get_url"], "version": head, "checksum": None}},
    )
    assert build.status_code == 201, build.text
    build_id = build.json()["id"]
    done = wait_for(
        "the staging build",
        lambda: (
            (b := heroku.get(f"{hk}/apps/claims-staging/builds/{build_id}").json())["status"] != "pending"
            and b
        ),
    )
    assert done["status"] == "succeeded", requests.get(done["output_stream_url"]).text
    release_id = done["release"]["id"]
    release = wait_for(
        "the staging release phase",
        lambda: (
            (rel := heroku.get(f"{hk}/apps/claims-staging/releases/{release_id}").json())["status"]
            != "pending"
            and rel
        ),
    )
    assert release["status"] == "succeeded"
    assert release["current"] is True
    release_log = requests.get(release["output_stream_url"]).text
    assert "migration" in release_log.lower()

    # 4. The web process answers /health on the app's stable web_url, running that commit.
    staging_url = heroku.get(f"{hk}/apps/claims-staging").json()["web_url"]
    health = wait_for(
        "staging /health to report the new commit",
        lambda: (
            (h := requests.get(f"{staging_url.rstrip('/')}/health", timeout=5)).ok
            and h.json().get("commit") == head
            and h
        ),
    )
    assert health.json()["status"] == "ok"

    # 5. Promote the very slug to production through the pipeline.
    pipeline = heroku.get(f"{hk}/apps/claims-staging/pipeline-couplings").json()["pipeline"]["id"]
    staging = heroku.get(f"{hk}/apps/claims-staging").json()
    production = heroku.get(f"{hk}/apps/claims-production").json()
    promotion = heroku.post(
        f"{hk}/pipeline-promotions",
        json={
            "pipeline": {"id": pipeline},
            "source": {"app": {"id": staging["id"]}, "release": {"id": release_id}},
            "targets": [{"app": {"id": production["id"]}}],
        },
    )
    assert promotion.status_code == 201, promotion.text
    promotion_id = promotion.json()["id"]
    wait_for(
        "the promotion",
        lambda: heroku.get(f"{hk}/pipeline-promotions/{promotion_id}").json()["status"] == "completed",
    )
    (target,) = heroku.get(f"{hk}/pipeline-promotions/{promotion_id}/promotion-targets").json()
    assert target["status"] == "succeeded", target
    prod_release = heroku.get(f"{hk}/apps/claims-production/releases/{target['release']['id']}").json()
    assert prod_release["slug"]["id"] == release["slug"]["id"]  # build once: the same slug
    wait_for(
        "production /health to report the new commit",
        lambda: (
            (h := requests.get(f"{production['web_url'].rstrip('/')}/health", timeout=5)).ok
            and h.json().get("commit") == head
        ),
    )

    # 6. Capture a production backup and download it through its short-lived public URL.
    (addon,) = heroku.get(f"{hk}/apps/claims-production/addons").json()
    capture = heroku.post(f"{data}/client/v11/databases/{addon['id']}/backups", json={})
    assert capture.status_code in (200, 201), capture.text
    num = capture.json()["num"]
    transfer = wait_for(
        "the backup",
        lambda: (
            (t := heroku.get(f"{data}/client/v11/apps/claims-production/transfers/{num}").json())[
                "finished_at"
            ]
            and t
        ),
    )
    assert transfer["succeeded"] is True, transfer.get("logs")
    assert transfer["processed_bytes"] > 0
    url = heroku.post(f"{data}/client/v11/apps/claims-production/transfers/{num}/actions/public-url").json()[
        "url"
    ]
    dump = requests.get(url)
    assert dump.status_code == 200 and len(dump.content) == transfer["processed_bytes"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backup.dump"
        path.write_bytes(dump.content)
        if sandbox.databases is not None and sandbox.databases.kind == "postgres":
            listing = subprocess.run(["pg_restore", "--list", str(path)], capture_output=True, text=True)
            assert listing.returncode == 0, listing.stderr
            assert "schema_migrations" in listing.stdout
        else:
            tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
            assert ("schema_migrations",) in tables
