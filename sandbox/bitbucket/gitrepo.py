"""A bare git repository driven through git's plumbing: no work tree, safe under concurrency.

Commits are made with a temporary index (``GIT_INDEX_FILE``), ``write-tree`` and ``commit-tree``;
branches move with ``update-ref <ref> <new> <old>``, a compare-and-swap that fails (``RefMoved``)
when another writer moved the branch first. Merges use ``git merge-tree --write-tree`` (git >= 2.38).
Every method is a thin, typed wrapper over one or two git commands; nothing is cached.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ZERO = "0" * 40
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_SEP_FIELD = "\x1f"
_SEP_RECORD = "\x1e"
_LOG_FORMAT = _SEP_FIELD.join(["%H", "%P", "%an", "%ae", "%aI", "%B"]) + _SEP_RECORD


class GitError(RuntimeError):
    """A git command failed; the message holds its stderr."""


class RefMoved(GitError):
    """A compare-and-swap on a ref failed: the ref no longer points where the caller thought."""


class MergeConflict(GitError):
    """``merge-tree`` found conflicts; ``paths`` lists the conflicted files."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__("conflicts in " + ", ".join(paths))
        self.paths = paths


@dataclass(frozen=True)
class CommitInfo:
    """One commit as git records it. ``date`` is strict ISO 8601 with the author's offset."""

    hash: str
    parents: list[str]
    author_name: str
    author_email: str
    date: str
    message: str

    @property
    def author_raw(self) -> str:
        return f"{self.author_name} <{self.author_email}>"


@dataclass(frozen=True)
class Identity:
    """Who a commit is by, and when (``when`` is anything git accepts, e.g. ISO 8601)."""

    name: str
    email: str
    when: str | None = None


def valid_branch_name(name: str) -> bool:
    """Whether git would accept ``refs/heads/<name>``."""
    if not name or name.startswith("-"):
        return False
    result = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True, check=False
    )
    return result.returncode == 0


