"""Verification: each check tried with retries and backoff, then held for its soak; dynos that must
run the new release first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline.domain.actions import Action, ReleaseUpdate, Update, Wait, WaitingOn
from pipeline.domain.observation import Observation
from pipeline.domain.policy import CheckRule, Policy, Verification
from pipeline.domain.text import iso, span_text
from pipeline.model import CheckProgress, CheckResult, Dyno, EventKind, Release


class Verifying(StrEnum):
    """What a verification is of, as its messages name it, with the kinds of its checks' events."""

    STAGING = "Staging"
    PRODUCTION = "Production"
    ROLLBACK = "Rollback"  # production after a rollback, or an environment a person rolled back

    @property
    def check_passed(self) -> EventKind:
        return EventKind(f"{self.value}CheckPassed")

    @property
    def check_failed(self) -> EventKind:
        return EventKind(f"{self.value}CheckFailed")


@dataclass(frozen=True)
class Attempt:
    """An attempt of a check worth an event of its own: a failure to be tried again, a soak that
    starts, or a pass with evidence to keep."""

    kind: EventKind
    reason: str
    evidence: str = ""


@dataclass(frozen=True)
class Verdict:
    """What one look at a verification says: ``passed``; ``failed`` (why, with the failing
    attempt's ``evidence``); or neither, going on (``wait`` says what for). ``progress`` is where
    every check stands now, ``attempts`` the attempts worth recording, and ``keep`` says the
    progress moved without one (a soak goes on, or the first look): save it without an event."""

    passed: bool = False
    failed: str | None = None
    evidence: str = ""
    progress: tuple[CheckProgress, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    keep: bool = False
    wait: Wait | None = None


def verify(
    rules: Sequence[CheckRule],
    progress: Sequence[CheckProgress],
    results: Mapping[int, CheckResult] | None,
    dynos: Sequence[Dyno] | None,
    *,
    stage: Verifying,
    version: int | None,
    started: datetime | None,
    now: datetime,
    dyno_start_timeout: timedelta,
) -> Verdict:
    """Judge one look at a verification (a stage after a deploy, production after a rollback).

    Checks count only once every dyno runs ``version`` (Heroku restarts dynos after a release
    succeeds; a check that reached an old one would prove nothing); a dyno that crashed on it, or
    dynos not up within ``dyno_start_timeout`` of ``started``, fail at once. Then each check in
    ``results`` (the attempts made now) moves its progress: a pass starts (or continues) its soak
    and it is done once it has passed for ``soak``; a failure during the soak fails; any other
    failure is tried again after the rule's wait, ``retries`` times. All done: passed."""
    if dynos is not None:
        problem, crashed = dyno_problem(tuple(dynos), version)
        if problem is not None:
            if crashed:
                return Verdict(failed=f"{stage}: {problem}")
            if now - (started or now) > dyno_start_timeout:
                return Verdict(failed=f"{stage}: {problem} after {span_text(dyno_start_timeout)}")
            return Verdict(wait=Wait(WaitingOn.HEROKU, f"{stage}: {problem}"))
    current = list(progress) if len(progress) == len(rules) else [CheckProgress(r.name) for r in rules]
    attempts: list[Attempt] = []
    for index, result in sorted((results or {}).items()):
        rule, before = rules[index], current[index]
        if result.passed:
            since = before.passing_since or now
            soaked = now - since >= rule.soak
            current[index] = CheckProgress(
                rule.name, 0, since, None if soaked else now + rule.interval, soaked, result.detail
            )
            if before.passing_since is None and (not soaked or result.evidence):
                # Worth an event of its own: a soak starts, or there is evidence to keep.
                hold = f"; holding it until {iso(since + rule.soak)}" if not soaked else ""
                attempts.append(
                    Attempt(stage.check_passed, f"{rule.name}: {result.detail}{hold}", result.evidence)
                )
            continue
        if before.passing_since is not None:
            held = span_text(now - before.passing_since)
            soak = span_text(rule.soak)
            why = f"{stage} check {rule.name} failed {held} into its {soak} soak: {result.detail}"
            return Verdict(failed=why, evidence=result.evidence, progress=tuple(current))
        failures = before.failures + 1
        if failures > rule.retries:
            why = f"{stage} check {rule.name} did not pass in {failures} attempt(s): {result.detail}"
            return Verdict(failed=why, evidence=result.evidence, progress=tuple(current))
        pause = rule.wait_after(failures)
        current[index] = CheckProgress(rule.name, failures, None, now + pause, False, result.detail)
        reason = (
            f"{rule.name}: attempt {failures} of {rule.retries + 1}: {result.detail}; "
            f"trying again in {span_text(pause)}"
        )
        attempts.append(Attempt(stage.check_failed, reason, result.evidence))
    done = tuple(current)
    if all(p.done for p in done):
        return Verdict(passed=True, progress=done, attempts=tuple(attempts))
    keep = not attempts and done != tuple(progress)
    due = min((p.next_at for p in done if not p.done and p.next_at is not None), default=None)
    return Verdict(
        progress=done,
        attempts=tuple(attempts),
        keep=keep,
        wait=Wait(WaitingOn.RETRY, progress_text(stage, done), due),
    )


def verify_release(
    release: Release,
    seen: Observation,
    rules: Verification,
    stage: Verifying,
    version: int | None,
    policy: Policy,
    now: datetime,
) -> Verdict:
    """``verify`` for a release: its checks' progress, what this pass saw, since its verification began."""
    return verify(
        rules.checks,
        release.check_progress,
        seen.checks,
        seen.dynos,
        stage=stage,
        version=version,
        started=release.verification_started_at,
        now=now,
        dyno_start_timeout=policy.dyno_start_timeout,
    )


def release_updates(verdict: Verdict) -> tuple[ReleaseUpdate, ...]:
    """The release's updates for a verdict: an event per attempt worth one, each keeping the new
    progress, or the progress saved without an event."""
    if verdict.keep:
        return (
            Update(EventKind.CheckProgress, "", fields={"check_progress": verdict.progress}, silent=True),
        )
    return tuple(
        Update(a.kind, a.reason, fields={"check_progress": verdict.progress}, detail=a.evidence)
        for a in verdict.attempts
    )


def release_actions(verdict: Verdict) -> tuple[Action, ...]:
    """A verification going on, for a release: its updates, then what it waits on."""
    wait = (verdict.wait,) if verdict.wait is not None else ()
    return (*release_updates(verdict), *wait)


def progress_text(stage: Verifying, progress: Sequence[CheckProgress]) -> str:
    """Where the checks stand, in words that do not change from one pass to the next."""
    parts = []
    for p in progress:
        if p.done:
            parts.append(f"{p.name} passed")
        elif p.passing_since is not None:
            parts.append(f"{p.name} passing, holding until {iso(p.next_at) if p.next_at else 'now'}")
        elif p.failures:
            parts.append(
                f"{p.name} failed {p.failures} time(s), next try {iso(p.next_at) if p.next_at else 'now'}"
            )
        else:
            parts.append(f"{p.name} not tried yet")
    return f"{stage} checks: " + ("; ".join(parts) or "none")


def checks_summary(progress: Sequence[CheckProgress]) -> str:
    """The checks' last word each, once they passed."""
    if not progress:
        return "no checks configured"
    return "; ".join(f"{p.name}: {p.detail}" for p in progress)


def dyno_problem(dynos: tuple[Dyno, ...], version: int | None) -> tuple[str | None, bool]:
    """Why the dynos do not (yet) run release ``version``, and whether one of them crashed on it."""
    crashed = [d.name for d in dynos if d.state == "crashed" and d.release_version == version]
    if crashed:
        return f"{', '.join(crashed)} crashed running v{version}", True
    behind = [d for d in dynos if d.state != "up" or d.release_version != version]
    if behind:
        listed = ", ".join(f"{d.name} {d.state} on v{d.release_version}" for d in behind)
        return f"waiting for the dynos to run v{version} ({listed})", False
    return None, False
