"""``BitbucketCloud.webhooks`` / ``install_webhook`` against the sandbox's Bitbucket over real
HTTP, and the whole way round: the sandbox's Bitbucket signs and delivers a ``repo:push`` to a
running ``WebServer``, whose receiver hands it over.

The sandbox is shared by the session: every hook made here has a URL and a description of the
test's own and is deleted at the end; hooks that must never fire subscribe only to an event the
sandbox never emits (``issue:created``), so no other test's events are sent to them. Bulk hook
creation uses the ``ops`` user, whose rate budget the other tests hardly touch."""

from __future__ import annotations

import threading
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from adapter_support import assert_secret_free

from pipeline.adapters.bitbucket import PAGELEN, BitbucketCloud, BitbucketCredential
from pipeline.errors import Permanent, Temporary
from pipeline.model import Webhook
from pipeline.store import open_store
from pipeline.web.app import WEBHOOK_PATH, create_app
from pipeline.web.server import WebServer
from pipeline.web.webhooks import USED_EVENTS, Delivery, WebhookReceiver
from sandbox.core import Sandbox

WS, REPO = "whisper", "claims"
R = f"/2.0/repositories/{WS}/{REPO}"
QUIET_EVENTS = ("issue:created",)  # never emitted by the sandbox


class Hooks:
    """Plain HTTP on the sandbox repository's hooks, and cleaning up after the test."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.url = str(info["bitbucket"]["url"])
        self.tokens: dict[str, str] = info["bitbucket"]["users"]
        self.emails: dict[str, str] = info["bitbucket"]["emails"]
        self.made: set[str] = set()

    def call(self, method: str, path: str, user: str = "controller", **kwargs: Any) -> requests.Response:
        auth = (self.emails[user], self.tokens[user])  # an API token goes with the account's e-mail
        return requests.request(method, f"{self.url}{path}", auth=auth, timeout=15, **kwargs)

    def raw(self, hook_uuid: str) -> requests.Response:
        return self.call("GET", f"{R}/hooks/{hook_uuid.strip('{}')}")

    def create(self, url: str, description: str, user: str = "ops") -> str:
        body = {"url": url, "description": description, "events": list(QUIET_EVENTS)}
        answer = self.call("POST", f"{R}/hooks", user=user, json=body)
        assert answer.status_code == 201, answer.text
        made = str(answer.json()["uuid"])
        self.made.add(made)
        return made

    def delete_all(self) -> None:
        for made in self.made:
            answer = self.call("DELETE", f"{R}/hooks/{made.strip('{}')}", user="ops")
            assert answer.status_code in (204, 404), answer.text
        self.made.clear()


@pytest.fixture
def bb(info: dict[str, Any]) -> BitbucketCloud:
    """Built as tests/integration/test_adapter_bitbucket.py builds it, with the controller's token."""
    bitbucket = info["bitbucket"]
    credential = BitbucketCredential(bitbucket["users"]["controller"], bitbucket["emails"]["controller"])
    return BitbucketCloud(bitbucket["url"], credential, WS, REPO, timeout=10)


@pytest.fixture
def hooks(info: dict[str, Any]) -> Iterator[Hooks]:
    made = Hooks(info)
    try:
        yield made
    finally:
        made.delete_all()


@pytest.fixture
def own() -> str:
    """A name of this test's own (URLs and descriptions)."""
    return f"hooks-test-{uuid.uuid4().hex[:10]}"


def install(bb: BitbucketCloud, hooks: Hooks, *args: Any, **kwargs: Any) -> tuple[Webhook, str]:
    hook, outcome = bb.install_webhook(*args, **kwargs)
    hooks.made.add(hook.uuid)
    return hook, outcome


# -- install_webhook ---------------------------------------------------------------------------------


