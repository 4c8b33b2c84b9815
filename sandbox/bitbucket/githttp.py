"""Git's smart HTTP protocol, served by ``git http-backend`` run as a CGI program per request.

``serve`` hands one request to ``git http-backend`` with ``GIT_PROJECT_ROOT`` at the stand-in's
bare repositories and returns its answer (status, headers, body). The ``Git-Protocol`` header
goes through as ``HTTP_GIT_PROTOCOL``, so protocol v2 works; a gzip-encoded request body goes
through with its ``Content-Encoding``. Git's own configuration is isolated from the machine's
(no system or global config), as in ``gitrepo``: nothing like ``uploadpack.allowReachableSHA1InWant``
is set, so the backend behaves as git's defaults make it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

BACKEND_TIMEOUT = 120.0


class BackendError(RuntimeError):
    """``git http-backend`` failed to answer; the message holds its stderr."""


@dataclass(frozen=True)
class CgiAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _parse(output: bytes) -> CgiAnswer:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = output.partition(separator)
        if found:
            break
    else:
        raise BackendError("git http-backend wrote no header block")
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return CgiAnswer(status, headers, body)


def serve(
    project_root: Path,
    *,
    method: str,
    path_info: str,
    query: str,
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    git_protocol: str | None,
    remote_user: str,
) -> CgiAnswer:
    """Run ``git http-backend`` for one request of ``path_info`` (``/<ws>/<repo>.git/...``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in ("HOME", "XDG_CONFIG_HOME")
    }
    env.update(
        GIT_PROJECT_ROOT=str(project_root),
        GIT_HTTP_EXPORT_ALL="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        HOME=str(project_root),
        GATEWAY_INTERFACE="CGI/1.1",
        SERVER_PROTOCOL="HTTP/1.1",
        REQUEST_METHOD=method,
        PATH_INFO=path_info,
        QUERY_STRING=query,
        REMOTE_USER=remote_user,
        REMOTE_ADDR="127.0.0.1",
        CONTENT_LENGTH=str(len(body)),
    )
    if content_type:
        env["CONTENT_TYPE"] = content_type
    if content_encoding:
        env["HTTP_CONTENT_ENCODING"] = content_encoding
    if git_protocol:
        env["HTTP_GIT_PROTOCOL"] = git_protocol
    result = subprocess.run(
        ["git", "http-backend"],
        input=body,
        capture_output=True,
        env=env,
        timeout=BACKEND_TIMEOUT,
        check=False,
    )
    if result.returncode != 0 and not result.stdout:
        raise BackendError(result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}")
    return _parse(result.stdout)
