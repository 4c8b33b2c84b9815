"""Faults on demand, through the Python API and the admin endpoint, seen by the real clients."""

from __future__ import annotations

import heroku3
import pytest
import requests
from atlassian.bitbucket import Cloud

from sandbox.core import Sandbox


def heroku_client(sandbox: Sandbox) -> heroku3.api.Heroku:
    client = heroku3.api.Heroku(session=requests.Session())
    client._heroku_url = sandbox.url("heroku")
    client.authenticate(sandbox.heroku.api_key)
    return client


def test_an_error_fault_fires_the_given_number_of_times(sandbox: Sandbox) -> None:
    client = heroku_client(sandbox)
    sandbox.faults.add(service="heroku", method="GET", path="/apps/claims-staging", kind="error", status=503)
    with pytest.raises(requests.HTTPError) as caught:
        client.app("claims-staging")
    assert caught.value.response.status_code == 503
    assert caught.value.response.json()["id"]  # Heroku's error body
    assert client.app("claims-staging").name == "claims-staging"  # used up


def test_rate_limit_fault_reaches_heroku3_as_its_own_exception(sandbox: Sandbox) -> None:
    client = heroku_client(sandbox)
    sandbox.faults.add(service="heroku", path="/apps/*/releases", kind="rate_limit")
    with pytest.raises(heroku3.api.RateLimitExceeded):
        client.app("claims-staging").releases()


def test_faults_through_the_admin_endpoint(sandbox: Sandbox) -> None:
    admin = f"{sandbox.url('bitbucket')}/_sandbox/faults"
    added = requests.post(
        admin, json={"kind": "error", "status": 500, "path": "/2.0/repositories/*", "times": 2}
    )
    assert added.status_code == 201, added.text
    assert [f["id"] for f in requests.get(admin).json()] == [added.json()["id"]]
    email, token = sandbox.bitbucket.emails()["dev"], sandbox.bitbucket.tokens()["dev"]
    cloud = Cloud(url=sandbox.url("bitbucket"), username=email, password=token)
    for _ in range(2):
        with pytest.raises(requests.HTTPError) as caught:
            cloud.repositories.get("whisper", "claims")
        assert caught.value.response.status_code == 500
    assert cloud.repositories.get("whisper", "claims").slug == "claims"
    assert requests.get(admin).json() == []


def test_drop_and_slow_faults(sandbox: Sandbox) -> None:
    url = f"{sandbox.url('heroku-data')}/client/v11/apps/claims-staging/transfers"
    headers = {"Authorization": f"Bearer {sandbox.heroku.api_key}"}
    sandbox.faults.add(service="heroku-data", path="/client/v11/apps/*/transfers", kind="drop")
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=headers, timeout=5)
    sandbox.faults.add(service="heroku-data", path="/client/v11/apps/*/transfers", kind="slow", delay=1.0)
    with pytest.raises(requests.Timeout):
        requests.get(url, headers=headers, timeout=0.3)
    assert requests.get(url, headers=headers, timeout=5).status_code == 200


def test_a_lost_answer_still_takes_effect(sandbox: Sandbox) -> None:
    info = sandbox.info()
    repo = f"{info['bitbucket']['api']}/repositories/whisper/claims"
    auth = (info["bitbucket"]["emails"]["dev"], info["bitbucket"]["users"]["dev"])
    main = requests.get(f"{repo}/refs/branches/main", auth=auth, timeout=5).json()["target"]["hash"]
    sandbox.faults.add(service="bitbucket", method="POST", path="*/refs/branches", kind="lost")
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{repo}/refs/branches",
            json={"name": "lost-answer", "target": {"hash": main}},
            auth=auth,
            timeout=5,
        )
    created = requests.get(f"{repo}/refs/branches/lost-answer", auth=auth, timeout=5)
    assert created.status_code == 200 and created.json()["target"]["hash"] == main


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "explode"}, "kind"),
        ({"kind": "error", "status": 404}, "status"),
        ({"kind": "slow"}, "delay"),
        ({"kind": "error", "times": 0}, "times"),
        ({"kind": "error", "colour": "red"}, "colour"),
        ({"path": "/x"}, "kind"),
    ],
)
def test_a_bad_fault_is_refused_naming_the_field(
    sandbox: Sandbox, body: dict[str, object], message: str
) -> None:
    answer = requests.post(f"{sandbox.url('heroku')}/_sandbox/faults", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