def test_install_creates_then_updates_the_same_hook(bb: BitbucketCloud, hooks: Hooks, own: str) -> None:
    url = f"http://127.0.0.1:9/{own}/webhooks/bitbucket"
    created, outcome = install(bb, hooks, url, "first-secret-0123", QUIET_EVENTS, description=own)
    assert outcome == "created"
    assert created.url == url and created.description == own
    assert created.events == QUIET_EVENTS and created.active and created.secret_set
    assert created.uuid.startswith("{")

    # deactivated and re-pointed by someone in the meantime: the same call puts it right
    answer = hooks.call("PUT", f"{R}/hooks/{created.uuid.strip('{}')}", json={"active": False})
    assert answer.status_code == 200, answer.text
    again, outcome = install(
        bb, hooks, url, "second-secret-4567", ("issue:created", "repo:fork"), description=own
    )
    assert outcome == "updated"
    assert again.uuid == created.uuid
    assert again.active and again.secret_set
    assert again.events == ("issue:created", "repo:fork")
    assert [h for h in bb.webhooks() if h.url == url] == [again]


def test_a_hook_with_the_same_description_is_moved_to_the_new_url(
    bb: BitbucketCloud, hooks: Hooks, own: str
) -> None:
    old_url = f"http://127.0.0.1:9/{own}/old"
    first, _ = install(bb, hooks, old_url, "a-secret-0123456", QUIET_EVENTS, description=own)
    bystander = hooks.create(f"http://127.0.0.1:9/{own}/bystander", f"{own}-bystander")
    new_url = f"http://127.0.0.1:9/{own}/new"
    moved, outcome = install(bb, hooks, new_url, "a-secret-0123456", QUIET_EVENTS, description=own)
    assert outcome == "updated"
    assert moved.uuid == first.uuid and moved.url == new_url
    mine = {h.uuid: h for h in bb.webhooks() if own in h.url}
    assert set(mine) == {first.uuid, bystander}
    assert mine[bystander].url.endswith("/bystander")  # left alone


def test_the_secret_is_set_but_never_returned(bb: BitbucketCloud, hooks: Hooks, own: str) -> None:
    secret = f"never-shown-{uuid.uuid4().hex}"
    hook, _ = install(bb, hooks, f"http://127.0.0.1:9/{own}", secret, QUIET_EVENTS, description=own)
    assert hook.secret_set
    raw = hooks.raw(hook.uuid)
    assert raw.status_code == 200
    assert raw.json()["secret_set"] is True
    assert "secret" not in raw.json()
    assert secret not in raw.text
    listed = hooks.call("GET", f"{R}/hooks", params={"pagelen": 100})
    assert secret not in listed.text
    assert secret not in repr(bb.webhooks())


def test_an_error_answer_carries_no_secret(bb: BitbucketCloud, hooks: Hooks, own: str) -> None:
    secret = f"hush-{uuid.uuid4().hex}"
    # Bitbucket repeats a refused url in its answer: here the secret is in it, so it must be scrubbed
    with pytest.raises(Permanent) as refused:
        bb.install_webhook(f"ftp://{own}.example/{secret}", secret, QUIET_EVENTS, description=own)
    assert refused.value.status == 400
    assert "[REDACTED]" in refused.value.evidence  # the answer did hold it
    assert_secret_free(refused.value, secret)
    assert secret not in "".join(traceback.format_exception(refused.value))
    assert not [h for h in bb.webhooks() if h.description == own]


def test_a_server_error_is_temporary_and_carries_no_secret(
    bb: BitbucketCloud, hooks: Hooks, own: str, sandbox: Sandbox
) -> None:
    secret = f"hush-{uuid.uuid4().hex}"
    url = f"http://127.0.0.1:9/{own}"
    sandbox.faults.add(service="bitbucket", method="POST", path=f"{R}/hooks", kind="error", status=503)
    with pytest.raises(Temporary) as failed:
        bb.install_webhook(url, secret, QUIET_EVENTS, description=own)
    assert failed.value.status == 503
    assert_secret_free(failed.value, secret)
    install(bb, hooks, url, secret, QUIET_EVENTS, description=own)
    sandbox.faults.add(service="bitbucket", method="PUT", path=f"{R}/hooks/*", kind="drop")
    with pytest.raises(Temporary) as dropped:
        bb.install_webhook(url, secret, QUIET_EVENTS, description=own)
    assert_secret_free(dropped.value, secret)
    assert secret not in "".join(traceback.format_exception(dropped.value))


