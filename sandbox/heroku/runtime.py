"""Dynos that really run: the release phase and each app's web process, as local OS processes.

Every process starts from a fresh extract of the slug (Heroku's file system is ephemeral) under
``<state>/runtime``, in its own process group, with a clean environment: PATH (the sandbox
interpreter's bin directory first, so ``python`` is the sandbox's), HOME = the extract, the app's
config vars and Heroku's dyno variables. Output goes to files under ``<state>/logs``.

Contracts:
- ``run_release_phase`` blocks until the command exits (or its timeout) and returns the exit code.
- ``start_web`` starts the web process, waits (bounded) until it accepts connections on ``PORT``,
  then makes it the app's current process and stops the one before (SIGTERM to the group, SIGKILL
  after a grace period). A process that exits, or never listens, is reported ``crashed`` and
  still becomes current, as on Heroku where a deploy stops the old dynos either way.
- ``close`` stops every process this runtime started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sandbox.heroku.state import new_id, now

log = logging.getLogger("sandbox")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(home: Path) -> dict[str, str]:
    """The environment every dyno starts from (config vars and dyno variables go on top)."""
    interpreter_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return {
        "PATH": os.pathsep.join([interpreter_bin, path]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "true",
    }


def extract_slug(slug_path: Path, dest: Path) -> None:
    """Unpack a slug tarball (``./...`` members, as ``builds`` writes them) into ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(slug_path, "r:gz") as tar:
        tar.extractall(dest, filter="tar")


def _spawn(command: str, directory: Path, env: dict[str, str], out: BinaryIO) -> subprocess.Popen[bytes]:
    """Run a Procfile command as Heroku does (``sh -c``), in its own process group, output to ``out``."""
    return subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=directory,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # children left behind in the group (a shell's background jobs)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass(eq=False)
