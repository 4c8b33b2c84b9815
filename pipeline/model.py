"""The release controller's words, as plain frozen values: no I/O, no clock, no environment.

``Release`` and ``Event`` are what the store keeps; the other values are what adapters report from
Bitbucket and Heroku (``Commit``, ``PullRequest``, ``HerokuBuild``, ``Backup``...), in our words,
so the decision code never sees a third-party object. ``pipeline.domain`` decides with them.

Times are timezone-aware UTC ``datetime`` values everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from enum import StrEnum


class State(StrEnum):
    """Where a release is. The path: detected -> ... -> backups_verified; the rest are ends."""

    DETECTED = "detected"
    GATED = "gated"
    STAGING_DEPLOYING = "staging_deploying"
    STAGING_VERIFYING = "staging_verifying"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    BACKING_UP = "backing_up"
    PROMOTING = "promoting"
    PRODUCTION_VERIFYING = "production_verifying"
    RELEASED = "released"
    BACKUPS_VERIFIED = "backups_verified"
    # Ends.
    GATE_FAILED = "gate_failed"
    STAGING_FAILED = "staging_failed"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    PROMOTION_FAILED = "promotion_failed"
    ROLLED_BACK = "rolled_back"
    BACKUPS_UNVERIFIED = "backups_unverified"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def in_staging(self) -> bool:
        """The release is using the staging app (deploying or verifying there)."""
        return self in (State.STAGING_DEPLOYING, State.STAGING_VERIFYING)

    @property
    def in_production(self) -> bool:
        """The release is changing production (backup, promotion, verification)."""
        return self in (State.BACKING_UP, State.PROMOTING, State.PRODUCTION_VERIFYING)


FINAL_STATES = frozenset(
    {
        State.BACKUPS_VERIFIED,
        State.BACKUPS_UNVERIFIED,
        State.GATE_FAILED,
        State.STAGING_FAILED,
        State.REJECTED,
        State.SUPERSEDED,
        State.PROMOTION_FAILED,
        State.ROLLED_BACK,
    }
)


# --- What Bitbucket reports -------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A Bitbucket account. ``username`` is the nickname people write in pipeline.yml."""

    username: str
    uuid: str = ""
    account_id: str = ""
    display_name: str = ""

    def is_one_of(self, names: frozenset[str] | set[str] | tuple[str, ...]) -> bool:
        """True when the username, uuid or account id is in ``names``."""
        return any(ident and ident in names for ident in (self.username, self.uuid, self.account_id))

    def same_as(self, other: Person | None) -> bool:
        if other is None:
            return False
        if self.uuid and other.uuid:
            return self.uuid == other.uuid
        if self.account_id and other.account_id:
            return self.account_id == other.account_id
        return bool(self.username) and self.username == other.username


@dataclass(frozen=True)
class Commit:
    """One commit. ``author`` is the linked Bitbucket account, or None when the e-mail is unlinked;
    ``parents`` the hashes of its parents (two or more for a merge commit)."""

    hash: str
    message: str
    author_raw: str
    author: Person | None
    date: datetime
    parents: tuple[str, ...] = ()

    @property
    def author_name(self) -> str:
        """The name part of ``author_raw`` ("Jane Doe <jane@example.com>" -> "Jane Doe")."""
        return self.author_raw.split("<", 1)[0].strip()


@dataclass(frozen=True)
class Change:
    """A pull request merged into the watched branch: one line of the release notes."""

    id: int
    title: str
    author: Person | None
    url: str
    merge_commit: str


@dataclass(frozen=True)
class Participant:
    """A pull request participant. ``participated_on`` is, for an approver, the approval time."""

    user: Person
    role: str
    approved: bool
    state: str | None
    participated_on: datetime | None


@dataclass(frozen=True)
class PullRequest:
    id: int
    title: str
    url: str
    state: str  # OPEN | MERGED | DECLINED | SUPERSEDED
    source_branch: str
    source_commit: str  # Bitbucket sends 12 characters here: compare by prefix
    destination_branch: str
    author: Person | None
    participants: tuple[Participant, ...] = ()
    closed_by: Person | None = None
    description: str = ""
    reason: str = ""  # why it was declined, when the decliner said


@dataclass(frozen=True)
class PullRequestActivity:
    """One entry of a pull request's activity log, newest first in ``SourceControl.activity``.

    ``kind`` is ``update`` (the pull request changed: ``source_commit`` is where its source branch
    pointed then, ``state`` its state, ``text`` the decline reason), ``approval``,
    ``changes_requested`` or ``comment`` (``text`` is what was written).
    """

    kind: str
    at: datetime
    user: Person | None
    source_commit: str = ""
    state: str = ""
    text: str = ""


