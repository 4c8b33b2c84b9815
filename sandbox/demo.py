"""The demo app the sandbox seeds into the Bitbucket repository, and the commits that break it.

``demo_files()`` is every file under ``sandbox/demoapp/`` as it is committed (repository path ->
content). The other helpers return the files a test or a demo commits (for instance through
Bitbucket's ``POST /src``) to get a behaviour: ``health_file("fail-after", 30)``,
``breaking_change("crash-after", 5)``, ``migration_file(failing=True)``.
"""

from __future__ import annotations

from pathlib import Path

DEMOAPP = Path(__file__).resolve().parent / "demoapp"
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".sqlite3", ".swp")
SKIPPED_NAMES = {".DS_Store"}

HEALTH_MODES = ("ok", "fail", "fail-after", "crash-after", "slow", "fail-on")
TIMED_MODES = ("fail-after", "crash-after", "slow")

GOOD_MIGRATION = """-- A note on each claim.
ALTER TABLE claims ADD COLUMN note TEXT;
"""
FAILING_MIGRATION = """-- Fails on purpose: the table does not exist, so the release phase exits non-zero.
ALTER TABLE no_such_table ADD COLUMN note TEXT;
"""


def demo_files() -> dict[str, bytes]:
    """Every file of the demo app by its path in the repository (``migrations/001_...sql``)."""
    files: dict[str, bytes] = {}
    for path in sorted(DEMOAPP.rglob("*")):
        relative = path.relative_to(DEMOAPP)
        if not path.is_file() or SKIPPED_DIRS.intersection(relative.parts[:-1]):
            continue
        if path.name in SKIPPED_NAMES or path.name.endswith(SKIPPED_SUFFIXES):
            continue
        files[relative.as_posix()] = path.read_bytes()
    return files


def health_file(mode: str = "ok", seconds: float | None = None, app: str | None = None) -> dict[str, bytes]:
    """The HEALTH file for a mode: ``ok``, ``fail``, ``fail-after``/``crash-after``/``slow`` with
    ``seconds``, or ``fail-on`` with ``app`` (healthy everywhere but on the Heroku app of that
    name: "works on staging, breaks on production"). Raises ValueError for anything the app would
    refuse."""
    if mode not in HEALTH_MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(HEALTH_MODES)}")
    if mode == "fail-on":
        if not app or any(c.isspace() for c in app):
            raise ValueError("app: fail-on needs the name of a Heroku app")
        return {"HEALTH": f"fail-on {app}\n".encode()}
    if app is not None:
        raise ValueError(f"app: {mode} takes no app")
    if mode in TIMED_MODES:
        if seconds is None or seconds < 0:
            raise ValueError(f"seconds: {mode} needs a number of seconds >= 0")
        return {"HEALTH": f"{mode} {seconds:g}\n".encode()}
    if seconds is not None:
        raise ValueError(f"seconds: {mode} takes no seconds")
    return {"HEALTH": f"{mode}\n".encode()}


def migration_file(
    name: str = "add_note", *, failing: bool = False, number: int | None = None
) -> dict[str, bytes]:
    """A new migration, numbered after the demo app's own unless ``number`` is given. A failing
    one makes the release phase exit non-zero, so the release fails and is not deployed."""
    if number is None:
        numbers = [int(p.split("/")[1][:3]) for p in demo_files() if p.startswith("migrations/")]
        number = max(numbers, default=0) + 1
    body = FAILING_MIGRATION if failing else GOOD_MIGRATION
    return {f"migrations/{number:03d}_{name}.sql": body.encode()}


def breaking_change(
    mode: str = "fail", seconds: float | None = None, app: str | None = None
) -> dict[str, bytes]:
    """The files of a commit that breaks the app: a HEALTH mode (``fail``, ``fail-after``,
    ``crash-after``, ``slow``, ``fail-on``) or ``migration`` (a migration that fails in the release
    phase)."""
    if mode == "migration":
        return migration_file("break_release", failing=True)
    if mode == "ok":
        raise ValueError("mode: 'ok' does not break anything; use health_file('ok') to repair")
    return health_file(mode, seconds, app)
