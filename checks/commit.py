"""The ``commit`` check: the app says it runs the commit being released.

GET ``path`` (default ``/health``) and read the JSON value at ``field`` (default ``commit``; a JSON
path as in the ``http`` check, such as ``build.commit``). It passes when that value is the
release's commit or a prefix of it at least 7 characters long (apps often show 7 or 12), whatever
the HTTP status: it proves the new code is what answers, not an old dyno or another app; whether
the app is healthy is the ``http`` check's question. No answer at all is an ``error``.

This is also the example of a check of one's own: an ``Options`` model inheriting
``checks.CheckOptions`` whose fields are the YAML keys, and a ``run`` making one attempt, here
with the request and JSON helpers of ``checks.http``::

    checks:
      - commit: {path: /version, field: build.sha}
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urljoin

from pydantic import Field

from checks import CheckOptions, PositiveDuration, Target, http
from pipeline.model import CheckResult

MIN_PREFIX = 7  # the shortest abbreviation of a commit that counts


class Options(CheckOptions):
    """Keys under ``- commit:`` in ``environments/<stage>.yml``."""

    path: http.UrlPath = Field(default="/health", description="path to GET, joined to the app's web URL")
    field: http.JsonPath = Field(default="commit", description="JSON path of the commit in the answer")
    timeout: PositiveDuration = Field(default=timedelta(seconds=5), description="give up waiting after this")


def run(options: Options, target: Target) -> CheckResult:
    """One GET: passed when the app reports ``target.commit`` (or a prefix of at least 7
    characters), failed with what it reports instead, error when it does not answer."""
    name = f"commit {options.path}"
    try:
        answer = http.get(urljoin(target.web_url, options.path), options.timeout)
    except http.NoAnswer as exc:
        return CheckResult(name, "error", str(exc))
    try:
        reported = http.json_at(http.read_json(answer.body), options.field)
    except http.JsonMismatch as exc:
        return CheckResult(name, "failed", f"{answer.head}: {exc}: {http.excerpt(answer.body)}")

    if isinstance(reported, str) and len(reported) >= MIN_PREFIX and _is_prefix(reported, target.commit):
        return CheckResult(name, "passed", f"{answer.head}: {options.field} is {reported}")
    return CheckResult(
        name,
        "failed",
        f"{answer.head}: JSON {options.field!r} is {http.short(reported)}, "
        f"expected {target.commit} or its first {MIN_PREFIX} characters or more",
    )


def _is_prefix(reported: str, commit: str) -> bool:
    """Whether ``reported`` abbreviates ``commit`` (hex digits compare in either case)."""
    return commit.lower().startswith(reported.lower())