@dataclass(frozen=True)
class Comment:
    """A comment on a pull request."""

    id: int
    user: Person | None
    text: str
    at: datetime


@dataclass(frozen=True)
class Webhook:
    """A webhook subscription on the repository (its secret is write-only: only whether one is set)."""

    uuid: str
    url: str
    description: str
    events: tuple[str, ...]
    active: bool
    secret_set: bool


# --- What Heroku reports ----------------------------------------------------------------------


@dataclass(frozen=True)
class HerokuBuild:
    id: str
    status: str  # pending | succeeded | failed
    version: str | None
    release_id: str | None
    slug_id: str | None
    created_at: datetime
    output_stream_url: str | None = None


@dataclass(frozen=True)
class HerokuRelease:
    id: str
    version: int
    status: str  # pending | succeeded | failed | expired
    slug_id: str | None
    current: bool
    description: str
    created_at: datetime
    output_stream_url: str | None = None


@dataclass(frozen=True)
class Dyno:
    """One running process of an app: ``state`` crashed | down | idle | starting | up."""

    name: str
    type: str
    state: str
    release_version: int | None


@dataclass(frozen=True)
class Formation:
    """One process type of an app's formation: how many dynos of ``type`` should run."""

    type: str
    quantity: int
    size: str
    command: str


@dataclass(frozen=True)
class PromotionTarget:
    app_id: str
    release_id: str | None
    status: str  # pending | succeeded | failed
    error_message: str | None


@dataclass(frozen=True)
class Promotion:
    id: str
    status: str  # pending | completed
    targets: tuple[PromotionTarget, ...]


@dataclass(frozen=True)
class Backup:
    """A Heroku Postgres backup (a Data API transfer). ``name`` is what the CLI shows (b001...)."""

    id: str  # the transfer uuid
    num: int
    name: str
    status: str  # pending | running | completed | failed
    created_at: datetime
    finished_at: datetime | None
    size_bytes: int
    database: str
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """One run of one check: ``passed``, ``failed`` (with the evidence) or ``error`` (could not run).

    ``detail`` is one line for people; ``evidence`` is longer text worth keeping in the history
    (a release phase's output, a failing answer's body), or "".
    """

    name: str
    outcome: str  # passed | failed | error
    detail: str
    evidence: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


# --- What the controller keeps ----------------------------------------------------------------


@dataclass(frozen=True)
class CheckProgress:
    """Where one check of a verification stands: attempts in a row that did not pass, since when it
    has passed without a break (its soak), when it is tried next, whether it is done (passed and
    soaked), and what its last attempt said."""

    name: str
    failures: int = 0
    passing_since: datetime | None = None
    next_at: datetime | None = None
    done: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Approval:
    """One approval (or request for changes) seen on a release pull request, and the judgement on
    it, with its evidence: which pull request and commit it was given on, and the digest of the
    approval policy it was judged under (``pipeline.domain.approval_policy``)."""

    user: Person
    at: datetime
    counted: bool
    reason: str
    pull_request_id: int | None = None
    commit: str = ""
    policy_digest: str = ""
    kind: str = "approval"  # approval | changes_requested


@dataclass(frozen=True)
class Release:
    """One candidate commit of the watched branch on its way to production.

    Every id of an external effect is recorded here before the controller waits on it, so a pass
    that starts after a crash finds it and carries on rather than doing it again. ``pending_action``
    and ``pending_since`` are the write-ahead mark of an effect whose id is not known yet.
    """

    pipeline: str
    commit: str
    branch: str
    state: State
    created_at: datetime
    updated_at: datetime
    id: int | None = None
    # What is in it: commits since the production branch (at ``base_commit`` when detected), and the
    # pull requests that merged them.
    commits: tuple[Commit, ...] = ()
    changes: tuple[Change, ...] = ()
    base_commit: str | None = None
    # Staging.
    staging_app: str = ""
    staging_build_id: str | None = None
    staging_release_id: str | None = None
    staging_release_version: int | None = None
    staging_slug_id: str | None = None
    staging_verified_at: datetime | None = None
    # Approval.
    release_branch: str | None = None
    pull_request_id: int | None = None
    pull_request_url: str | None = None
    approvals: tuple[Approval, ...] = ()
    approved_at: datetime | None = None
    # Production.
    production_app: str = ""
    backup_id: str | None = None
    backup_name: str | None = None
    promotion_id: str | None = None
    previous_release_id: str | None = None
    previous_release_version: int | None = None
    production_release_id: str | None = None
    production_release_version: int | None = None
    rollback_release_id: str | None = None
    rollback_release_version: int | None = None
    released_at: datetime | None = None
    # After a failed production verification: why production was rolled back, and whether the
    # release it went back to passed its checks.
    rollback_reason: str = ""
    rollback_verified_at: datetime | None = None
    # Verification progress of what is being verified (reset when verification starts): the stage's
    # checks, each with its own attempts and soak.
    verification_started_at: datetime | None = None
    check_progress: tuple[CheckProgress, ...] = ()
    # Write-ahead mark of an effect in flight, and the last word on why the release is where it is.
    pending_action: str | None = None
    pending_since: datetime | None = None
    reason: str = ""
    superseded_by: int | None = None
    # Feedback in Bitbucket: keys of what was posted ("staging:#12" a comment on pull request 12;
    # a key ending in "?" is about to be posted), and the digest of the release pull request's
    # description as last written.
    feedback: tuple[str, ...] = ()
    description_digest: str | None = None

    @property
    def counted_approvals(self) -> tuple[Approval, ...]:
        """The approvals that counted (not requests for changes)."""
        return tuple(a for a in self.approvals if a.counted and a.kind == "approval")


