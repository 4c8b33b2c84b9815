"""Webhooks into a running ``pipeline serve`` (a real process): a genuine delivery starts a pass at
once; anything else is answered and does nothing. The poll interval is an hour, so every pass seen
here was started by a delivery."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_support import Served, edited_config, ok, pipeline, serving
from e2e_world import World, wait_until

from pipeline.model import State
from pipeline.web.webhooks import signature

GOOD = {"CHANGELOG.md": b"- Claims can carry a note\n"}


def push_payload(commit: str, repository: str = "whisper/claims") -> bytes:
    return json.dumps(
        {
            "actor": {"nickname": "dev"},
            "repository": {"type": "repository", "full_name": repository, "name": repository.split("/")[1]},
            "push": {"changes": [{"new": {"type": "branch", "name": "develop", "target": {"hash": commit}}}]},
        }
    ).encode()


def post(
    served: Served,
    body: bytes,
    *,
    secret: str | None,
    event: str = "repo:push",
    request_uuid: str | None = None,
    chunked: bool = False,
) -> requests.Response:
    assert served.webhook_url is not None
    headers = {"Content-Type": "application/json", "X-Event-Key": event, "X-Attempt-Number": "1"}
    headers["X-Request-UUID"] = request_uuid or str(uuid.uuid4())
    if secret is not None:
        headers["X-Hub-Signature"] = signature(secret, body)
    data: Any = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    return requests.post(served.webhook_url, data=data, headers=headers, timeout=10)


@pytest.mark.timeout(180)
def test_signed_deliveries_start_a_pass_at_once_and_nothing_else_does(world: World, tmp_path: Path) -> None:
    config = edited_config(tmp_path / "hooks", schedule={"poll_interval": "1h"})
    secret = world.env["BITBUCKET_WEBHOOK_SECRET"]
    with serving(world, config, tmp_path) as served:
        assert served.webhook_url is not None, served.log()
        wait_until("the first pass", lambda: served.health()["passes"] >= 1)
        merged = world.people.merge_change("Announced by webhook", GOOD)
        body = push_payload(merged.commit)
        passes = served.health()["passes"]

        def refused(answer: requests.Response, status: int) -> None:
            assert answer.status_code == status, answer.text
            assert secret not in answer.text

        refused(post(served, body, secret=None), 401)  # unsigned
        refused(post(served, body, secret="not-the-secret"), 401)  # wrongly signed
        refused(post(served, b"{not json", secret=secret), 400)  # malformed
        refused(post(served, b"[1, 2]", secret=secret), 400)  # JSON, but no object
        oversized = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
        refused(post(served, oversized, secret=secret), 413)
        refused(post(served, oversized, secret=secret, chunked=True), 413)
        refused(post(served, body, secret=secret, event="repo:fork"), 202)  # an event of no use
        refused(post(served, push_payload(merged.commit, "whisper/other"), secret=secret), 202)
        time.sleep(1.5)  # were any of them to start a pass, it would have started by now
        assert served.health()["passes"] == passes
        assert world.services.store.by_commit(world.settings.name, merged.commit) is None

        delivery = str(uuid.uuid4())
        sent = datetime.now(UTC)
        accepted = post(served, body, secret=secret, request_uuid=delivery)
        assert accepted.status_code == 200 and accepted.json()["accepted"] is True, accepted.text
        wait_until("the pass the delivery started", lambda: served.health()["passes"] > passes, timeout=30)
        started = datetime.fromisoformat(served.health()["last_pass_started_at"].replace("Z", "+00:00"))
        assert (started - sent).total_seconds() < 1.0, f"the pass started {started - sent} after the delivery"
        wait_until(
            "the merge detected",
            lambda: world.services.store.by_commit(world.settings.name, merged.commit) is not None,
            timeout=30,
        )

        # Bitbucket repeats a delivery it thinks failed: the repeat is recognised and does nothing.
        def waiting() -> bool:
            found = world.services.store.by_commit(world.settings.name, merged.commit)
            return found is not None and found.state == State.AWAITING_APPROVAL

        wait_until("the release to wait for approval (nothing moves then)", waiting, timeout=90)
        wait_until("passes to settle", lambda: _quiet(served), timeout=30)
        passes = served.health()["passes"]
        repeat = post(served, body, secret=secret, request_uuid=delivery)
        assert repeat.status_code == 200 and repeat.json()["duplicate"] is True, repeat.text
        time.sleep(1.5)
        assert served.health()["passes"] == passes
    assert "Traceback" not in served.log()


def _quiet(served: Served) -> bool:
    """True when no pass has run for two seconds (the release waits on a person or the clock)."""
    before = served.health()["passes"]
    time.sleep(2.0)
    return bool(served.health()["passes"] == before)


@pytest.mark.timeout(240)
def test_the_sandbox_bitbucket_webhook_moves_a_release_without_polling(world: World, tmp_path: Path) -> None:
    config = edited_config(tmp_path / "hooks", schedule={"poll_interval": "1h"})
    with serving(world, config, tmp_path) as served:
        assert served.webhook_url is not None
        installed = ok(pipeline(world, "webhooks", "install", "--url", served.webhook_url, config=config))
        assert "Webhook created on whisper/claims" in installed.stdout
        again = ok(pipeline(world, "webhooks", "install", "--url", served.webhook_url, config=config))
        assert "Webhook updated" in again.stdout  # idempotent: one hook per URL
        (hook,) = world.sandbox.bitbucket.store.repos["whisper/claims"]["hooks"].values()
        assert hook["secret"] == world.env["BITBUCKET_WEBHOOK_SECRET"]

        wait_until("the first pass", lambda: served.health()["passes"] >= 1)
        merged = world.people.merge_change("Pushed and announced", GOOD)  # Bitbucket posts repo:push

        def state() -> State | None:
            served.alive()
            found = world.services.store.by_commit(world.settings.name, merged.commit)
            return found.state if found else None

        wait_until("the release to wait for approval", lambda: state() == State.AWAITING_APPROVAL, 90)
        world.people.approve(user="po")  # Bitbucket posts pullrequest:approved
        wait_until("the release to be released", lambda: state() == State.BACKUPS_VERIFIED, 120)
    deliveries = world.sandbox.bitbucket.deliveries(hook["uuid"])
    assert {d["event"] for d in deliveries} >= {"repo:push", "pullrequest:approved"}
    assert all(d["outcome"] == "delivered" for d in deliveries), deliveries
