"""A commit's source as a gzipped tarball, fetched with git over HTTPS: the one way Bitbucket
documents for every kind of token (the website host's ``/get/<rev>.tar.gz`` documents none).

Into a scratch bare repository, ``git fetch --depth 1 <clone URL> <commit>`` (git protocol v2
allows asking for any commit reachable from a branch); a server that refuses an unadvertised
commit gets the commit's branch instead, shallow first, then whole. Then ``git archive``.

The token never reaches a command line or a URL: git gets it as an ``http.extraHeader`` through
``GIT_CONFIG_*`` environment variables of its own process. No user or system git configuration,
credential helper or prompt is involved.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from pipeline.adapters import http
from pipeline.adapters.bitbucket.credential import BitbucketCredential
from pipeline.errors import ExternalError, NotFound, Permanent, Temporary

SERVICE = "bitbucket"
BRANCH_DEPTH = 100  # the shallow try at a branch, before the whole branch
REFUSED_OBJECT = ("unadvertised object", "not our ref", "couldn't find remote ref", "no such remote ref")
REFUSED_AUTH = ("authentication failed", "http 401", "http 403", "could not read username", "access denied")
UNREACHABLE = (
    "could not resolve host",
    "connection refused",
    "timed out",
    "operation too slow",
    "rpc failed",
    "http 5",
    "the remote end hung up",
    "early eof",
    "connection reset",
)


def source_tarball(
    clone_url: str,
    commit: str,
    credential: BitbucketCredential,
    *,
    prefix: str,
    branch: str | None = None,
    timeout: float = 300.0,
) -> bytes:
    """The tree of ``commit`` as a gzipped tarball whose entries sit under ``prefix/``."""
    with tempfile.TemporaryDirectory(prefix="pipeline-source-") as scratch:
        git = _Git(Path(scratch), credential, timeout)
        git.run(
            "init",
            "--quiet",
            "--bare",
            str(git.repo),
            what="preparing a scratch repository",
            cwd=Path(scratch),
        )
        what = f"fetching {commit[:12]} from {clone_url}"
        try:
            git.fetch(clone_url, commit, what, depth=1)
        except NotFound:
            if not branch:
                raise
            git.fetch(clone_url, f"refs/heads/{branch}", what, depth=BRANCH_DEPTH)
            if not git.has(commit):
                git.fetch(clone_url, f"refs/heads/{branch}", what, depth=None)
            if not git.has(commit):
                raise NotFound(
                    SERVICE, f"commit {commit[:12]} is not on branch {branch} of {clone_url}"
                ) from None
        answer = git.run(
            "archive", "--format=tar.gz", f"--prefix={prefix}/", commit, what=f"archiving {commit[:12]}"
        )
        return answer.stdout


class _Git:
    def __init__(self, scratch: Path, credential: BitbucketCredential, timeout: float) -> None:
        self.repo = scratch / "repo.git"
        self.credential = credential
        self.timeout = timeout
        home = scratch / "home"
        home.mkdir()
        settings = {
            "protocol.version": "2",
            "credential.helper": "",
            "http.extraHeader": credential.git_header(),
            "http.lowSpeedLimit": "1000",
            "http.lowSpeedTime": str(int(timeout)),
            "core.askPass": "",
        }
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "LC_ALL": "C",
            "GIT_CONFIG_COUNT": str(len(settings)),
        }
        for index, (key, value) in enumerate(settings.items()):
            self.env[f"GIT_CONFIG_KEY_{index}"] = key
            self.env[f"GIT_CONFIG_VALUE_{index}"] = value

    def fetch(self, url: str, ref: str, what: str, *, depth: int | None) -> None:
        shallow = ["--depth", str(depth)] if depth else []
        self.run("fetch", "--quiet", "--no-tags", *shallow, url, ref, what=what)

    def has(self, commit: str) -> bool:
        found = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            timeout=self.timeout,
            check=False,
        )
        return found.returncode == 0

    def run(self, *args: str, what: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        """``git <args>`` in ``cwd`` (the scratch repository by default); a failure becomes ours."""
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd or self.repo,
                env=self.env,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise Permanent(
                SERVICE, f"git is not installed, needed for {what}: the controller fetches sources with git"
            ) from None
        except subprocess.TimeoutExpired:
            raise Temporary(
                SERVICE, f"no answer in {self.timeout:g}s while {what}", retry_after=30.0
            ) from None
        if done.returncode != 0:
            raise self._error(what, done.stderr.decode("utf-8", "replace"))
        return done

    def _error(self, what: str, stderr: str) -> ExternalError:
        evidence = " ".join(http.redact(stderr, (self.credential.token,)).split())[-http.EVIDENCE_CHARS :]
        text = stderr.lower()
        if any(mark in text for mark in REFUSED_OBJECT):
            return NotFound(SERVICE, f"the commit was not found while {what}", evidence=evidence)
        if any(mark in text for mark in REFUSED_AUTH):
            message = (
                f"{self.credential.variables} ({self.credential.describe()}) was refused by git over "
                f"HTTPS (user name {self.credential.git_user}) while {what}: check that the token is "
                "valid and may read the repository"
            )
            return Permanent(SERVICE, message, evidence=evidence)
        if any(mark in text for mark in UNREACHABLE):
            return Temporary(SERVICE, f"git failed while {what}", evidence=evidence, retry_after=30.0)
        return Permanent(SERVICE, f"git failed while {what}", evidence=evidence)