@dataclass(frozen=True)
class EnvironmentState:
    """What people decided about one environment (a stage) of a pipeline: a lock (set when
    production is rolled back; the controller promotes nothing until someone clears it), a freeze
    (nothing deploys until it is lifted or its ``frozen_until`` passes), and a one-time override of
    the deploy window and freeze for one release (``pipeline promote ENV --now``)."""

    pipeline: str
    name: str
    locked_at: datetime | None = None
    locked_by: str = ""
    lock_reason: str = ""
    frozen_at: datetime | None = None
    frozen_by: str = ""
    freeze_reason: str = ""
    frozen_until: datetime | None = None
    override_release: int | None = None
    override_at: datetime | None = None
    override_by: str = ""
    override_reason: str = ""

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    def frozen(self, now: datetime) -> bool:
        """Frozen at ``now``: a freeze with an ``until`` that has passed no longer holds."""
        return self.frozen_at is not None and (self.frozen_until is None or now < self.frozen_until)


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a span of the day, ``start`` <= time < ``end``, in the
    deploy windows' time zone."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class DeployWindows:
    """When a deployment of an environment may start: inside any of ``allow``, in ``timezone``."""

    timezone: tzinfo
    allow: tuple[Window, ...]

    @property
    def zone_name(self) -> str:
        return str(getattr(self.timezone, "key", self.timezone))


class RollbackState(StrEnum):
    """Where a rollback asked for by a person is: requested -> rolling_back -> verifying ->
    verified; ends ``verified``, ``unverified`` (it runs, but fails its checks) or ``failed``."""

    REQUESTED = "requested"
    ROLLING_BACK = "rolling_back"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RollbackState.VERIFIED, RollbackState.UNVERIFIED, RollbackState.FAILED)


@dataclass(frozen=True)
class TakenOut:
    """A Heroku release that a rollback takes off an environment, and the controller's release of
    it (None when it was not the controller's)."""

    version: int
    release_id: int | None
    commit: str | None
    description: str


@dataclass(frozen=True)
class Rollback:
    """A person's rollback of an environment to an earlier Heroku release (``pipeline rollback``).

    The controller carries it out in its passes, like a release: the new Heroku release's id is
    recorded before it waits, then the environment's checks verify what runs. ``forced`` holds the
    reasons a ``--force`` was needed for (a target never verified, a migration taken out)."""

    pipeline: str
    environment: str
    app: str
    state: RollbackState
    requested_at: datetime
    requested_by: str
    reason: str
    from_release_id: str
    from_version: int
    to_release_id: str
    to_version: int
    updated_at: datetime
    id: int | None = None
    to_slug_id: str | None = None
    taken_out: tuple[TakenOut, ...] = ()
    forced: tuple[str, ...] = ()
    heroku_release_id: str | None = None
    heroku_version: int | None = None
    pending_since: datetime | None = None
    verification_started_at: datetime | None = None
    check_progress: tuple[CheckProgress, ...] = ()
    verified_at: datetime | None = None
    outcome: str = ""


@dataclass(frozen=True)
class Event:
    """One entry of the append-only history: a transition or a decision, with its evidence.

    ``kind`` is past tense (ReleaseDetected, StagingVerified, ApprovalIgnored...); ``refs`` holds
    the ids of what it touched (build, release, pull_request, backup, promotion, rollback...).
    An event of an environment (frozen, unlocked, rolled back by hand) has ``environment`` set, and
    ``release_id`` only when it concerns one release too.
    """

    release_id: int | None
    at: datetime
    kind: str
    actor: str
    reason: str
    state_from: State | None = None
    state_to: State | None = None
    refs: dict[str, str] = field(default_factory=dict)
    id: int | None = None
    detail: str = ""  # longer evidence: a release phase's output, the policy an approval was judged by
    environment: str | None = None
    pipeline: str = ""  # filled in by the store for a release's events
