"""The builder: turns a source tarball at a URL into a slug and a release, in a worker thread.

What a build does (its log, served at ``output_stream_url``, says the same):
1. downloads ``source_blob.url`` (any http(s) URL, like Heroku; the stand-in's own ``/sources``
   URLs included) and, when ``source_blob.checksum`` is given, checks its ``SHA256:<hex>``;
2. unpacks the tar.gz; when every entry sits under one top-level folder (GitHub and Bitbucket
   archives) that folder is stripped, as Heroku does;
3. "compiles": no dependencies are installed (apps run on the sandbox's interpreter), but the
   Python buildpack's hooks run when present: executable-or-not ``bin/pre_compile`` and
   ``bin/post_compile`` run with ``sh`` in the build directory with the app's config vars in the
   environment; a non-zero exit fails the build with its output in the log. A source without a
   ``Procfile`` fails the build (the sandbox has no language detection to guess a web command);
4. stores the build directory as the slug (a tar.gz under ``<state>/slugs``, ``process_types``
   from the Procfile, ``commit`` = ``source_blob.version``) and creates the release, whose release
   phase then runs (``sandbox.heroku.releases``).

The build is ``pending`` until the slug and release exist (``succeeded``) or a step fails
(``failed``). ``cancel`` stops a pending build: it ends ``failed`` with "Build canceled".
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import requests

from sandbox.heroku.runtime import base_env
from sandbox.heroku.state import Record, Store, new_id, now

log = logging.getLogger("sandbox")

PROCESS_TYPE = re.compile(r"^([-\w]{1,128}):\s*(.+)$")
CHECKSUM = re.compile(r"^SHA256:([0-9a-fA-F]{64})$")
HOOK_TIMEOUT = 300.0

# (app id, slug id, description) -> release id
CreateRelease = Callable[[str, str, str], str]


class BuildFailed(Exception):
    pass


class BuildCanceled(Exception):
    pass


def parse_procfile(text: str) -> dict[str, str]:
    """Process types of a Procfile: ``name: command`` lines; blank lines and ``#`` comments skipped."""
    types: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PROCESS_TYPE.match(line)
        if match:
            types[match.group(1)] = match.group(2).strip()
    return types


def _member_name(name: str) -> str:
    """A tar member's path without a leading ``./`` or ``/``."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def unpack_source(data: bytes, dest: Path) -> None:
    """Unpack a gzipped tarball into ``dest``, stripping a single top-level folder."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        members = [m for m in tar.getmembers() if _member_name(m.name) not in ("", ".", "pax_global_header")]
        names = [_member_name(m.name) for m in members]
        tops = {name.split("/", 1)[0] for name in names}
        strip: str | None = None
        if len(tops) == 1:
            top = next(iter(tops))
            nested = [name for name in names if name.startswith(top + "/")]
            if nested and all(
                m.isdir() or n.startswith(top + "/") for m, n in zip(members, names, strict=True)
            ):
                strip = top
        dest.mkdir(parents=True, exist_ok=True)
        for member, name in zip(members, names, strict=True):
            if strip is not None:
                if name == strip:
                    continue
                name = name[len(strip) + 1 :]
            if not name:
                continue
            member.name = name
            tar.extract(member, dest, filter="data")


