"""The decision logic with plain values: no I/O, no clock, no sandbox."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline import domain
from pipeline.domain import ApprovalPolicy, CheckRule, Observation, Policy, Verification, WaitingOn
from pipeline.model import (
    Backup,
    CheckProgress,
    CheckResult,
    Commit,
    DeployWindows,
    Dyno,
    EnvironmentState,
    HerokuBuild,
    HerokuRelease,
    Intent,
    Merge,
    Participant,
    Person,
    Promotion,
    PromotionTarget,
    PullRequest,
    PullRequestActivity,
    Release,
    State,
    Window,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
COMMIT = "a" * 40
DEV = Person("dev", "{dev}", "1:dev", "Dev")
PO = Person("po", "{po}", "1:po", "Product Owner")
OPS = Person("ops", "{ops}", "1:ops", "Ops")
BOT = Person("controller", "{controller}", "1:controller", "Release controller")
POLICY = Policy(
    required_builds=("tests",),
    approval=ApprovalPolicy(approvers=frozenset({"po", "ops"}), min_approvals=1, controller_account=BOT),
    staging=Verification((CheckRule("http /health", retries=2, interval=timedelta(seconds=2)),)),
    production=Verification((CheckRule("http /health", retries=1, interval=timedelta(seconds=2)),)),
)


def approval_rules(**changes: Any) -> Policy:
    """POLICY with its approval rules changed."""
    return replace(POLICY, approval=replace(POLICY.approval, **changes))


def release(state: State = State.DETECTED, **fields: Any) -> Release:
    base = Release(
        pipeline="claims",
        commit=COMMIT,
        branch="develop",
        state=state,
        created_at=NOW - timedelta(hours=1),
        updated_at=NOW - timedelta(minutes=5),
        id=7,
        commits=(Commit(COMMIT, "Fix the claim form", "Dev <dev@whisper.example>", DEV, NOW),),
        staging_app="claims-staging",
        production_app="claims-production",
    )
    return replace(base, **fields)


def kinds(decision: domain.Decision) -> list[str]:
    return [type(a).__name__ if not isinstance(a, domain.Update) else a.kind for a in decision.actions]


def final_state(decision: domain.Decision) -> State | None:
    states = [a.to for a in decision.actions if isinstance(a, domain.Update) and a.to]
    return states[-1] if states else None


# --- Gate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected_state", "waits_on"),
    [
        ({"tests": "SUCCESSFUL"}, State.GATED, None),
        ({"tests": "SUCCESSFUL", "lint": "FAILED"}, State.GATED, None),  # not required: does not count
        ({"tests": "INPROGRESS"}, None, WaitingOn.CI),
        ({}, None, WaitingOn.CI),
        ({"tests": "FAILED"}, State.GATE_FAILED, None),
        ({"tests": "STOPPED"}, State.GATE_FAILED, None),
    ],
)
def test_the_gate_reads_required_builds(
    statuses: dict[str, str], expected_state: State | None, waits_on: WaitingOn | None
) -> None:
    decision = domain.decide(release(), Observation(build_statuses=statuses), POLICY, NOW)
    assert final_state(decision) == expected_state
    assert (decision.wait.on if decision.wait else None) == waits_on


def test_no_required_builds_passes_the_gate() -> None:
    decision = domain.decide(
        release(), Observation(build_statuses={}), replace(POLICY, required_builds=()), NOW
    )
    assert final_state(decision) == State.GATED


def test_a_gate_failure_names_the_build() -> None:
    decision = domain.decide(release(), Observation(build_statuses={"tests": "FAILED"}), POLICY, NOW)
    update = decision.actions[0]
    assert isinstance(update, domain.Update) and "tests FAILED" in update.reason


@pytest.mark.parametrize("state", [State.DETECTED, State.GATED])
def test_a_newer_head_supersedes_a_candidate_that_has_not_touched_staging(state: State) -> None:
    newer = release(id=8, commit="b" * 40)
    decision = domain.decide(release(state), Observation(newer=newer, build_statuses={}), POLICY, NOW)
    assert final_state(decision) == State.SUPERSEDED
    assert "DeclinePullRequest" not in kinds(decision)


# --- Staging ------------------------------------------------------------------------------------


def test_gated_deploys_to_staging_unless_staging_is_busy() -> None:
    assert kinds(domain.decide(release(State.GATED), Observation(), POLICY, NOW)) == [
        "PostStatus",
        "StagingDeployStarted",
        "DeployToStaging",
    ]
    busy = domain.decide(release(State.GATED), Observation(staging_busy_with="release 3"), POLICY, NOW)
    assert busy.wait is not None and busy.wait.on == WaitingOn.STAGE and not busy.does_something


def build(status: str = "pending", release_id: str | None = None) -> HerokuBuild:
    return HerokuBuild("b-1", status, COMMIT, release_id, "slug-1", NOW)


def heroku_release(status: str, version: int = 12, id: str = "r-12", slug: str = "slug-1") -> HerokuRelease:
    return HerokuRelease(id, version, status, slug, status == "succeeded", "Deploy", NOW)


def test_staging_deploying_starts_a_build_when_none_exists() -> None:
    assert kinds(domain.decide(release(State.STAGING_DEPLOYING), Observation(), POLICY, NOW)) == [
        "DeployToStaging"
    ]


def test_a_build_requested_before_a_crash_is_waited_for_then_requested_again() -> None:
    marked = release(
        State.STAGING_DEPLOYING, pending_action="deploy", pending_since=NOW - timedelta(seconds=10)
    )
    decision = domain.decide(marked, Observation(), POLICY, NOW)
    assert not decision.does_something and decision.wait and decision.wait.on == WaitingOn.HEROKU
    late = replace(marked, pending_since=NOW - timedelta(minutes=10))
    assert kinds(domain.decide(late, Observation(), POLICY, NOW)) == ["DeployToStaging"]


def test_a_refused_build_is_requested_again_at_once() -> None:
    marked = release(
        State.STAGING_DEPLOYING, pending_action="deploy", pending_since=NOW - timedelta(seconds=1)
    )
    assert kinds(domain.decide(marked, Observation(effect_refused=True), POLICY, NOW)) == ["DeployToStaging"]


def test_a_build_found_by_its_commit_is_adopted() -> None:
    decision = domain.decide(release(State.STAGING_DEPLOYING), Observation(build=build()), POLICY, NOW)
    assert kinds(decision) == ["StagingBuildAdopted", "Wait"]
    update = decision.actions[0]
    assert isinstance(update, domain.Update) and update.fields["staging_build_id"] == "b-1"


def test_a_running_build_is_waited_for() -> None:
    decision = domain.decide(
        release(State.STAGING_DEPLOYING, staging_build_id="b-1"), Observation(build=build()), POLICY, NOW
    )
    assert not decision.does_something and decision.wait and decision.wait.on == WaitingOn.HEROKU


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (Observation(build=build("failed")), State.STAGING_FAILED),
        (
            Observation(build=build("succeeded", "r-12"), heroku_release=heroku_release("failed")),
            State.STAGING_FAILED,
        ),
        (Observation(build=build("succeeded", "r-12"), heroku_release=heroku_release("pending")), None),
        (
            Observation(build=build("succeeded", "r-12"), heroku_release=heroku_release("succeeded")),
            State.STAGING_VERIFYING,
        ),
    ],
)
def test_the_build_and_its_release_phase_decide_staging(seen: Observation, expected: State | None) -> None:
    decision = domain.decide(release(State.STAGING_DEPLOYING, staging_build_id="b-1"), seen, POLICY, NOW)
    assert final_state(decision) == expected
    if expected == State.STAGING_FAILED:
        assert any(isinstance(a, domain.PostStatus) and a.state == "FAILED" for a in decision.actions)
    if expected == State.STAGING_VERIFYING:
        update = decision.actions[0]
        assert isinstance(update, domain.Update)
        assert update.fields["staging_release_version"] == 12 and update.fields["staging_slug_id"] == "slug-1"


PASS = {0: CheckResult("http /health", "passed", "GET /health -> 200")}
FAIL = {0: CheckResult("http /health", "failed", "GET /health -> 503")}


def failed(times: int, next_at: datetime | None = None) -> tuple[CheckProgress, ...]:
    """The progress of the one check after ``times`` attempts that did not pass."""
    return (CheckProgress("http /health", failures=times, next_at=next_at),)


def test_staging_checks_pass_then_the_release_pull_request_is_opened() -> None:
    decision = domain.decide(release(State.STAGING_VERIFYING), Observation(checks=PASS), POLICY, NOW)
    assert kinds(decision) == ["PostStatus", "NotifyChanges", "StagingVerified", "OpenReleasePullRequest"]


def test_staging_checks_are_retried_then_fail() -> None:
    first = domain.decide(release(State.STAGING_VERIFYING), Observation(checks=FAIL), POLICY, NOW)
    assert kinds(first) == ["StagingCheckFailed", "Wait"]
    assert first.wait and first.wait.until == NOW + timedelta(seconds=2) and first.wait.on.moves_by_itself
    last = domain.decide(
        release(State.STAGING_VERIFYING, check_progress=failed(2)), Observation(checks=FAIL), POLICY, NOW
    )
    assert final_state(last) == State.STAGING_FAILED


def test_checks_not_due_yet_wait_for_the_clock() -> None:
    decision = domain.decide(
        release(State.STAGING_VERIFYING, check_progress=failed(1, NOW + timedelta(seconds=1))),
        Observation(),
        POLICY,
        NOW,
    )
    assert not decision.does_something and decision.wait and decision.wait.on == WaitingOn.RETRY


def test_verified_with_a_pull_request_awaits_approval() -> None:
    r = release(
        State.STAGING_VERIFYING, staging_verified_at=NOW, pull_request_id=4, release_branch="release/7"
    )
    assert final_state(domain.decide(r, Observation(), POLICY, NOW)) == State.AWAITING_APPROVAL
    without = replace(r, pull_request_id=None)
    assert kinds(domain.decide(without, Observation(), POLICY, NOW)) == ["OpenReleasePullRequest"]


# --- Approval -----------------------------------------------------------------------------------

VERIFIED = NOW - timedelta(minutes=30)


def awaiting(**fields: Any) -> Release:
    base = dict(
        staging_verified_at=VERIFIED,
        release_branch="release/7",
        pull_request_id=4,
        pull_request_url="http://bb/pr/4",
        staging_release_id="r-12",
        staging_release_version=12,
    )
    return release(State.AWAITING_APPROVAL, **(base | fields))


def pr(*participants: Participant, state: str = "OPEN", closed_by: Person | None = None) -> PullRequest:
    return PullRequest(
        4,
        "Release 7",
        "http://bb/pr/4",
        state,
        "release/7",
        COMMIT[:12],
        "main",
        BOT,
        participants,
        closed_by,
    )


def approval(user: Person, at: datetime = NOW - timedelta(minutes=1)) -> Participant:
    return Participant(user, "REVIEWER", True, "approved", at)


@pytest.mark.parametrize(
    ("who", "at", "head", "reason_part"),
    [
        (DEV, NOW, COMMIT, "not an approver"),
        (BOT, NOW, COMMIT, "controller's own account"),
        (PO, VERIFIED - timedelta(minutes=1), COMMIT, "before staging was verified"),
        (PO, NOW, "c" * 40, "release branch release/7 points at cccccccccccc"),
        (PO, NOW, None, "nowhere"),
    ],
)
def test_approvals_that_do_not_count_are_recorded_with_the_reason(
    who: Person, at: datetime, head: str | None, reason_part: str
) -> None:
    decision = domain.decide(
        awaiting(), Observation(pull_request=pr(approval(who, at)), release_branch_head=head), POLICY, NOW
    )
    assert final_state(decision) is None
    ignored = [a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "ApprovalIgnored"]
    assert len(ignored) == 1 and reason_part in ignored[0].reason
    assert decision.wait and decision.wait.on == WaitingOn.PERSON


def test_an_approver_who_wrote_a_commit_does_not_count() -> None:
    r = awaiting(commits=(Commit(COMMIT, "Tweak", "PO <po@whisper.example>", PO, NOW),))
    decision = domain.decide(
        r, Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT), POLICY, NOW
    )
    assert final_state(decision) is None
    assert any("wrote commit" in a.reason for a in decision.actions if isinstance(a, domain.Update))


def test_an_approver_approval_counts_and_approves() -> None:
    seen = Observation(pull_request=pr(approval(PO), approval(DEV)), release_branch_head=COMMIT)
    decision = domain.decide(awaiting(), seen, POLICY, NOW)
    assert final_state(decision) == State.APPROVED
    approved = next(
        a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "ReleaseApproved"
    )
    judged = approved.fields["approvals"]
    assert [(a.user.username, a.counted) for a in judged] == [("po", True), ("dev", False)]
    assert approved.actor == "po"


def test_min_approvals_counts_distinct_people() -> None:
    two = approval_rules(min_approvals=2)
    one = domain.decide(
        awaiting(), Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT), two, NOW
    )
    assert final_state(one) is None and one.wait and "1 more approval" in one.wait.detail
    both = Observation(pull_request=pr(approval(PO), approval(OPS)), release_branch_head=COMMIT)
    assert final_state(domain.decide(awaiting(), both, two, NOW)) == State.APPROVED


def test_an_approval_judged_before_is_not_recorded_again() -> None:
    seen = Observation(pull_request=pr(approval(DEV)), release_branch_head=COMMIT)
    judged = domain.judge_approvals(awaiting(), seen.pull_request, COMMIT, POLICY, NOW)  # type: ignore[arg-type]
    decision = domain.decide(awaiting(approvals=judged), seen, POLICY, NOW)
    assert kinds(decision) == ["Wait"]


@pytest.mark.parametrize(
    ("the_pr", "reason_part"),
    [
        (pr(state="DECLINED", closed_by=PO), "declined by po"),
        (pr(state="MERGED", closed_by=DEV), "merged by dev outside the controller"),
        (pr(Participant(PO, "REVIEWER", False, "changes_requested", NOW)), "po requested changes"),
    ],
)
def test_people_can_reject_a_release(the_pr: PullRequest, reason_part: str) -> None:
    decision = domain.decide(
        awaiting(), Observation(pull_request=the_pr, release_branch_head=COMMIT), POLICY, NOW
    )
    assert final_state(decision) == State.REJECTED
    assert reason_part in decision.actions[-1].reason  # type: ignore[union-attr]


def test_a_pull_request_the_controller_declined_is_not_a_rejection() -> None:
    the_pr = pr(state="DECLINED", closed_by=BOT)
    newer = release(State.AWAITING_APPROVAL, id=9, commit="b" * 40, staging_verified_at=NOW)
    seen = Observation(pull_request=the_pr, release_branch_head=COMMIT, newer_verified=newer)
    assert final_state(domain.decide(awaiting(), seen, POLICY, NOW)) == State.SUPERSEDED


def test_feedback_runs_before_a_release_reaches_a_final_state() -> None:
    decision = domain.decide(
        release(State.STAGING_VERIFYING, check_progress=failed(2)), Observation(checks=FAIL), POLICY, NOW
    )
    assert kinds(decision) == ["PostStatus", "StagingVerificationFailed"]


def test_changes_requested_by_someone_not_listed_do_not_reject() -> None:
    the_pr = pr(Participant(DEV, "PARTICIPANT", False, "changes_requested", NOW))
    decision = domain.decide(
        awaiting(), Observation(pull_request=the_pr, release_branch_head=COMMIT), POLICY, NOW
    )
    assert final_state(decision) is None


def test_a_newer_verified_candidate_supersedes_an_unapproved_release_and_declines_its_pull_request() -> None:
    newer = release(
        State.AWAITING_APPROVAL,
        id=9,
        commit="b" * 40,
        staging_verified_at=NOW,
        pull_request_url="http://bb/pr/5",
    )
    seen = Observation(pull_request=pr(), release_branch_head=COMMIT, newer_verified=newer)
    decision = domain.decide(awaiting(), seen, POLICY, NOW)
    assert final_state(decision) == State.SUPERSEDED
    decline = [a for a in decision.actions if isinstance(a, domain.DeclinePullRequest)]
    assert decline and "release 9" in decline[0].comment and "http://bb/pr/5" in decline[0].comment


# --- Approved -> production --------------------------------------------------------------------


def approved(**fields: Any) -> Release:
    judged = domain.judge_approvals(awaiting(), pr(approval(PO)), COMMIT, POLICY, NOW)
    return replace(awaiting(approvals=judged, approved_at=NOW, **fields), state=State.APPROVED)


def test_approval_is_rechecked_at_promotion_time() -> None:
    moved = Observation(pull_request=pr(approval(PO)), release_branch_head="c" * 40)
    decision = domain.decide(approved(), moved, POLICY, NOW)
    assert final_state(decision) == State.AWAITING_APPROVAL


def test_approved_backs_up_first_then_promotes() -> None:
    seen = Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT)
    assert kinds(domain.decide(approved(), seen, POLICY, NOW)) == [
        "PostStatus",
        "BackupStarted",
        "CaptureBackup",
    ]
    no_backup = replace(POLICY, capture_backup=False)
    assert kinds(domain.decide(approved(), seen, no_backup, NOW)) == [
        "PostStatus",
        "PromotionStarted",
        "Promote",
    ]
    busy = replace(seen, production_busy_with=5)
    waiting = domain.decide(approved(), busy, POLICY, NOW)
    assert not waiting.does_something and waiting.wait and "production is busy" in waiting.wait.detail


def backup(status: str, size: int = 1000, finished: datetime | None = NOW) -> Backup:
    return Backup(
        "u-1",
        3,
        "b003",
        status,
        NOW - timedelta(minutes=1),
        finished,
        size,
        "DATABASE",
        ("pg_dump: error",) if status == "failed" else (),
    )


@pytest.mark.parametrize(
    ("the_backup", "expected", "action"),
    [
        (backup("running"), None, None),
        (backup("failed"), State.PROMOTION_FAILED, "PostStatus"),
        (backup("completed"), State.PROMOTING, "Promote"),
    ],
)
def test_backing_up(the_backup: Backup, expected: State | None, action: str | None) -> None:
    decision = domain.decide(
        release(State.BACKING_UP, backup_id="u-1"), Observation(backup=the_backup), POLICY, NOW
    )
    assert final_state(decision) == expected
    if action:
        assert action in kinds(decision)


def test_a_backup_requested_before_a_crash_is_waited_for_then_captured_again() -> None:
    marked = release(State.BACKING_UP, pending_action="backup", pending_since=NOW - timedelta(seconds=5))
    assert not domain.decide(marked, Observation(), POLICY, NOW).does_something
    late = replace(marked, pending_since=NOW - timedelta(hours=1))
    assert kinds(domain.decide(late, Observation(), POLICY, NOW)) == ["CaptureBackup"]


def promoting(**fields: Any) -> Release:
    return release(
        State.PROMOTING,
        staging_release_id="r-12",
        staging_slug_id="slug-1",
        previous_release_id="p-30",
        previous_release_version=30,
        **fields,
    )


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (Observation(heroku_release=heroku_release("pending", 31, "p-31")), None),
        (Observation(heroku_release=heroku_release("failed", 31, "p-31")), State.PROMOTION_FAILED),
        (Observation(heroku_release=heroku_release("succeeded", 31, "p-31")), State.PRODUCTION_VERIFYING),
        (
            Observation(
                promotion=Promotion("pr-1", "completed", (PromotionTarget("app", None, "failed", "boom"),))
            ),
            State.PROMOTION_FAILED,
        ),
    ],
)
def test_promoting(seen: Observation, expected: State | None) -> None:
    decision = domain.decide(promoting(promotion_id="pr-1"), seen, POLICY, NOW)
    assert final_state(decision) == expected


def test_promote_is_not_repeated_while_a_promotion_may_still_appear() -> None:
    marked = promoting(pending_action="promote", pending_since=NOW - timedelta(seconds=3))
    assert not domain.decide(marked, Observation(), POLICY, NOW).does_something
    assert kinds(domain.decide(promoting(), Observation(), POLICY, NOW)) == ["Promote"]


def verifying_production(**fields: Any) -> Release:
    live = promoting(production_release_id="p-31", production_release_version=31, **fields)
    return replace(live, state=State.PRODUCTION_VERIFYING)


def test_production_verified_is_released() -> None:
    decision = domain.decide(verifying_production(), Observation(checks=PASS), POLICY, NOW)
    assert final_state(decision) == State.RELEASED


def test_production_failing_its_checks_is_rolled_back_to_the_release_it_replaced() -> None:
    decision = domain.decide(
        verifying_production(check_progress=failed(1)), Observation(checks=FAIL), POLICY, NOW
    )
    rollback = [a for a in decision.actions if isinstance(a, domain.RollBack)]
    assert rollback and rollback[0].release_id == "p-30" and rollback[0].version == 30
    assert "LockEnvironment" in kinds(decision)  # the controller must not promote again by itself
    rolled = verifying_production(rollback_release_id="p-32", rollback_reason="checks failed")
    back = heroku_release("succeeded", 32, "p-32")
    done = domain.decide(rolled, Observation(rollback_release=back, checks=PASS), POLICY, NOW)
    assert final_state(done) == State.ROLLED_BACK
    assert {"DeclinePullRequest", "PostStatus", "LockEnvironment", "NotifyChanges"} <= set(kinds(done))
    ended = next(a for a in done.actions if isinstance(a, domain.Update) and a.kind == "RolledBack")
    assert "which passed its checks" in ended.reason and ended.fields["rollback_verified_at"] == NOW


def test_released_merges_then_verifies_backups() -> None:
    r = release(State.RELEASED, pull_request_id=4)
    decision = domain.decide(
        r, Observation(pull_request=pr(), latest_backup=backup("completed")), POLICY, NOW
    )
    assert kinds(decision) == ["MergePullRequest"]  # merged first: the release ends once it is
    merged = replace(pr(), state="MERGED", merge_commit="m" * 12)
    decision = domain.decide(
        r, Observation(pull_request=merged, latest_backup=backup("completed")), POLICY, NOW
    )
    assert kinds(decision) == ["BackupsVerified"]


def test_a_merge_bitbucket_runs_as_a_task_is_waited_for_and_never_asked_twice() -> None:
    asked = release(State.RELEASED, pull_request_id=4, pending_action=Intent.MERGE, pending_since=NOW)
    seen = Observation(pull_request=pr(), latest_backup=backup("completed"))
    waiting = domain.decide(asked, seen, POLICY, NOW + timedelta(seconds=1))
    assert kinds(waiting) == ["Wait"] and waiting.wait is not None and waiting.wait.on == WaitingOn.BITBUCKET
    running = replace(asked, merge_task="http://bb/task/1")
    pending = Observation(pull_request=pr(), merge=Merge("pending", task="http://bb/task/1"))
    assert kinds(domain.decide(running, pending, POLICY, NOW + timedelta(hours=1))) == ["Wait"]
    done = Observation(pull_request=pr(), merge=Merge("merged", commit="m" * 40, task="http://bb/task/1"))
    merged = domain.decide(running, done, POLICY, NOW)
    assert kinds(merged) == ["ReleasePullRequestMerged"] and final_state(merged) is None
    update = merged.actions[0]
    assert isinstance(update, domain.Update) and update.fields["merge_task"] is None
    failed = Observation(pull_request=pr(), merge=Merge("failed", task="http://bb/task/1", detail="conflict"))
    gave_up = domain.decide(running, failed, POLICY, NOW)
    assert kinds(gave_up) == ["ReleaseMergeFailed"] and "conflict" in gave_up.actions[0].reason
    after = replace(running, merge_task=None, pending_action=None, feedback=("merge",))
    ends = domain.decide(
        after, Observation(pull_request=pr(), latest_backup=backup("completed")), POLICY, NOW
    )
    assert kinds(ends) == ["BackupsVerified"]  # not merged again


def test_a_merge_seen_done_after_a_crash_is_recorded_once() -> None:
    asked = release(State.RELEASED, pull_request_id=4, pending_action=Intent.MERGE, pending_since=NOW)
    merged = replace(pr(), state="MERGED", merge_commit="m" * 12)
    decision = domain.decide(
        asked, Observation(pull_request=merged, latest_backup=backup("completed")), POLICY, NOW
    )
    assert kinds(decision) == ["ReleasePullRequestMerged", "BackupsVerified"]


@pytest.mark.parametrize(
    ("the_backup", "reason_part"),
    [
        (None, "no backup"),
        (backup("failed"), "failed, not completed"),
        (backup("completed", finished=NOW - timedelta(hours=27)), "older than"),
        (backup("completed", size=0), "empty"),
    ],
)
def test_backups_that_cannot_be_trusted_are_unverified(the_backup: Backup | None, reason_part: str) -> None:
    decision = domain.decide(release(State.RELEASED), Observation(latest_backup=the_backup), POLICY, NOW)
    assert final_state(decision) == State.BACKUPS_UNVERIFIED
    assert reason_part in decision.actions[-1].reason  # type: ignore[union-attr]


def test_every_final_state_decides_nothing() -> None:
    for state in State:
        if state.is_final:
            assert domain.decide(release(state), Observation(), POLICY, NOW).actions == ()


# --- Review findings, pinned ---------------------------------------------------------------------


def test_an_approved_release_is_superseded_by_a_newer_one_already_approved() -> None:
    newer = replace(approved(), id=9, commit="b" * 40, pull_request_url="http://bb/pr/5")
    seen = Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT, newer_approved=newer)
    decision = domain.decide(approved(), seen, POLICY, NOW)
    assert final_state(decision) == State.SUPERSEDED
    assert any(isinstance(a, domain.DeclinePullRequest) for a in decision.actions)


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (
            Observation(pull_request=pr(state="DECLINED", closed_by=PO), release_branch_head=COMMIT),
            State.REJECTED,
        ),
        (Observation(pull_request=pr(approval(PO)), release_branch_head="c" * 40), State.AWAITING_APPROVAL),
        (Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT), State.PROMOTING),
    ],
)
def test_approval_is_judged_again_when_the_backup_is_done(seen: Observation, expected: State) -> None:
    backing_up = replace(approved(), state=State.BACKING_UP, backup_id="u-1")
    decision = domain.decide(backing_up, replace(seen, backup=backup("completed")), POLICY, NOW)
    assert final_state(decision) == expected
    assert "Promote" in kinds(decision) or expected != State.PROMOTING


def test_an_approval_without_a_time_does_not_count() -> None:
    undated = Participant(PO, "REVIEWER", True, "approved", None)
    decision = domain.decide(
        awaiting(), Observation(pull_request=pr(undated), release_branch_head=COMMIT), POLICY, NOW
    )
    assert final_state(decision) is None
    assert any("no time" in a.reason for a in decision.actions if isinstance(a, domain.Update))


def dyno(state: str, version: int, name: str = "web.1") -> Dyno:
    return Dyno(name, name.split(".")[0], state, version)


@pytest.mark.parametrize(
    ("dynos", "checks", "expected", "waits_on"),
    [
        ((dyno("up", 11),), None, None, WaitingOn.HEROKU),  # still the old release
        ((dyno("starting", 12),), None, None, WaitingOn.HEROKU),
        ((dyno("crashed", 12),), None, State.STAGING_FAILED, None),
        ((dyno("up", 12),), PASS, None, None),  # verified: the pull request comes next
    ],
)
def test_checks_count_only_once_the_dynos_run_the_new_release(
    dynos: tuple[Dyno, ...],
    checks: tuple[CheckResult, ...] | None,
    expected: State | None,
    waits_on: WaitingOn | None,
) -> None:
    verifying = release(State.STAGING_VERIFYING, staging_release_version=12, verification_started_at=NOW)
    decision = domain.decide(verifying, Observation(dynos=dynos, checks=checks), POLICY, NOW)
    assert final_state(decision) == expected
    assert (decision.wait.on if decision.wait else None) == waits_on


def test_dynos_that_never_start_fail_verification() -> None:
    verifying = release(
        State.STAGING_VERIFYING,
        staging_release_version=12,
        verification_started_at=NOW - timedelta(minutes=5),
    )
    decision = domain.decide(verifying, Observation(dynos=(dyno("starting", 12),)), POLICY, NOW)
    assert final_state(decision) == State.STAGING_FAILED


def test_a_release_whose_pull_request_was_declined_after_promotion_says_it_is_not_merged() -> None:
    r = release(State.RELEASED, pull_request_id=4)
    seen = Observation(pull_request=pr(state="DECLINED", closed_by=DEV), latest_backup=backup("completed"))
    assert kinds(domain.decide(r, seen, POLICY, NOW)) == ["ReleaseNotMerged", "BackupsVerified"]


def test_a_succeeded_build_without_its_release_yet_is_waited_for() -> None:
    decision = domain.decide(
        release(State.STAGING_DEPLOYING, staging_build_id="b-1"),
        Observation(build=build("succeeded")),
        POLICY,
        NOW,
    )
    assert not decision.does_something and decision.wait and decision.wait.on == WaitingOn.HEROKU


def test_a_failed_production_check_marks_the_rollback_before_doing_it() -> None:
    decision = domain.decide(
        verifying_production(check_progress=failed(1)), Observation(checks=FAIL), POLICY, NOW
    )
    assert kinds(decision) == ["LockEnvironment", "ProductionVerificationFailed", "RollBack"]
    marked = decision.actions[1]
    assert isinstance(marked, domain.Update) and marked.fields["pending_action"] == "rollback"


def test_approvers_are_pinned_to_accounts_and_ambiguous_names_refused() -> None:
    impostor = Person("po", "{impostor}", "1:impostor", "Not the PO")
    pinned, problems = domain.pin_approvers(("po", "1:ops"), [PO, OPS, DEV])
    assert pinned == {"{po}", "1:po", "{ops}", "1:ops"} and problems == []
    _, problems = domain.pin_approvers(("po", "nobody"), [PO, impostor])
    assert [i for i, _ in problems] == [0, 1]
    assert "2 members" in problems[0][1] and "no member" in problems[1][1]


def test_a_nickname_that_matches_no_pinned_account_does_not_count() -> None:
    impostor = Person("po", "{impostor}", "1:impostor", "Not the PO")
    pinned_policy = approval_rules(approvers=frozenset({"{po}", "1:po"}), names=("po",))
    seen = Observation(pull_request=pr(approval(impostor)), release_branch_head=COMMIT)
    decision = domain.decide(awaiting(), seen, pinned_policy, NOW)
    assert final_state(decision) is None
    assert any("not an approver" in a.reason for a in decision.actions if isinstance(a, domain.Update))
    genuine = Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT)
    assert final_state(domain.decide(awaiting(), genuine, pinned_policy, NOW)) == State.APPROVED


# --- The approval policy: bound, fresh, counted and explained -----------------------------------

CAROL = Person("carol", "{carol}", "1:carol", "Carol Product")


def update(at: datetime, source: str, state: str = "OPEN", text: str = "") -> PullRequestActivity:
    return PullRequestActivity("update", at, BOT, source_commit=source[:12], state=state, text=text)


def said(user: Person, text: str, at: datetime = NOW) -> PullRequestActivity:
    return PullRequestActivity("comment", at, user, text=text)


def judged_for(
    who: Participant, policy: Policy = POLICY, at: datetime = NOW, **seen: Any
) -> tuple[domain.Approval, ...]:
    observation = Observation(pull_request=pr(who), release_branch_head=COMMIT, **seen)
    return domain.judge_approvals(
        awaiting(),
        observation.pull_request,
        COMMIT,
        policy,
        at,
        observation.activity,  # type: ignore[arg-type]
    )


def test_an_approval_older_than_max_age_does_not_count() -> None:
    policy = approval_rules(max_age=timedelta(hours=72))
    given = approval(PO, NOW - timedelta(minutes=1))
    fresh = judged_for(given, policy, at=NOW + timedelta(hours=71))
    assert fresh[0].counted
    (stale,) = judged_for(given, policy, at=NOW + timedelta(hours=73))
    assert not stale.counted and "more than 72h ago" in stale.reason and "approve again" in stale.reason
    (kept,) = judged_for(given, approval_rules(max_age=None), at=NOW + timedelta(days=400))
    assert kept.counted  # max_age: never


def test_expiry_is_judged_again_at_promotion_time() -> None:
    policy = approval_rules(max_age=timedelta(seconds=30))
    given = NOW - timedelta(seconds=10)
    seen = Observation(pull_request=pr(approval(PO, given)), release_branch_head=COMMIT)
    approved_now = domain.decide(awaiting(), seen, policy, NOW)
    assert final_state(approved_now) == State.APPROVED
    update_ = next(a for a in approved_now.actions if isinstance(a, domain.Update) and a.to == State.APPROVED)
    held = replace(awaiting(**update_.fields), state=State.APPROVED)
    # Production was busy for a minute: at the moment of promotion the approval has aged past 30s.
    later = domain.decide(held, seen, policy, NOW + timedelta(minutes=1))
    assert final_state(later) == State.AWAITING_APPROVAL
    voided = [a for a in later.actions if isinstance(a, domain.Update) and a.kind == "ApprovalVoided"]
    assert voided and "more than 30s ago" in voided[0].reason
    assert "Promote" not in kinds(later) and "CaptureBackup" not in kinds(later)


def test_authors_count_only_when_switched_on_explicitly() -> None:
    wrote = (Commit(COMMIT, "Tweak", "PO <po@whisper.example>", PO, NOW),)
    r = awaiting(commits=wrote)
    the_pr = pr(approval(PO))
    (strict,) = domain.judge_approvals(r, the_pr, COMMIT, POLICY, NOW)
    assert not strict.counted and "wrote commit" in strict.reason
    (lenient,) = domain.judge_approvals(r, the_pr, COMMIT, approval_rules(authors_may_approve=True), NOW)
    assert lenient.counted


def test_a_commit_by_an_unlinked_author_blocks_approvals_unless_allowed() -> None:
    ghost = Commit("e" * 40, "Drive-by", "Ghost <ghost@nowhere.example>", None, NOW)
    r = awaiting(commits=(*awaiting().commits, ghost))
    (blocked,) = domain.judge_approvals(r, pr(approval(PO)), COMMIT, POLICY, NOW)
    assert not blocked.counted and "linked to no Bitbucket account" in blocked.reason
    assert "unlinked_authors: allow" in blocked.reason
    allow = approval_rules(unlinked_authors="allow")
    (allowed,) = domain.judge_approvals(r, pr(approval(PO)), COMMIT, allow, NOW)
    assert allowed.counted
    # An unlinked commit under the approver's own name is theirs, whatever the setting.
    mine = Commit("e" * 40, "Mine", "Product Owner <po@elsewhere.example>", None, NOW)
    (own,) = domain.judge_approvals(awaiting(commits=(mine,)), pr(approval(PO)), COMMIT, allow, NOW)
    assert not own.counted and "wrote commit" in own.reason


def test_any_move_of_the_release_branch_voids_every_earlier_approval() -> None:
    opened, moved, back = NOW - timedelta(minutes=20), NOW - timedelta(minutes=10), NOW - timedelta(minutes=5)
    history = (update(back, COMMIT), update(moved, "c" * 40), update(opened, COMMIT))  # newest first
    assert domain.last_branch_move(history, COMMIT) == (back, COMMIT[:12])
    (before,) = judged_for(approval(PO, NOW - timedelta(minutes=7)), activity=history)
    assert not before.counted and "before release branch release/7 moved" in before.reason
    (after,) = judged_for(approval(PO, NOW - timedelta(minutes=2)), activity=history)
    assert after.counted
    unmoved = (update(NOW - timedelta(minutes=3), COMMIT), update(opened, COMMIT))  # a title edit
    assert domain.last_branch_move(unmoved, COMMIT) is None


def test_changes_requested_by_an_approver_reject_saying_who_and_why() -> None:
    the_pr = pr(Participant(PO, "REVIEWER", False, "changes_requested", NOW))
    seen = Observation(
        pull_request=the_pr,
        release_branch_head=COMMIT,
        activity=(said(PO, "The totals are wrong on staging\nsee screenshot"), said(DEV, "why?")),
    )
    decision = domain.decide(awaiting(), seen, POLICY, NOW)
    assert final_state(decision) == State.REJECTED
    rejected = next(
        a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "ReleaseRejected"
    )
    assert rejected.actor == "po" and "'The totals are wrong on staging'" in rejected.reason
    decline = next(a for a in decision.actions if isinstance(a, domain.DeclinePullRequest))
    assert "Rejected: po requested changes" in decline.comment
    without = domain.decide(awaiting(), replace(seen, activity=()), POLICY, NOW)
    assert "no comment given" in without.actions[-1].reason or any(
        "no comment given" in a.reason for a in without.actions if isinstance(a, domain.Update)
    )


def test_a_decline_records_who_and_the_reason_given() -> None:
    declined = replace(pr(state="DECLINED", closed_by=CAROL), reason="Wrong month for this")
    decision = domain.decide(
        awaiting(), Observation(pull_request=declined, release_branch_head=COMMIT), POLICY, NOW
    )
    rejected = next(
        a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "ReleaseRejected"
    )
    assert rejected.actor == "carol" and "declined by carol: 'Wrong month for this'" in rejected.reason
    silent = domain.decide(
        awaiting(), Observation(pull_request=pr(state="DECLINED", closed_by=CAROL)), POLICY, NOW
    )
    assert any("(no reason given)" in a.reason for a in silent.actions if isinstance(a, domain.Update))


def test_a_change_request_by_someone_not_listed_is_recorded_but_does_not_reject() -> None:
    (seen,) = judged_for(Participant(DEV, "PARTICIPANT", False, "changes_requested", NOW))
    assert seen.kind == "changes_requested" and not seen.counted and "not an approver" in seen.reason


def test_every_approval_keeps_its_evidence_and_the_policy_digest() -> None:
    (counted,) = judged_for(approval(PO))
    assert (counted.pull_request_id, counted.commit) == (4, COMMIT)
    assert counted.policy_digest == domain.approval_digest(POLICY) and len(counted.policy_digest) == 16
    assert domain.approval_digest(approval_rules(min_approvals=2)) != counted.policy_digest
    assert domain.approval_digest(replace(POLICY)) == counted.policy_digest  # stable
    decision = domain.decide(
        awaiting(), Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT), POLICY, NOW
    )
    approved_ = next(
        a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "ReleaseApproved"
    )
    evidence = json.loads(approved_.detail)
    assert evidence["policy"] == domain.approval_policy(POLICY)
    assert evidence["approvals"][0]["approver"] == "po" and evidence["approvals"][0]["commit"] == COMMIT
    assert approved_.refs["policy"] == counted.policy_digest


def test_an_unapprove_is_recorded_as_withdrawn_and_stops_the_release_before_promotion() -> None:
    held = approved()
    seen = Observation(pull_request=pr(), release_branch_head=COMMIT)  # po unapproved
    decision = domain.decide(held, seen, POLICY, NOW)
    assert final_state(decision) == State.AWAITING_APPROVAL
    withdrawn = [
        a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "ApprovalWithdrawn"
    ]
    assert withdrawn and withdrawn[0].actor == "po" and "withdrew" in withdrawn[0].reason


# --- Verification: soak, backoff, evidence --------------------------------------------------------

SOAKING = Policy(
    staging=Verification(
        (
            CheckRule("http /health", retries=2, interval=timedelta(seconds=1), soak=timedelta(seconds=10)),
            CheckRule("release_phase", retries=3, interval=timedelta(seconds=2), backoff=2.0),
        )
    )
)
HTTP_OK = CheckResult("http /health", "passed", "GET /health -> 200")
HTTP_BAD = CheckResult("http /health", "failed", "GET /health -> 500", evidence="Traceback: boom")
PHASE_OK = CheckResult("release_phase", "passed", "v12 succeeded", evidence="release: applying 003_notes.sql")
PHASE_PENDING = CheckResult("release_phase", "failed", "v12 is still running its release phase")


def verifying(**fields: Any) -> Release:
    return release(State.STAGING_VERIFYING, staging_release_version=12, verification_started_at=NOW, **fields)


def progress_of(decision: domain.Decision) -> tuple[CheckProgress, ...]:
    found = [a.fields["check_progress"] for a in decision.actions if isinstance(a, domain.Update)]
    assert found, kinds(decision)
    return found[-1]  # type: ignore[no-any-return]


def test_a_check_that_passes_holds_for_its_soak_before_it_counts() -> None:
    first = domain.decide(verifying(), Observation(checks={0: HTTP_OK, 1: PHASE_OK}), SOAKING, NOW)
    assert final_state(first) is None and first.wait and first.wait.on == WaitingOn.RETRY
    soak, phase = progress_of(first)
    assert soak.passing_since == NOW and not soak.done and soak.next_at == NOW + timedelta(seconds=1)
    assert phase.done  # no soak: done at its first pass
    passed = [a for a in first.actions if isinstance(a, domain.Update) and a.kind == "StagingCheckPassed"]
    assert {a.reason.split(":")[0] for a in passed} == {"http /health", "release_phase"}
    # Evidence worth keeping (the release phase's output) goes into the history with the event.
    assert any(a.detail == "release: applying 003_notes.sql" for a in passed)
    assert "holding it until 2026-11-24T12:00:10Z" in next(a.reason for a in passed if "http" in a.reason)

    later = NOW + timedelta(seconds=5)
    still = domain.decide(
        verifying(check_progress=(soak, phase)), Observation(checks={0: HTTP_OK}), SOAKING, later
    )
    assert final_state(still) is None and kinds(still) == ["CheckProgress", "Wait"]  # saved, no event
    held = progress_of(still)[0]
    assert held.passing_since == NOW and held.next_at == later + timedelta(seconds=1)

    end = NOW + timedelta(seconds=10)
    done = domain.decide(
        verifying(check_progress=(held, phase)), Observation(checks={0: HTTP_OK}), SOAKING, end
    )
    assert "StagingVerified" in kinds(done)


def test_a_failure_during_the_soak_fails_the_stage_with_its_evidence() -> None:
    soaking = (
        CheckProgress("http /health", passing_since=NOW - timedelta(seconds=4), next_at=NOW),
        CheckProgress("release_phase", done=True),
    )
    decision = domain.decide(
        verifying(check_progress=soaking), Observation(checks={0: HTTP_BAD}), SOAKING, NOW
    )
    assert final_state(decision) == State.STAGING_FAILED
    failed_ = next(
        a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "StagingVerificationFailed"
    )
    assert "http /health failed 4s into its 10s soak" in failed_.reason
    assert failed_.detail == "Traceback: boom"


def test_each_check_is_retried_on_its_own_with_its_backoff() -> None:
    first = domain.decide(verifying(), Observation(checks={0: HTTP_OK, 1: PHASE_PENDING}), SOAKING, NOW)
    phase = progress_of(first)[1]
    assert phase.failures == 1 and phase.next_at == NOW + timedelta(seconds=2)
    again = domain.decide(
        verifying(check_progress=progress_of(first)), Observation(checks={1: PHASE_PENDING}), SOAKING, NOW
    )
    assert progress_of(again)[1].next_at == NOW + timedelta(seconds=4)  # 2 s, doubled
    assert (
        domain.CheckRule("x", interval=timedelta(seconds=30), backoff=10).wait_after(5)
        == domain.MAX_CHECK_WAIT
    )
    failing = (progress_of(first)[0], CheckProgress("release_phase", failures=3))
    out = domain.decide(
        verifying(check_progress=failing), Observation(checks={1: PHASE_PENDING}), SOAKING, NOW
    )
    assert final_state(out) == State.STAGING_FAILED
    assert any(
        "release_phase did not pass in 4 attempt(s)" in a.reason
        for a in out.actions
        if isinstance(a, domain.Update)
    )


def test_a_rollback_that_fails_its_checks_too_ends_rolled_back_saying_production_needs_a_person() -> None:
    rolled = verifying_production(rollback_release_id="p-32", rollback_reason="checks failed")
    back = heroku_release("succeeded", 32, "p-32")
    decision = domain.decide(
        rolled,
        Observation(rollback_release=back),
        replace(POLICY, production=Verification()),
        NOW,
    )
    assert final_state(decision) == State.ROLLED_BACK  # no checks: nothing to fail
    strict = domain.decide(
        replace(rolled, check_progress=failed(1)),
        Observation(rollback_release=back, checks=FAIL),
        POLICY,
        NOW,
    )
    assert final_state(strict) == State.ROLLED_BACK
    ended = next(a for a in strict.actions if isinstance(a, domain.Update) and a.kind == "RolledBack")
    assert "fails its checks too" in ended.reason and ended.fields["rollback_verified_at"] is None
    assert "production is locked until `pipeline unlock production" in ended.reason


# --- Deploy windows, freezes, locks, overrides ----------------------------------------------------

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
OFFICE = DeployWindows(AMSTERDAM, (Window(frozenset({0, 1, 2, 3}), time(9), time(16)),))  # Mon-Thu 9-16


@pytest.mark.parametrize(
    ("local", "is_open", "opens"),
    [
        (datetime(2026, 11, 24, 10, 0, tzinfo=AMSTERDAM), True, None),  # a Tuesday morning
        (
            datetime(2026, 11, 24, 16, 0, tzinfo=AMSTERDAM),
            False,
            datetime(2026, 11, 25, 9, 0, tzinfo=AMSTERDAM),
        ),
        (
            datetime(2026, 11, 27, 10, 0, tzinfo=AMSTERDAM),
            False,
            datetime(2026, 11, 30, 9, 0, tzinfo=AMSTERDAM),
        ),
        (
            datetime(2026, 11, 24, 8, 59, tzinfo=AMSTERDAM),
            False,
            datetime(2026, 11, 24, 9, 0, tzinfo=AMSTERDAM),
        ),
    ],
)
def test_deploy_windows_in_their_time_zone(local: datetime, is_open: bool, opens: datetime | None) -> None:
    assert domain.window_state(OFFICE, local.astimezone(UTC)) == (
        is_open,
        opens.astimezone(UTC) if opens else None,
    )


def test_a_window_to_midnight_and_one_that_never_opens() -> None:
    evening = DeployWindows(UTC, (Window(frozenset(range(7)), time(18), time(0)),))
    assert domain.window_state(evening, datetime(2026, 11, 24, 23, 59, tzinfo=UTC)) == (True, None)
    never = DeployWindows(UTC, (Window(frozenset(), time(9), time(17)),))
    assert domain.window_state(never, NOW) == (False, None)


def gate(
    environment: EnvironmentState | None = None, windows: DeployWindows | None = None
) -> domain.Decision:
    policy = replace(POLICY, windows={"production": windows} if windows else {})
    seen = Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT, environment=environment)
    return domain.decide(approved(), seen, policy, NOW)


def test_an_approved_release_waits_for_the_window_and_says_until_when() -> None:
    closed = gate(windows=DeployWindows(AMSTERDAM, (Window(frozenset({2}), time(9), time(16)),)))
    assert closed.wait and closed.wait.on == WaitingOn.WINDOW and not closed.does_something
    assert closed.wait.until == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert "opens Wed 2026-11-25 09:00 Europe/Amsterdam (2026-11-25T08:00:00Z)" in closed.wait.detail
    assert "BackupStarted" in kinds(gate(windows=OFFICE))  # 13:00 in Amsterdam on a Tuesday: open


def test_a_freeze_holds_until_lifted_or_until_its_end() -> None:
    frozen = EnvironmentState(
        "claims",
        "production",
        frozen_at=NOW,
        frozen_by="ops",
        freeze_reason="year end",
        frozen_until=NOW + timedelta(hours=2),
    )
    held = gate(frozen)
    assert held.wait and held.wait.on == WaitingOn.WINDOW and held.wait.until == NOW + timedelta(hours=2)
    assert "production is frozen until" in held.wait.detail and "by ops: year end" in held.wait.detail
    expired = replace(frozen, frozen_until=NOW - timedelta(seconds=1))
    assert "BackupStarted" in kinds(gate(expired))


def test_a_lock_holds_whatever_the_window_and_only_a_person_clears_it() -> None:
    locked = EnvironmentState(
        "claims", "production", locked_at=NOW, locked_by="controller", lock_reason="rolled back"
    )
    held = gate(replace(locked, override_release=7, override_by="ops", override_reason="hotfix"))
    assert held.wait and held.wait.on == WaitingOn.PERSON and "pipeline unlock production" in held.wait.detail


def test_an_override_starts_the_release_now_and_says_so() -> None:
    frozen = EnvironmentState(
        "claims",
        "production",
        frozen_at=NOW,
        frozen_by="ops",
        freeze_reason="year end",
        override_release=7,
        override_by="ops",
        override_reason="the fix must go out",
    )
    decision = gate(frozen, windows=DeployWindows(AMSTERDAM, (Window(frozenset({2}), time(9), time(16)),)))
    started = next(a for a in decision.actions if isinstance(a, domain.Update) and a.kind == "BackupStarted")
    assert "overridden by ops" in started.reason and "the fix must go out" in started.reason
    someone_else = replace(frozen, override_release=99)
    assert not gate(someone_else).does_something  # an override serves the release it names only


# --- Hotfixes: production's commits are never taken out -------------------------------------------

FIX = Commit("f" * 40, "Fix the login", "Ops <ops@whisper.example>", OPS, NOW, parents=("0" * 40,))


def test_a_candidate_that_lacks_a_commit_production_has_fails_its_gate() -> None:
    decision = domain.decide(
        release(), Observation(build_statuses={"tests": "SUCCESSFUL"}, production_missing=(FIX,)), POLICY, NOW
    )
    assert final_state(decision) == State.GATE_FAILED
    failed_ = next(a for a in decision.actions if isinstance(a, domain.Update))
    assert (
        "lacks commit ffffffffffff (Fix the login)" in failed_.reason
        and "merge main into it" in failed_.reason
    )


def test_an_approved_release_production_has_moved_past_is_not_promoted() -> None:
    seen = Observation(pull_request=pr(approval(PO)), release_branch_head=COMMIT, production_missing=(FIX,))
    decision = domain.decide(approved(), seen, POLICY, NOW)
    assert final_state(decision) == State.SUPERSEDED
    assert "CaptureBackup" not in kinds(decision) and "DeclinePullRequest" in kinds(decision)


def test_a_released_hotfix_is_brought_back_into_the_watched_branch_once() -> None:
    released = replace(approved(), state=State.RELEASED, branch="hotfix/login")
    seen = Observation(latest_backup=backup("completed"))
    assert "OpenBackMerge" in kinds(domain.decide(released, seen, POLICY, NOW))
    done = replace(released, feedback=("backmerge",))
    assert "OpenBackMerge" not in kinds(domain.decide(done, seen, POLICY, NOW))
    develop = replace(released, branch="develop")
    assert "OpenBackMerge" not in kinds(domain.decide(develop, seen, POLICY, NOW))


# --- A backup that runs long: a decline, a lock, a time limit -------------------------------------


def backing_up(**fields: Any) -> Release:
    return replace(approved(backup_id="u-1", backup_name="b003", **fields), state=State.BACKING_UP)


def test_a_decline_ends_the_release_while_its_backup_runs() -> None:
    declined = pr(approval(PO), state="DECLINED", closed_by=PO)
    seen = Observation(
        backup=backup("running", finished=None), pull_request=declined, release_branch_head=COMMIT
    )
    decision = domain.decide(backing_up(), seen, POLICY, NOW)
    assert final_state(decision) == State.REJECTED
    assert "Promote" not in kinds(decision)


def test_a_backup_running_past_its_time_limit_ends_the_release_unpromoted() -> None:
    slow = replace(backup("running", finished=None), created_at=NOW - timedelta(hours=7))
    decision = domain.decide(backing_up(), Observation(backup=slow), POLICY, NOW)
    assert final_state(decision) == State.PROMOTION_FAILED
    ended = next(a for a in decision.actions if isinstance(a, domain.Update) and a.to)
    assert ended.kind == "BackupTimedOut" and "backups.capture_timeout (6h)" in ended.reason
    within = replace(slow, created_at=NOW - timedelta(hours=5))
    assert kinds(domain.decide(backing_up(), Observation(backup=within), POLICY, NOW)) == ["Wait"]


def test_production_locked_while_the_backup_ran_postpones_the_promotion_with_a_fresh_backup() -> None:
    locked = EnvironmentState(
        "claims", "production", locked_at=NOW, locked_by="ops", lock_reason="rollback 1"
    )
    seen = Observation(
        backup=backup("completed"),
        pull_request=pr(approval(PO)),
        release_branch_head=COMMIT,
        environment=locked,
    )
    decision = domain.decide(backing_up(), seen, POLICY, NOW)
    assert final_state(decision) == State.APPROVED and "Promote" not in kinds(decision)
    postponed = next(a for a in decision.actions if isinstance(a, domain.Update) and a.to)
    assert postponed.kind == "PromotionPostponed" and postponed.fields["backup_id"] is None
    unlocked = replace(seen, environment=EnvironmentState("claims", "production"))
    assert kinds(domain.decide(backing_up(), unlocked, POLICY, NOW))[-1] == "Promote"
