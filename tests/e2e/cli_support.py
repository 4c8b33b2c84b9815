"""Running the ``pipeline`` command as people do, for the end-to-end tests: real processes with the
sandbox's environment, every output checked for the controller's secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from e2e_world import World, wait_until, write_config

SECRETS = ("BITBUCKET_TOKEN", "HEROKU_API_KEY", "BITBUCKET_WEBHOOK_SECRET")
SECRETS_SET = {name: "set" for name in SECRETS}
CONFIG_INVALID = 2


def environment(world: World, *, without: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment plus the sandbox's, less the variables named in ``without``."""
    env = dict(os.environ) | world.env
    for name in without:
        env.pop(name, None)
    return env


def assert_no_secrets(world: World, *outputs: str) -> None:
    for name in SECRETS:
        secret = world.env[name]
        assert len(secret) >= 8, f"the sandbox's {name} is too short to look for"
        for output in outputs:
            assert secret not in output, f"the value of {name} was printed"


def pipeline(
    world: World,
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``pipeline <args> --config <config>`` as a real process (``input`` on its stdin); never
    prints a secret."""
    config_path = world.config_path if config is None else config
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args, "--config", str(config_path)],
        env=environment(world) if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input if input is not None else "",
    )
    assert_no_secrets(world, run.stdout, run.stderr)
    return run


def ok(run: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    return run


def errors(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("error: ")]


def edited_config(directory: Path, checks: list[dict[str, Any]] | None = None, **changes: Any) -> Path:
    """write_config's copy of the shipped configuration, with top-level keys of pipeline.yml changed."""
    path = write_config(directory, checks)
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Served:
    """A running ``pipeline serve`` process, its output files, and where it takes webhooks."""

    process: subprocess.Popen[str]
    stdout: Path
    stderr: Path
    webhook_url: str | None

    def log(self) -> str:
        return self.stderr.read_text()

    def alive(self) -> None:
        assert self.process.poll() is None, f"serve exited {self.process.returncode}: {self.log()}"

    def health(self) -> dict[str, Any]:
        assert self.webhook_url is not None, "this serve takes no webhooks"
        base = self.webhook_url.rsplit("/webhooks/", 1)[0]
        answer = requests.get(f"{base}/healthz", timeout=5)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@contextmanager
def serving(world: World, config: Path, tmp_path: Path) -> Iterator[Served]:
    """``pipeline serve --config config`` as a real process until the block ends (then SIGTERM,
    which must stop it cleanly); yields once it says it serves."""
    import signal

    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "serve", "--config", str(config)],
            env=environment(world),
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    try:
        wait_until(
            "serve to start", lambda: "Serving pipeline" in err.read_text() or process.poll() is not None, 30
        )
        found = re.search(r"webhook to (\S+?/webhooks/bitbucket)", err.read_text())
        served = Served(process, out, err, found.group(1) if found else None)
        served.alive()
        yield served
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, err.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_no_secrets(world, out.read_text(), err.read_text())
