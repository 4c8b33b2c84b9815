"""``HerokuBackups`` against the sandbox's Heroku Data API (and its Platform API, for the add-on)
over real HTTP: capture a real backup of claims-staging's database and wait for it, list it, read
it by number, name and uuid; the CLI's status and name rules; error translation."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from adapter_support import assert_secret_free, poll

from pipeline.adapters import heroku_data
from pipeline.adapters.heroku_data import HerokuBackups
from pipeline.errors import NotFound, Permanent, Temporary
from sandbox.core import Sandbox

APP = "claims-staging"


def adapter(info: dict[str, Any], key: str, timeout: float = 10.0) -> HerokuBackups:
    return HerokuBackups(info["heroku"]["data_url"], info["heroku"]["url"], key, timeout=timeout)


@pytest.fixture
def backups(info: dict[str, Any], key: str) -> HerokuBackups:
    return adapter(info, key)


def test_capture_wait_list_and_read_by_number_name_and_uuid(backups: HerokuBackups) -> None:
    started = backups.capture(APP)
    assert started.status in ("pending", "running")
    assert started.name == f"b{started.num:03d}" and started.finished_at is None
    assert started.database == "DATABASE" and started.created_at.tzinfo is not None

    done = poll(
        "the backup",
        lambda: backups.backup(APP, started.id),
        lambda b: b.status not in ("pending", "running"),
    )
    assert done.status == "completed", done.logs
    assert done.size_bytes > 0 and done.logs
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert done.finished_at.utcoffset() == UTC.utcoffset(None)

    by_num = backups.backup(APP, str(done.num))
    by_name = backups.backup(APP, done.name)
    assert by_num == by_name == done

    listed = backups.backups(APP)
    assert listed[0].id == done.id  # newest first
    nums = [b.num for b in listed]
    assert nums == sorted(nums, reverse=True)
    assert all(
        b.name[0] in "ab" and b.status in ("pending", "running", "completed", "failed") for b in listed
    )
    assert listed[0] == dataclasses.replace(done, logs=())  # the list has no logs; the rest agrees


def test_missing_backups_and_apps_are_not_found(backups: HerokuBackups, key: str) -> None:
    for call in (
        lambda: backups.backup(APP, "987654"),
        lambda: backups.backup(APP, str(uuid.uuid4())),
        lambda: backups.backups("no-such-app"),
        lambda: backups.capture("no-such-app"),
    ):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.status == 404
        assert_secret_free(caught.value, key)


def test_a_refused_key_is_permanent_and_names_the_variable_not_the_key(info: dict[str, Any]) -> None:
    bad = "HRKU-bad-0000-1111-2222-333344445555"
    for call in (lambda b: b.backups(APP), lambda b: b.capture(APP)):
        with pytest.raises(Permanent) as caught:
            call(adapter(info, bad))
        assert caught.value.status == 401 and "HEROKU_API_KEY" in str(caught.value)
        assert_secret_free(caught.value, bad)
    assert bad not in repr(adapter(info, bad))


def test_injected_faults_are_temporary(sandbox: Sandbox, info: dict[str, Any], key: str) -> None:
    backups = adapter(info, key, timeout=1.0)
    transfers = f"/client/v11/apps/{APP}/transfers"
    sandbox.faults.add(service="heroku-data", path=transfers, kind="error", status=503)
    with pytest.raises(Temporary) as unavailable:
        backups.backups(APP)
    assert unavailable.value.status == 503 and unavailable.value.retry_after > 0

    sandbox.faults.add(service="heroku-data", path="/client/v11/databases/*/backups", kind="rate_limit")
    with pytest.raises(Temporary) as limited:
        backups.capture(APP)
    assert limited.value.status == 429 and limited.value.retry_after >= 1

    sandbox.faults.add(service="heroku", path=f"/apps/{APP}/addons", kind="error", status=500)
    with pytest.raises(Temporary) as platform:  # the add-on lookup, on the Platform API
        backups.capture(APP)
    assert platform.value.status == 500

    sandbox.faults.add(service="heroku-data", path=transfers, kind="slow", delay=2.5)
    with pytest.raises(Temporary) as slow:
        backups.backups(APP)
    sandbox.faults.add(service="heroku-data", path=transfers, kind="drop")
    with pytest.raises(Temporary) as dropped:
        backups.backups(APP)
    for caught in (unavailable, limited, platform, slow, dropped):
        assert_secret_free(caught.value, key)
    assert isinstance(backups.backups(APP), list)


@pytest.mark.parametrize(
    ("transfer", "status", "name"),
    [
        ({"num": 7}, "pending", "b007"),
        ({"num": 7, "started_at": "2026-11-24 07:54:24 +0000"}, "running", "b007"),
        ({"num": 12, "started_at": "x", "finished_at": "y", "succeeded": True}, "completed", "b012"),
        ({"num": 12, "started_at": "x", "finished_at": "y", "succeeded": False}, "failed", "b012"),
        ({"num": 3, "finished_at": "y", "canceled_at": "y", "succeeded": False}, "failed", "b003"),
        ({"num": 1234, "schedule": {"uuid": "s"}}, "pending", "a1234"),
    ],
)
def test_status_and_name_as_the_cli_computes_them(transfer: dict[str, Any], status: str, name: str) -> None:
    assert heroku_data.status(transfer) == status
    assert heroku_data.name(transfer) == name


def test_data_api_timestamps_are_read_as_utc() -> None:
    parsed = heroku_data.backup(
        {
            "uuid": "u",
            "num": 1,
            "created_at": "2026-11-24 07:54:24 +0000",
            "finished_at": "2026-11-24 09:54:30 +0200",
            "succeeded": True,
            "processed_bytes": 42,
            "from_name": "DATABASE",
            "to_type": "gof3r",
        }
    )
    assert parsed.created_at == datetime(2026, 11, 24, 7, 54, 24, tzinfo=UTC)
    assert parsed.finished_at == datetime(2026, 11, 24, 7, 54, 30, tzinfo=UTC)
    assert parsed.size_bytes == 42 and parsed.status == "completed"


def test_public_url_by_uuid_number_and_name_downloads_the_archive_and_stays_out_of_errors(
    backups: HerokuBackups, info: dict[str, Any]
) -> None:
    from urllib.parse import parse_qs, urlsplit  # here, not at the top: this test was appended

    import requests

    from pipeline.adapters import http

    started = backups.capture(APP)
    done = poll(
        "the backup",
        lambda: backups.backup(APP, started.id),
        lambda b: b.status not in ("pending", "running"),
    )
    assert done.status == "completed", done.logs

    for ident in (done.id, str(done.num), done.name):
        url = backups.public_url(APP, ident)
        assert url.startswith(info["heroku"]["data_url"]) and "signature=" in url
        archive = requests.get(url, timeout=10)
        assert archive.status_code == 200 and len(archive.content) == done.size_bytes
        signature = parse_qs(urlsplit(url).query)["signature"][0]
        assert signature not in http.redact(f"download of {url} failed")  # the scrubber knows its shape
    garbled = url.replace(signature, "0" * len(signature))
    assert requests.get(garbled, timeout=10).status_code == 403

    for missing in ("987654", "b987654", str(uuid.uuid4())):
        with pytest.raises(NotFound):
            backups.public_url(APP, missing)
    with pytest.raises(Permanent) as refused:
        adapter(info, "HRKU-bad-0000-1111-2222-333344445555").public_url(APP, str(done.num))
    assert refused.value.status == 401 and "HEROKU_API_KEY" in str(refused.value)
    assert signature not in str(refused.value) and url not in str(refused.value)