def make_slug(build_dir: Path, dest: Path) -> tuple[str, int]:
    """Write ``build_dir`` as a tar.gz of ``./...`` members; return (``SHA256:<hex>``, size)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(build_dir, arcname=".")
    os.replace(tmp, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return f"SHA256:{digest}", dest.stat().st_size


class Builder:
    def __init__(
        self,
        store: Store,
        state_dir: Path,
        create_release: CreateRelease,
        web_url: Callable[[str], str],
    ) -> None:
        self.store = store
        self.work_dir = state_dir / "build"
        self.slugs_dir = state_dir / "slugs"
        self.logs_dir = state_dir / "logs" / "builds"
        self._create_release = create_release
        self._web_url = web_url
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []

    def log_path(self, build_id: str) -> Path:
        return self.logs_dir / f"{build_id}.log"

    def slug_path(self, slug_id: str) -> Path:
        return self.slugs_dir / f"{slug_id}.tgz"

    def start(self, build_id: str) -> None:
        """Run the build in a worker thread (the record exists, status pending)."""
        self.log_path(build_id).parent.mkdir(parents=True, exist_ok=True)
        self.log_path(build_id).touch()
        thread = threading.Thread(
            target=self._run, args=(build_id,), daemon=True, name=f"build-{build_id[:8]}"
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def cancel(self, build_id: str) -> None:
        with self.store.change():
            self.store.builds[build_id]["canceled"] = True
        with self._lock:
            proc = self._procs.get(build_id)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        """Cancel what still runs and wait a little for the workers."""
        with self.store.lock:
            pending = [b["id"] for b in self.store.builds.values() if b["status"] == "pending"]
        for build_id in pending:
            self.cancel(build_id)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    # -- the worker ------------------------------------------------------------------------------

    def _run(self, build_id: str) -> None:
        with self.store.lock:
            build = dict(self.store.builds[build_id])
            app = dict(self.store.apps[build["app_id"]])
        build_dir = self.work_dir / build_id
        with self.log_path(build_id).open("a", buffering=1) as out:
            try:
                release_id = self._steps(build, app, build_dir, out)
            except BuildCanceled:
                out.write("\n !     Build canceled\n")
                self._finish(build_id, "failed")
            except BuildFailed as exc:
                out.write(f" !     {exc}\n !     Push rejected, failed to compile app.\n")
                self._finish(build_id, "failed")
            except Exception as exc:  # a bug of the stand-in: fail the build, keep serving
                log.exception("build %s failed unexpectedly", build_id)
                out.write(f" !     Internal error of the sandbox builder: {exc}\n")
                self._finish(build_id, "failed")
            else:
                self._finish(build_id, "succeeded", release_id)
            finally:
                shutil.rmtree(build_dir, ignore_errors=True)

    def _check(self, build_id: str) -> None:
        with self.store.lock:
            if self.store.builds[build_id].get("canceled"):
                raise BuildCanceled()

    def _steps(self, build: Record, app: Record, build_dir: Path, out: IO[str]) -> str:
        build_id = build["id"]
        blob = build["source_blob"]
        out.write("-----> Building on the Heroku-24 stack\n")
        out.write("-----> Using buildpack: heroku/python\n")
        out.write(f"-----> Fetching source from {blob['url'].split('?', 1)[0]}\n")
        try:
            response = requests.get(blob["url"], timeout=60)
        except requests.RequestException as exc:
            raise BuildFailed(f"Unable to fetch source: {exc}") from exc
        if response.status_code != 200:
            raise BuildFailed(f"Unable to fetch source: the URL answered HTTP {response.status_code}")
        data = response.content
        self._check(build_id)
        if blob.get("checksum"):
            expected = CHECKSUM.match(blob["checksum"])
            actual = hashlib.sha256(data).hexdigest()
            if expected is None or expected.group(1).lower() != actual:
                raise BuildFailed(f"Checksum mismatch: the source is SHA256:{actual}, not {blob['checksum']}")
            out.write("       Checksum verified\n")
        try:
            unpack_source(data, build_dir)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BuildFailed(f"The source is not a gzipped tarball: {exc}") from exc
        procfile = build_dir / "Procfile"
        if not procfile.is_file():
            raise BuildFailed(
                "No Procfile found at the root of the source. The sandbox builder needs one declaring "
                "the process types, e.g.\n !         web: python -m http.server $PORT"
            )
        env = {**base_env(build_dir), **app.get("config_vars", {})}
        for hook in ("bin/pre_compile", "bin/post_compile"):
            if (build_dir / hook).is_file():
                self._check(build_id)
                out.write(f"-----> Running {hook} hook\n")
                out.flush()
                code = self._run_hook(build_id, hook, build_dir, env, out)
                if code != 0:
                    self._check(build_id)
                    raise BuildFailed(f"{hook} exited with status {code}")
        process_types = parse_procfile(procfile.read_text(errors="replace"))
        out.write("-----> Discovering process types\n")
        out.write(f"       Procfile declares types -> {', '.join(sorted(process_types)) or '(none)'}\n")
        self._check(build_id)
        out.write("-----> Compressing...\n")
        slug_id = new_id()
        checksum, size = make_slug(build_dir, self.slug_path(slug_id))
        out.write(f"       Done: {size / 1024:.1f}K\n")
        version = blob.get("version")
        stamp = now()
        with self.store.change():
            self.store.slugs[slug_id] = {
                "id": slug_id,
                "app_id": app["id"],
                "checksum": checksum,
                "size": size,
                "commit": version,
                "commit_description": blob.get("version_description"),
                "process_types": process_types,
                "token": new_id(),
                "created_at": stamp,
                "updated_at": stamp,
            }
            self.store.builds[build_id]["slug_id"] = slug_id
        self._check(build_id)
        out.write("-----> Launching...\n")
        description = build.get("description") or ("Deploy " + version[:8] if version else "Deploy")
        release_id = self._create_release(app["id"], slug_id, description)
        with self.store.lock:
            number = self.store.releases[release_id]["version"]
        out.write(f"       Released v{number}\n       {self._web_url(app['name'])} deployed to Heroku\n\n")
        return release_id

    def _run_hook(self, build_id: str, hook: str, build_dir: Path, env: dict[str, str], out: IO[str]) -> int:
        with self._lock:
            proc = subprocess.Popen(
                ["/bin/sh", hook],
                cwd=build_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            self._procs[build_id] = proc
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write("       " + line.decode(errors="replace"))
            return proc.wait(timeout=HOOK_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -1
        finally:
            with self._lock:
                self._procs.pop(build_id, None)

    def _finish(self, build_id: str, status: str, release_id: str | None = None) -> None:
        with self.store.change():
            build = self.store.builds[build_id]
            build["status"] = status
            if release_id is not None:
                build["release_id"] = release_id
            build["updated_at"] = now()


def new_build(app_id: str, source_blob: dict[str, Any], buildpacks: list[dict[str, str]] | None) -> Record:
    stamp = now()
    return {
        "id": new_id(),
        "app_id": app_id,
        "source_blob": source_blob,
        "buildpacks": buildpacks or None,
        "status": "pending",
        "release_id": None,
        "slug_id": None,
        "token": new_id(),
        "created_at": stamp,
        "updated_at": stamp,
    }