class GitRepo:
    """A bare repository at ``path`` (created by ``init`` when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # -- plumbing -----------------------------------------------------------------------------

    def _env(self, identity: Identity | None = None, index: str | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("GIT_") and k not in ("HOME", "XDG_CONFIG_HOME")
        }
        env.update(
            GIT_DIR=str(self.path),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            HOME=str(self.path),
            GIT_TERMINAL_PROMPT="0",
        )
        if identity is not None:
            env.update(
                GIT_AUTHOR_NAME=identity.name,
                GIT_AUTHOR_EMAIL=identity.email,
                GIT_COMMITTER_NAME=identity.name,
                GIT_COMMITTER_EMAIL=identity.email,
            )
            if identity.when:
                env.update(GIT_AUTHOR_DATE=identity.when, GIT_COMMITTER_DATE=identity.when)
        if index is not None:
            env["GIT_INDEX_FILE"] = index
        return env

    def _git(
        self,
        *args: str,
        input: bytes | None = None,
        identity: Identity | None = None,
        index: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            ["git", *args],
            input=input,
            capture_output=True,
            env=self._env(identity, index),
            check=False,
        )
        if check and result.returncode != 0:
            raise GitError(f"git {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
        return result

    def _out(self, *args: str, **kwargs: object) -> str:
        return self._git(*args, **kwargs).stdout.decode().strip()  # type: ignore[arg-type]

    # -- repository ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / "HEAD").exists()

    def init(self, main_branch: str) -> None:
        """Create the bare repository (idempotent) with HEAD on ``main_branch``."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            self._git("init", "--bare", "--quiet", str(self.path))
        self._git("symbolic-ref", "HEAD", f"refs/heads/{main_branch}")

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    # -- refs ---------------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        """Branch name -> full hash of its tip."""
        out = self._out("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
        result: dict[str, str] = {}
        for line in out.splitlines():
            sha, ref = line.split(" ", 1)
            result[ref.removeprefix("refs/heads/")] = sha
        return result

    def branch(self, name: str) -> str | None:
        """The tip of branch ``name``, or None."""
        res = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}", check=False)
        return res.stdout.decode().strip() if res.returncode == 0 else None

    def set_branch(self, name: str, new: str, old: str | None) -> None:
        """Point ``name`` at ``new`` if it still points at ``old`` (None: must not exist yet)."""
        res = self._git("update-ref", f"refs/heads/{name}", new, old or ZERO, check=False)
        if res.returncode != 0:
            raise RefMoved(res.stderr.decode(errors="replace").strip())

    def delete_branch(self, name: str, old: str) -> None:
        res = self._git("update-ref", "-d", f"refs/heads/{name}", old, check=False)
        if res.returncode != 0:
            raise RefMoved(res.stderr.decode(errors="replace").strip())

    def resolve(self, rev: str) -> str | None:
        """A branch name, tag name, or full/short commit hash -> the full commit hash, else None."""
        if not rev or rev.startswith("-") or ".." in rev:
            return None
        candidates = [f"refs/heads/{rev}", f"refs/tags/{rev}"]
        if _HEX.match(rev):
            candidates.append(rev)
        for candidate in candidates:
            res = self._git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", check=False)
            if res.returncode == 0:
                return res.stdout.decode().strip()
        return None

    # -- commits ------------------------------------------------------------------------------

    @staticmethod
    def _parse_log(out: str) -> list[CommitInfo]:
        commits = []
        for record in out.split(_SEP_RECORD):
            record = record.lstrip("\n")
            if not record:
                continue
            sha, parents, name, email, date, message = record.split(_SEP_FIELD, 5)
            if message and not message.endswith("\n"):
                message += "\n"  # %B drops the final newline that git stored
            commits.append(CommitInfo(sha, parents.split(), name, email, date, message))
        return commits

    def commit(self, sha: str) -> CommitInfo:
        return self._parse_log(self._out("log", "-1", "--no-walk", f"--format={_LOG_FORMAT}", sha))[0]

    def log(
        self, include: list[str], exclude: list[str], skip: int = 0, limit: int | None = None
    ) -> list[CommitInfo]:
        """Commits reachable from ``include`` (full hashes) but not from ``exclude``, newest first
        in topological order."""
        if not include:
            return []
        args = ["log", "--topo-order", f"--format={_LOG_FORMAT}", f"--skip={skip}"]
        if limit is not None:
            args.append(f"--max-count={limit}")
        args += include + [f"^{e}" for e in exclude] + ["--"]
        return self._parse_log(self._git(*args).stdout.decode())

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self._git("merge-base", "--is-ancestor", ancestor, descendant, check=False).returncode == 0

    def tree_of(self, sha: str) -> str:
        return self._out("rev-parse", f"{sha}^{{tree}}")

    def file(self, sha: str, path: str) -> bytes | None:
        res = self._git("cat-file", "blob", f"{sha}:{path}", check=False)
        return res.stdout if res.returncode == 0 else None

    def write_commit(
        self,
        parents: list[str],
        files: dict[str, bytes],
        deletions: list[str],
        message: str,
        identity: Identity,
    ) -> str:
        """A new commit on top of ``parents[0]`` (if any) with ``files`` written and ``deletions``
        removed. Refs are not touched: the caller moves the branch."""
        fd, index = tempfile.mkstemp(prefix="index.", dir=self.path)
        os.close(fd)
        os.unlink(index)  # git wants to create the index itself
        try:
            if parents:
                self._git("read-tree", parents[0], index=index)
            else:
                self._git("read-tree", "--empty", index=index)
            for path, content in sorted(files.items()):
                blob = self._out("hash-object", "-w", "--stdin", input=content)
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", index=index)
            if deletions:  # mode 0 removes a path; --force-remove would want a work tree
                removals = "".join(f"0 {ZERO}\t{path}\n" for path in deletions)
                self._git("update-index", "--index-info", input=removals.encode(), index=index)
            tree = self._out("write-tree", index=index)
        finally:
            Path(index).unlink(missing_ok=True)
        return self.commit_tree(tree, parents, message, identity)

    def commit_tree(self, tree: str, parents: list[str], message: str, identity: Identity) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self._out(*args, input=message.encode(), identity=identity)

    def merge_tree(self, ours: str, theirs: str) -> str:
        """The tree of merging ``theirs`` into ``ours``; raises MergeConflict."""
        res = self._git(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs, check=False
        )
        lines = res.stdout.decode().splitlines()
        if res.returncode == 1:
            raise MergeConflict([line for line in lines[1:] if line])
        if res.returncode != 0:
            raise GitError(f"git merge-tree failed: {res.stderr.decode(errors='replace').strip()}")
        return lines[0].strip()

    def archive(self, sha: str, prefix: str) -> bytes:
        """``git archive --format=tar.gz`` of ``sha`` with every path under ``prefix``/ (deterministic)."""
        return self._git("archive", "--format=tar.gz", f"--prefix={prefix}/", sha).stdout