class Dyno:
    id: str
    app_id: str
    release_id: str
    name: str
    type: str
    command: str
    port: int
    directory: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    state: str = "starting"
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    stopping: bool = False

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app_id": self.app_id,
            "release_id": self.release_id,
            "name": self.name,
            "type": self.type,
            "command": self.command,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Runtime:
    def __init__(self, state_dir: Path, *, boot_timeout: float = 30.0, grace: float = 5.0) -> None:
        self.work_dir = state_dir / "runtime"
        self.logs_dir = state_dir / "logs"
        self.boot_timeout = boot_timeout
        self.grace = grace
        self._lock = threading.Lock()
        self._web: dict[str, Dyno] = {}  # app id -> its current web dyno
        self._others: set[Dyno] = set()  # web dynos still booting
        self._one_off: set[subprocess.Popen[bytes]] = set()  # release-phase processes
        self._closed = False

    # -- release phase ---------------------------------------------------------------------------

    def run_release_phase(
        self, app_id: str, slug_path: Path, command: str, env: dict[str, str], log_path: Path, timeout: float
    ) -> int:
        """Run the Procfile ``release:`` command in a fresh extract; return its exit code (-1 on timeout)."""
        directory = self.work_dir / app_id / f"release-{new_id()[:8]}"
        extract_slug(slug_path, directory)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**base_env(directory), **env}
        try:
            with log_path.open("ab") as out:
                with self._lock:
                    if self._closed:
                        raise RuntimeError("the runtime is closed")
                    proc = _spawn(command, directory, full_env, out)
                    self._one_off.add(proc)
                try:
                    return proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    out.write(f"Release command timed out after {timeout:g} seconds\n".encode())
                    return -1
                finally:
                    _stop_group(proc, self.grace)
                    with self._lock:
                        self._one_off.discard(proc)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    # -- web processes ---------------------------------------------------------------------------

    def start_web(
        self, app_id: str, release_id: str, slug_path: Path, command: str, env: dict[str, str]
    ) -> Dyno:
        """Start ``command`` as web.1 of the release, wait until it listens, then retire the old one.

        ``env`` holds the config vars and dyno metadata; PORT, DYNO and HEROKU_DYNO_ID are added here.
        """
        dyno_id = new_id()
        directory = self.work_dir / app_id / f"web-{dyno_id[:8]}"
        extract_slug(slug_path, directory)
        port = free_port()
        log_path = self.logs_dir / app_id / f"web.1-{dyno_id[:8]}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        dyno = Dyno(
            id=dyno_id,
            app_id=app_id,
            release_id=release_id,
            name="web.1",
            type="web",
            command=command,
            port=port,
            directory=directory,
            log_path=log_path,
        )
        full_env = {
            **base_env(directory),
            **env,
            "PORT": str(port),
            "DYNO": "web.1",
            "HEROKU_DYNO_ID": dyno_id,
        }
        with self._lock:
            if self._closed:
                raise RuntimeError("the runtime is closed")
            with log_path.open("ab") as out:
                dyno.proc = _spawn(command, directory, full_env, out)
            self._others.add(dyno)
        threading.Thread(target=self._watch, args=(dyno,), daemon=True, name=f"dyno-{dyno_id[:8]}").start()
        self._wait_listening(dyno)
        with self._lock:
            self._others.discard(dyno)
            old = self._web.get(app_id)
            self._web[app_id] = dyno
        if old is not None:
            self._stop(old)
        return dyno

    def _wait_listening(self, dyno: Dyno) -> None:
        deadline = time.monotonic() + self.boot_timeout
        assert dyno.proc is not None
        while time.monotonic() < deadline:
            if dyno.proc.poll() is not None:
                return  # _watch marks it crashed
            try:
                with socket.create_connection(("127.0.0.1", dyno.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            with self._lock:
                if dyno.state == "starting":
                    dyno.state, dyno.updated_at = "up", now()
            return
        # Heroku's R10 boot timeout: the dyno is killed and reported crashed.
        with dyno.log_path.open("a") as out:
            out.write(
                "Error R10 (Boot timeout) -> Web process failed to bind to $PORT "
                f"within {self.boot_timeout:g} seconds of launch\n"
            )
        _stop_group(dyno.proc, self.grace)

    def _watch(self, dyno: Dyno) -> None:
        assert dyno.proc is not None
        code = dyno.proc.wait()
        with self._lock:
            if not dyno.stopping:
                dyno.state, dyno.updated_at = "crashed", now()
                log.info("dyno %s of app %s exited with %s", dyno.name, dyno.app_id, code)
        if not dyno.stopping:
            with contextlib.suppress(OSError), dyno.log_path.open("a") as out:
                out.write(f"Process exited with status {code}\nState changed from up to crashed\n")

    def _stop(self, dyno: Dyno) -> None:
        with self._lock:
            dyno.stopping = True
        if dyno.proc is not None:
            _stop_group(dyno.proc, self.grace)
        shutil.rmtree(dyno.directory, ignore_errors=True)

    def stop_web(self, app_id: str) -> None:
        """Stop the app's web process (formation scaled to 0, or a release without a slug)."""
        with self._lock:
            dyno = self._web.pop(app_id, None)
        if dyno is not None:
            self._stop(dyno)

    def web(self, app_id: str) -> Dyno | None:
        with self._lock:
            return self._web.get(app_id)

    def backend(self, app_id: str) -> tuple[int | None, str]:
        """Where the router sends the app's requests now: (port, "") or (None, Heroku error code)."""
        with self._lock:
            dyno = self._web.get(app_id)
            if dyno is None:
                return None, "H14 No web processes running"
            if dyno.state == "crashed":
                return None, "H10 App crashed"
            return dyno.port, ""

    def dynos(self, app_id: str) -> list[dict[str, Any]]:
        with self._lock:
            dyno = self._web.get(app_id)
            return [dyno.info()] if dyno is not None else []

    def close(self) -> None:
        with self._lock:
            self._closed = True
            dynos = [*self._web.values(), *self._others]
            one_off = list(self._one_off)
            self._web.clear()
            self._others.clear()
        for proc in one_off:
            _stop_group(proc, self.grace)
        for dyno in dynos:
            self._stop(dyno)
