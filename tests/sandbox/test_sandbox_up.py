"""`pipeline sandbox up`: the JSON contract, state kept across restarts, nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.databases import Databases

PIPELINE = str(Path(sys.executable).with_name("pipeline"))


class Running:
    def __init__(self, state_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [PIPELINE, "sandbox", "up", "--json", "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"sandbox up printed nothing; stderr: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.info = json.loads(line)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        return code


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"
    # the apps' databases outlive the processes; drop them as a user would with `rm -rf` + dropdb
    if (tmp_path / "state" / "databases").exists():
        Databases(tmp_path / "state" / "databases").drop_all()


def test_json_first_line_holds_the_contract_and_sigterm_stops_everything(state_dir: Path) -> None:
    run = Running(state_dir)
    try:
        info = run.info
        assert set(info["bitbucket"]["users"]) >= {"dev", "po", "ops", "controller", "readonly"}
        assert info["bitbucket"]["workspace"] == "whisper" and info["bitbucket"]["repository"] == "claims"
        assert info["heroku"]["apps"] == {"staging": "claims-staging", "production": "claims-production"}
        assert info["heroku"]["pipeline"] == "claims"
        env = info["env"]
        assert env["BITBUCKET_URL"] == info["bitbucket"]["url"]
        assert env["BITBUCKET_TOKEN"] == info["bitbucket"]["users"]["controller"]
        assert env["HEROKU_API_URL"] == info["heroku"]["url"]
        assert env["HEROKU_API_KEY"] == info["heroku"]["api_key"]
        assert env["HEROKU_DATA_API_URL"] == info["heroku"]["data_url"]
        assert env["BITBUCKET_EMAIL"] == info["bitbucket"]["emails"]["controller"]
        assert info["bitbucket"]["web_url"] != info["bitbucket"]["url"]
        assert set(info["bitbucket"]["access_tokens"]) == {"repository", "workspace"}
        assert len(env["BITBUCKET_WEBHOOK_SECRET"]) >= 32  # made once, kept in the state dir

        # the real client works with nothing but the root URL it is given
        from atlassian.bitbucket import Cloud

        cloud = Cloud(
            url=info["bitbucket"]["url"], username=env["BITBUCKET_EMAIL"], password=env["BITBUCKET_TOKEN"]
        )
        assert cloud.repositories.get("whisper", "claims").slug == "claims"
        cloud = Cloud(url=info["bitbucket"]["url"], token=info["bitbucket"]["access_tokens"]["repository"])
        assert cloud.repositories.get("whisper", "claims").slug == "claims"
        web_url = info["heroku"]["web_urls"]["production"]
        assert requests.get(f"{web_url.rstrip('/')}/health", timeout=5).status_code == 200

        exports = subprocess.run(
            [PIPELINE, "sandbox", "env", "--state-dir", str(state_dir)], capture_output=True, text=True
        )
        assert exports.returncode == 0, exports.stderr
        assert f"export HEROKU_API_KEY={env['HEROKU_API_KEY']}" in exports.stdout.splitlines()
        assert f"export SANDBOX_TOKEN_PO={info['bitbucket']['users']['po']}" in exports.stdout.splitlines()
    finally:
        code = run.stop()
    assert code == 0
    gone = subprocess.run(
        [PIPELINE, "sandbox", "env", "--state-dir", str(state_dir)], capture_output=True, text=True
    )
    assert gone.returncode == 1 and "no sandbox is running" in gone.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{web_url.rstrip('/')}/health", timeout=2)
    with pytest.raises(requests.ConnectionError):
        requests.get(info["heroku"]["url"], timeout=2)


def test_state_and_ports_survive_a_restart(state_dir: Path) -> None:
    first = Running(state_dir)
    try:
        repo = f"{first.info['bitbucket']['api']}/repositories/whisper/claims"
        auth = (first.info["bitbucket"]["emails"]["dev"], first.info["bitbucket"]["users"]["dev"])
        develop = requests.get(f"{repo}/refs/branches/develop", auth=auth).json()["target"]["hash"]
        created = requests.post(
            f"{repo}/refs/branches", auth=auth, json={"name": "kept", "target": {"hash": develop}}
        )
        assert created.status_code == 201, created.text
    finally:
        assert first.stop(signal.SIGINT) == 0

    second = Running(state_dir)
    try:
        assert second.info["bitbucket"]["url"] == first.info["bitbucket"]["url"]
        assert second.info["bitbucket"]["web_url"] == first.info["bitbucket"]["web_url"]
        assert second.info["bitbucket"]["access_tokens"] == first.info["bitbucket"]["access_tokens"]
        assert second.info["heroku"]["web_urls"] == first.info["heroku"]["web_urls"]
        assert second.info["bitbucket"]["users"] == first.info["bitbucket"]["users"]
        repo = f"{second.info['bitbucket']['api']}/repositories/whisper/claims"
        auth = (second.info["bitbucket"]["emails"]["dev"], second.info["bitbucket"]["users"]["dev"])
        kept = requests.get(f"{repo}/refs/branches/kept", auth=auth)
        assert kept.status_code == 200 and kept.json()["target"]["hash"] == develop
        # the apps run again after the restart, on the same web_url
        web_url = second.info["heroku"]["web_urls"]["staging"]
        assert requests.get(f"{web_url.rstrip('/')}/health", timeout=10).status_code == 200
    finally:
        assert second.stop() == 0


def test_a_port_in_use_is_a_clear_error(state_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [PIPELINE, "sandbox", "up", "--state-dir", str(state_dir), "--heroku-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
    assert result.returncode != 0
    assert "could not start the sandbox" in result.stderr and str(port) in result.stderr


def test_rate_limit_budgets_are_configurable(state_dir: Path) -> None:
    proc = subprocess.Popen(
        [PIPELINE, "sandbox", "up", "--json", "--state-dir", str(state_dir), "--heroku-rate-limit", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        headers = {
            "Authorization": f"Bearer {info['heroku']['api_key']}",
            "Accept": "application/vnd.heroku+json; version=3",
        }
        answers = [
            requests.get(f"{info['heroku']['url']}/apps", headers=headers, timeout=5) for _ in range(4)
        ]
        assert [a.status_code for a in answers][:3] == [200, 200, 200]
        assert answers[3].status_code == 429 and answers[3].json()["id"] == "rate_limit"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_bad_options_exit_2_naming_the_option(state_dir: Path) -> None:
    result = subprocess.run(
        [PIPELINE, "sandbox", "up", "--state-dir", str(state_dir), "--heroku-port", "http"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--heroku-port" in result.stderr
