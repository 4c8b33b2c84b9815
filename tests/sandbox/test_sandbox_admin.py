"""What the whole sandbox offers around its stand-ins: the request log every server keeps, Heroku's
two-factor switch, and what ``info()`` (``pipeline sandbox up --json``) describes."""

from __future__ import annotations

from collections.abc import Iterator

import heroku3
import pytest
import requests

from sandbox.core import SERVICES, Sandbox

ACCEPT = "application/vnd.heroku+json; version=3"


@pytest.fixture
def two_factor_off(sandbox: Sandbox) -> Iterator[None]:
    yield
    sandbox.heroku.require_two_factor(False)


def test_every_stand_in_logs_what_it_answered_without_the_credential(sandbox: Sandbox) -> None:
    info = sandbox.info()
    bb, hk = info["bitbucket"], info["heroku"]
    for service in SERVICES:
        assert requests.delete(f"{sandbox.url(service)}/_sandbox/requests", timeout=10).json() == {
            "cleared": True
        }
    token, key = bb["users"]["dev"], hk["api_key"]
    repo = f"{bb['api']}/repositories/{bb['workspace']}/{bb['repository']}"
    requests.get(repo, auth=(bb["emails"]["dev"], token), headers={"User-Agent": "log-test/1"}, timeout=10)
    requests.get(repo, headers={"Authorization": f"Bearer {bb['access_tokens']['workspace']}"}, timeout=10)
    requests.get(f"{bb['api']}/user", timeout=10)
    requests.get(f"{bb['web_url']}/whisper/claims/get/main.tar.gz?x=secret", auth=("dev", token), timeout=10)
    requests.get(
        f"{hk['url']}/apps", headers={"Accept": ACCEPT, "Authorization": f"Bearer {key}"}, timeout=10
    )
    requests.get(f"{hk['data_url']}/client/v11/apps/claims-staging/transfers", auth=("", key), timeout=10)

    api_log = requests.get(f"{sandbox.url('bitbucket')}/_sandbox/requests", timeout=10).json()["values"]
    assert [(e["method"], e["path"], e["status"], e["auth"]) for e in api_log] == [
        ("GET", "/2.0/repositories/whisper/claims", 200, "basic"),
        ("GET", "/2.0/repositories/whisper/claims", 200, "bearer"),
        ("GET", "/2.0/user", 401, "none"),
    ]
    assert api_log[0]["user_agent"] == "log-test/1" and api_log[0]["at"] <= api_log[1]["at"]
    assert set(api_log[0]) == {"at", "method", "path", "status", "auth", "user_agent"}
    [web] = sandbox.requests("bitbucket-web")
    assert (web["path"], web["status"], web["auth"]) == ("/whisper/claims/get/main.tar.gz", 200, "basic")
    [heroku] = sandbox.requests("heroku")
    assert (heroku["path"], heroku["auth"]) == ("/apps", "bearer")
    [data] = sandbox.requests("heroku-data")
    assert (data["status"], data["auth"]) == (200, "basic")
    everything = str([sandbox.requests(s) for s in SERVICES])
    for secret in (token, key, bb["access_tokens"]["workspace"], "secret"):
        assert secret not in everything
    assert "/_sandbox/" not in everything  # admin requests are not logged

    sandbox.clear_requests("bitbucket")
    assert sandbox.requests("bitbucket") == [] and sandbox.requests("heroku") != []


@pytest.mark.usefixtures("two_factor_off")
def test_the_two_factor_switch_refuses_every_platform_api_call(sandbox: Sandbox) -> None:
    hk = sandbox.info()["heroku"]
    admin = f"{hk['url']}/_sandbox/two-factor"
    bearer = {"Accept": ACCEPT, "Authorization": f"Bearer {hk['api_key']}"}
    assert requests.get(admin, timeout=10).json() == {"required": False}
    assert requests.post(admin, json={"required": True}, timeout=10).json() == {"required": True}
    for path in ("/apps", "/apps/claims-staging/releases", "/account/rate-limits"):
        refused = requests.get(f"{hk['url']}{path}", headers=bearer, timeout=10)
        assert refused.status_code == 403, path
        body = refused.json()
        assert body["id"] == "two_factor" and "second authentication factor" in body["message"]
    basic = requests.get(
        f"{hk['url']}/apps", auth=("", hk["api_key"]), headers={"Accept": ACCEPT}, timeout=10
    )
    assert basic.status_code == 403
    bad_key = requests.get(
        f"{hk['url']}/apps", headers={**bearer, "Authorization": "Bearer nope"}, timeout=10
    )
    assert bad_key.status_code == 401  # a wrong key is still a wrong key
    client = heroku3.api.Heroku(session=requests.Session())
    client._heroku_url = hk["url"]
    client.authenticate(hk["api_key"])
    with pytest.raises(requests.HTTPError) as caught:
        client.app("claims-staging")
    assert caught.value.response.status_code == 403

    assert requests.post(admin, json={"required": "yes"}, timeout=10).status_code == 400
    assert requests.post(admin, json={"required": False}, timeout=10).json() == {"required": False}
    assert requests.get(f"{hk['url']}/apps", headers=bearer, timeout=10).status_code == 200
    basic = requests.get(
        f"{hk['url']}/apps", auth=("", hk["api_key"]), headers={"Accept": ACCEPT}, timeout=10
    )
    assert basic.status_code == 200  # Basic and Bearer, as Heroku takes both

    sandbox.heroku.require_two_factor(True)  # the same switch from Python
    assert requests.get(f"{hk['url']}/apps", headers=bearer, timeout=10).status_code == 403
    sandbox.heroku.require_two_factor(False)
    assert requests.get(f"{hk['url']}/apps", headers=bearer, timeout=10).status_code == 200


def test_info_adds_the_website_emails_and_access_tokens(sandbox: Sandbox) -> None:
    info = sandbox.info()
    bb = info["bitbucket"]
    assert bb["web_url"] == sandbox.url("bitbucket-web") != bb["url"]
    assert bb["emails"] == {u: f"{u}@whisper.example" for u in ("dev", "po", "ops", "controller", "readonly")}
    assert bb["users"] == sandbox.bitbucket.tokens()  # user -> API token, as before
    assert set(bb["access_tokens"]) == {"repository", "workspace"}
    assert info["env"]["BITBUCKET_EMAIL"] == "controller@whisper.example"
    assert info["env"]["BITBUCKET_TOKEN"] == bb["users"]["controller"]
    repo = f"{bb['api']}/repositories/{bb['workspace']}/{bb['repository']}"
    for kind, credential_type in (
        ("repository", "repo_access_token"),
        ("workspace", "workspace_access_token"),
    ):
        r = requests.get(repo, headers={"Authorization": f"Bearer {bb['access_tokens'][kind]}"}, timeout=10)
        assert r.status_code == 200 and r.headers["x-credential-type"] == credential_type
    controller = requests.get(
        repo, auth=(info["env"]["BITBUCKET_EMAIL"], info["env"]["BITBUCKET_TOKEN"]), timeout=10
    )
    assert controller.status_code == 200
