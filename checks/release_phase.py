"""The ``release_phase`` check: the release succeeded, and what its release phase printed is kept.

Reads release ``target.release_version`` of ``target.app`` through ``target.platform``:

- ``succeeded``: passed. The detail says how many lines the release phase printed (or that the
  release has none); the ``evidence`` is its output, the last 16 KB of it at most.
- ``pending``: failed, "still running its release phase", so the controller tries again later
  (the output is not read then: a running release phase's log is followed live).
- ``failed`` or ``expired``: failed; the detail quotes the output's last ``tail_lines`` lines and
  the evidence holds the output.

It is an ``error`` when it cannot look: no platform, no release version, Heroku not answering.
"""

from __future__ import annotations

from pydantic import Field

from checks import CheckOptions, Target
from pipeline.errors import ExternalError
from pipeline.model import CheckResult, HerokuRelease

NAME = "release_phase"
MAX_EVIDENCE_BYTES = 16 * 1024
MAX_LINE_CHARS = 200  # of each line quoted in the detail
FINISHED = ("succeeded", "failed", "expired")


class Options(CheckOptions):
    """Keys under ``- release_phase:`` in ``environments/<stage>.yml``."""

    tail_lines: int = Field(
        default=3, ge=0, le=20, description="how many of the output's last lines a failure's detail quotes"
    )


def run(options: Options, target: Target) -> CheckResult:
    """One look at the release: passed (succeeded), failed (pending, failed, expired) or error."""
    if target.platform is None:
        return CheckResult(NAME, "error", "this check reads Heroku, and the target has no platform")
    if target.release_version is None:
        return CheckResult(NAME, "error", f"no release version of {target.app} to look at")
    label = f"v{target.release_version}"
    try:
        release = target.platform.release(target.app, target.release_version)
    except ExternalError as exc:
        return CheckResult(NAME, "error", f"could not read {label} of {target.app}: {exc}")
    if release.status == "pending":
        return CheckResult(NAME, "failed", f"{label} is still running its release phase")
    if release.status not in FINISHED:
        return CheckResult(NAME, "error", f"{label} has status {release.status!r}, unknown to this check")

    try:
        output = target.platform.release_output(release) if release.output_stream_url else ""
    except ExternalError as exc:
        if release.status == "succeeded":
            return CheckResult(NAME, "error", f"{label} succeeded, but its output is unreadable: {exc}")
        return CheckResult(NAME, "failed", f"{label} {release.status}; its output is unreadable: {exc}")
    summary = f"{label} {release.status}; {_printed(release, output)}"
    if release.status == "succeeded":
        return CheckResult(NAME, "passed", summary, _kept(output))
    tail = _tail(output, options.tail_lines)
    return CheckResult(NAME, "failed", summary + (f", ending: {tail}" if tail else ""), _kept(output))


def _printed(release: HerokuRelease, output: str) -> str:
    """How much the release phase printed, in words."""
    if not release.output_stream_url:
        return "it has no release phase"
    lines = len(output.splitlines())
    if not lines:
        return "its release phase printed nothing"
    return f"release phase printed {lines} line{'' if lines == 1 else 's'}"


def _tail(output: str, count: int) -> str:
    """The last ``count`` non-blank lines on one line, " | " between them, each cut short."""
    lines = [line.strip() for line in output.splitlines() if line.strip()][-count:] if count else []
    return " | ".join(line[:MAX_LINE_CHARS] + ("..." if len(line) > MAX_LINE_CHARS else "") for line in lines)


def _kept(output: str) -> str:
    """``output`` when it fits in ``MAX_EVIDENCE_BYTES`` (UTF-8); else its end, from a line start,
    after a first line saying how much was left out, all within ``MAX_EVIDENCE_BYTES``."""
    data = output.encode()
    if len(data) <= MAX_EVIDENCE_BYTES:
        return output
    room = MAX_EVIDENCE_BYTES - 100  # for the note
    end = data[-room:].decode("utf-8", "ignore")  # a character cut in two is dropped
    end = end[end.find("\n") + 1 :] if "\n" in end[:-1] else end
    dropped = len(data) - len(end.encode())
    return f"[trimmed: the first {dropped} of {len(data)} bytes are left out]\n{end}"