def test_install_needs_a_secret_and_events(bb: BitbucketCloud) -> None:
    with pytest.raises(ValueError, match="secret"):
        bb.install_webhook("http://127.0.0.1:9/x", "", QUIET_EVENTS, description="x")
    with pytest.raises(ValueError, match="event"):
        bb.install_webhook("http://127.0.0.1:9/x", "s3cret", (), description="x")


# -- webhooks ----------------------------------------------------------------------------------------


def test_webhooks_lists_every_page(bb: BitbucketCloud, hooks: Hooks, own: str) -> None:
    made = [hooks.create(f"http://127.0.0.1:9/{own}/{n}", f"{own}-{n}") for n in range(PAGELEN + 2)]
    listed = {h.uuid: h for h in bb.webhooks()}
    assert set(made) <= set(listed)
    sample = listed[made[-1]]
    assert sample.url == f"http://127.0.0.1:9/{own}/{PAGELEN + 1}"
    assert sample.events == QUIET_EVENTS and sample.active and not sample.secret_set


# -- the whole way round ---------------------------------------------------------------------------


def test_the_sandbox_delivers_a_signed_push_to_a_running_server(
    sandbox: Sandbox, info: dict[str, Any], bb: BitbucketCloud, hooks: Hooks, own: str, tmp_path: Path
) -> None:
    secret = f"e2e-{uuid.uuid4().hex}"
    branch = f"hooks/{own}"
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    received: list[Delivery] = []
    pushed = threading.Event()

    def on_delivery(delivery: Delivery) -> None:
        received.append(delivery)
        changes = delivery.payload.get("push", {}).get("changes", [])
        if delivery.event == "repo:push" and any((c.get("new") or {}).get("name") == branch for c in changes):
            pushed.set()

    receiver = WebhookReceiver(
        secret,
        WS,
        REPO,
        lambda request_uuid, event: store.record_delivery("claims", request_uuid, event, datetime.now(UTC)),
        on_delivery,
    )
    server = WebServer(create_app(receiver, lambda: {"status": "ok"}), "127.0.0.1", 0).start()
    try:
        url = server.url + WEBHOOK_PATH
        hook, outcome = install(bb, hooks, url, secret, USED_EVENTS, description=own)
        assert outcome == "created" and hook.secret_set
        assert hook.events == tuple(sorted(USED_EVENTS))

        main = hooks.call("GET", f"{R}/refs/branches/main", user="dev").json()["target"]["hash"]
        data = {"branch": branch, "parents": main, "message": "webhook e2e", f"{own}.txt": "hello\n"}
        made = hooks.call("POST", f"{R}/src", user="dev", data=data)
        assert made.status_code == 201, made.text
        commit = made.headers["Location"].rsplit("/", 1)[1]

        assert sandbox.bitbucket.wait_for_deliveries(10)
        assert pushed.wait(5), [d.event for d in received]
        push = next(d for d in received if d.event == "repo:push")
        change = push.payload["push"]["changes"][0]
        assert change["new"]["name"] == branch and change["new"]["target"]["hash"] == commit
        assert push.attempt == 1 and push.request_uuid

        log = sandbox.bitbucket.deliverer.deliveries(hook.uuid)
        mine = [d for d in log if d["request_uuid"] == push.request_uuid]
        assert [(d["outcome"], [a["status"] for a in d["attempts"]]) for d in mine] == [("delivered", [200])]

        again, outcome = install(bb, hooks, url, secret, USED_EVENTS, description=own)
        assert outcome == "updated" and again.uuid == hook.uuid
        assert [h.uuid for h in bb.webhooks() if h.url == url or h.description == own] == [hook.uuid]
    finally:
        server.stop()
        hooks.delete_all()
        hooks.call("DELETE", f"{R}/refs/branches/{branch}", user="dev")
        store.close()
