"""What the controller needs from the outside world, as small Protocols.

Adapters in ``pipeline.adapters`` implement them over real HTTP; the store in ``pipeline.store``
implements ``ReleaseStore``. Every method either does what it says or raises
``pipeline.errors.Temporary`` (try again later; nothing is assumed done) or ``Permanent`` (a person
must act; ``NotFound`` for a missing thing). No method returns a third-party object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pipeline.model import (
    Backup,
    BackupSchedule,
    Change,
    Comment,
    Commit,
    DatabaseInfo,
    Dyno,
    EnvironmentState,
    Event,
    EventKind,
    Formation,
    HerokuBuild,
    HerokuRelease,
    Merge,
    PermissionCheck,
    Person,
    Promotion,
    PullRequest,
    PullRequestActivity,
    Release,
    Rollback,
    State,
    Webhook,
)


class SourceControl(Protocol):
    """One Bitbucket Cloud repository, seen with the controller's credentials."""

    def check_access(self) -> Person | None:
        """Read the repository once; return the controller's own account where the credential can
        tell (None: an access token, whose bot account shows on what it does). Permanent on bad
        credentials or a missing repository (the message says which)."""
        ...

    def account(self) -> Person | None:
        """The controller's own Bitbucket account (its approvals never count), or None when the
        credential cannot tell (an access token)."""
        ...

    def workspace_members(self) -> list[Person]:
        """Every member of the repository's workspace, with uuid and account id. Permanent (403)
        for a credential that may not read them (an access token)."""
        ...

    def permissions(self, members: bool) -> list[PermissionCheck]:
        """Each permission the release path needs from Bitbucket, granted or not, as far as the
        credential shows it without acting (``members``: reading the workspace's members too)."""
        ...

    def branch_head(self, branch: str) -> str | None:
        """The 40-character commit a branch points at, or None when the branch does not exist."""
        ...

    def commits_between(self, include: str, exclude: str | None, limit: int = 200) -> list[Commit]:
        """Commits reachable from ``include`` and not from ``exclude``, newest first, at most
        ``limit`` of them."""
        ...

    def merged_pull_requests(
        self, into: str, commits: Sequence[str], since: datetime | None = None
    ) -> list[Change]:
        """Pull requests merged into branch ``into`` whose merge commit is one of ``commits``
        (full hashes; Bitbucket's 12-character merge hashes are matched by prefix), newest first.
        ``since``: none merged before it (the oldest commit's date) - lets the search stop early."""
        ...

    def build_statuses(self, commit: str) -> dict[str, str]:
        """Commit status key -> state (SUCCESSFUL, FAILED, INPROGRESS, STOPPED) for one commit."""
        ...

    def set_status(self, commit: str, key: str, state: str, name: str, description: str, url: str) -> None:
        """Post a commit status. Idempotent: the same key overwrites the previous status."""
        ...

    def archive(self, commit: str, branch: str | None = None) -> bytes:
        """The commit's source as a gzipped tarball, fetched with the controller's credentials
        (``branch``: a branch that has the commit, should it not be fetchable by its hash alone)."""
        ...

    def create_branch(self, name: str, commit: str) -> None:
        """Create branch ``name`` at ``commit``. Idempotent when it already points there; Permanent
        when it exists and points elsewhere."""
        ...

    def find_pull_request(self, source_branch: str, destination_branch: str) -> PullRequest | None:
        """The newest pull request from ``source_branch`` into ``destination_branch``, any state."""
        ...

    def open_pull_request(
        self,
        source_branch: str,
        destination_branch: str,
        title: str,
        description: str,
        reviewers: Sequence[str] = (),
    ) -> PullRequest:
        """Open a pull request, asking ``reviewers`` (account uuids or ids) to review it. Idempotent:
        an open one for the same branches is returned as is."""
        ...

    def pull_request(self, pull_request_id: int) -> PullRequest:
        """One pull request with its participants (approvals, changes requested)."""
        ...

    def activity(self, pull_request_id: int, limit: int = 500) -> list[PullRequestActivity]:
        """The pull request's activity log, newest first: updates (with where the source branch
        pointed at each), approvals, changes requested, comments."""
        ...

    def comments(self, pull_request_id: int, limit: int = 500) -> list[Comment]:
        """The pull request's comments, oldest first."""
        ...

    def update_pull_request(self, pull_request_id: int, title: str, description: str) -> None:
        """Replace the title and description (the release notes and progress). Idempotent."""
        ...

    def comment(self, pull_request_id: int, text: str) -> None:
        """Add a comment to a pull request. Not idempotent: callers look before they comment again."""
        ...

    def decline_pull_request(self, pull_request_id: int, comment: str) -> None:
        """Comment, then decline. Idempotent: an already declined pull request is left as is."""
        ...

    def webhooks(self) -> list[Webhook]:
        """The repository's webhooks."""
        ...

    def install_webhook(
        self, url: str, secret: str, events: Sequence[str], description: str
    ) -> tuple[Webhook, str]:
        """Create the hook to ``url`` with ``secret`` and ``events``, or update the one already
        there for that URL (or description): idempotent. Returns it and "created" or "updated"."""
        ...

    def merge_pull_request(self, pull_request_id: int, message: str) -> Merge:
        """Merge (merge commit strategy): ``merged`` with the merge commit, or ``pending`` with the
        task to poll (``merge_status``) when Bitbucket runs it as a task. Not idempotent while a
        task runs: callers record the task before they wait. An already merged pull request is
        ``merged``. Permanent on conflicts; Temporary while a merge of it already runs."""
        ...

    def merge_status(self, pull_request_id: int, task: str) -> Merge:
        """Where a merge task stands: ``pending``, ``merged`` or ``failed``."""
        ...


class Platform(Protocol):
    """The Heroku Platform API, with one account's key."""

    def check_access(self) -> str:
        """Read the account; return its e-mail. Permanent on a bad key (heroku3 does not check)."""
        ...

    def permissions(self, apps: Sequence[str], pipeline: str | None) -> list[PermissionCheck]:
        """Each permission the release path needs from Heroku (deploy each app, promote through the
        pipeline), granted or not, as far as the key shows it without acting."""
        ...

    def upload_source(self, tarball: bytes) -> str:
        """POST /sources, PUT the tarball to its put_url; return the get_url to build from."""
        ...

    def start_build(self, app: str, source_url: str, checksum: str, version: str) -> HerokuBuild:
        """Start a build of ``source_url`` (checksum "SHA256:<hex>") labelled ``version``."""
        ...

    def build(self, app: str, build_id: str) -> HerokuBuild: ...

    def builds(self, app: str, limit: int = 50) -> list[HerokuBuild]:
        """The app's builds, newest first (to find one started before a crash)."""
        ...

    def release(self, app: str, id_or_version: str | int) -> HerokuRelease: ...

    def releases(self, app: str, limit: int = 50) -> list[HerokuRelease]:
        """The app's releases, newest first."""
        ...

    def current_release(self, app: str) -> HerokuRelease | None:
        """The release the app runs now (the newest succeeded ``current`` one), or None."""
        ...

    def promote(self, pipeline: str, source_app: str, release_id: str, target_app: str) -> Promotion:
        """Promote one release of ``source_app`` (its slug, never a rebuild) to ``target_app``."""
        ...

    def promotion(self, promotion_id: str) -> Promotion:
        """The promotion with its targets."""
        ...

    def rollback(self, app: str, release_id: str) -> HerokuRelease:
        """Create a new release of ``app`` running ``release_id``'s slug and config."""
        ...

    def dynos(self, app: str) -> list[Dyno]:
        """The app's dynos now, each with the release it runs."""
        ...

    def formation(self, app: str) -> list[Formation]:
        """The app's formation: every process type with the number of dynos it should run."""
        ...

    def web_url(self, app: str) -> str:
        """Where the app answers HTTP."""
        ...

    def release_output(self, release: HerokuRelease) -> str:
        """The release phase's output, or "" when it has none."""
        ...


class Backups(Protocol):
    """Heroku Postgres backups of one app's primary database (the Heroku Data API)."""

    def permissions(self, app: str) -> list[PermissionCheck]:
        """Whether the key reaches the app's database and its backups."""
        ...

    def capture(self, app: str) -> Backup:
        """Start a backup of the app's DATABASE; return it (pending)."""
        ...

    def backup(self, app: str, backup_id: str) -> Backup:
        """One backup by uuid or number."""
        ...

    def backups(self, app: str) -> list[Backup]:
        """Every backup of the app's databases, newest first."""
        ...

    def database_info(self, app: str) -> DatabaseInfo:
        """The plan, creation time and rollback window of the app's primary database."""
        ...

    def schedules(self, app: str) -> list[BackupSchedule]:
        """The daily backup schedules of the app's primary database."""
        ...

    def set_schedule(self, app: str, hour: int, timezone: str) -> BackupSchedule:
        """Create or replace the database's daily backup schedule. Idempotent."""
        ...

    def public_url(self, app: str, backup_id: str) -> str:
        """A short-lived signed URL (about an hour) of a completed backup's ``pg_dump -Fc`` archive,
        by uuid, number or name (``b012``), as ``heroku pg:backups:url`` gets it. The URL is a
        capability: callers keep it out of logs, messages and command lines. NotFound for no such
        backup; Permanent when the backup is not completed."""
        ...


@dataclass(frozen=True)
class ChainHead:
    """Where the store's hash chain of events ends: how many events it holds, the last one's id and
    its hash (None and "" while the store has no event)."""

    events: int = 0
    event_id: int | None = None
    hash: str = ""


@dataclass(frozen=True)
class ChainLink:
    """One stored event as the hash chain sees it: its ``record`` (the content its hash covers,
    ``prev_hash`` included: see ``pipeline.store.chain``), the ``hash`` stored with it (None: a row
    the store never wrote) and ``computed``, what the record hashes to now (``hash`` unless edited)."""

    record: Mapping[str, Any]
    hash: str | None
    computed: str

    @property
    def id(self) -> int:
        return int(self.record["id"])

    @property
    def kind(self) -> str:
        return str(self.record["kind"])

    @property
    def at(self) -> str:
        """When, as ISO-8601 in UTC."""
        return str(self.record["at"])

    @property
    def prev_hash(self) -> str | None:
        value = self.record["prev_hash"]
        return None if value is None else str(value)


@dataclass(frozen=True)
class ChainPage:
    """Events of the chain in id order with the chain's head, read together (one snapshot)."""

    head: ChainHead
    links: tuple[ChainLink, ...]


class ReleaseStore(Protocol):
    """Releases and their append-only event log.

    ``save`` is atomic: the release row and its new events land together or not at all. Events are
    never updated or deleted. Every event is linked into one hash chain per store (its ``hash``
    covers its content and the previous event's hash), in the transaction that appends it.
    """

    def add(self, release: Release, event_kind: EventKind, reason: str, actor: str) -> Release:
        """Store a new release and its first event; return it with its id. Idempotent per
        (pipeline, commit): a second add returns the stored release unchanged."""
        ...

    def save(self, release: Release, events: Sequence[Event]) -> Release:
        """Write the release's new fields and append ``events`` (their release_id is set)."""
        ...

    def get(self, release_id: int) -> Release:
        """One release; NotFound when there is none."""
        ...

    def by_commit(self, pipeline: str, commit: str) -> Release | None: ...

    def active(self, pipeline: str) -> list[Release]:
        """Releases not in a final state, newest first."""
        ...

    def history(self, pipeline: str | None = None, limit: int = 50) -> list[Release]:
        """Releases newest first."""
        ...

    def latest(self, pipeline: str) -> Release | None:
        """The newest release of a pipeline, whatever its state."""
        ...

    def last_in(self, pipeline: str, states: Sequence[State]) -> Release | None:
        """The newest release of a pipeline in one of ``states``."""
        ...

    def events(self, release_id: int) -> list[Event]:
        """Every event of a release, oldest first."""
        ...

    def acquire_lock(self, name: str, holder: str, now: datetime, ttl_seconds: float) -> bool:
        """Take or renew a named lock for ``holder``; False when someone else holds a live one."""
        ...

    def lock_holder(self, name: str, now: datetime) -> str | None:
        """Who holds a live lease on lock ``name`` at ``now``, or None."""
        ...

    def release_lock(self, name: str, holder: str) -> None:
        """Give a lock back (no-op when ``holder`` does not hold it)."""
        ...

    def note(self, pipeline: str, events: Sequence[Event]) -> None:
        """Append events of the pipeline that concern no release alone (credentials rotated...)."""
        ...

    def log(self, pipeline: str, environment: str | None = None, limit: int = 50) -> list[Event]:
        """The pipeline's events newest first (of releases and environments), or one environment's."""
        ...

    def environment(self, pipeline: str, name: str) -> EnvironmentState:
        """What people decided about a stage (lock, freeze, override); nothing decided when new."""
        ...

    def save_environment(self, state: EnvironmentState, events: Sequence[Event]) -> EnvironmentState:
        """Write a stage's state and append ``events`` (filed under it), atomically."""
        ...

    def add_rollback(self, rollback: Rollback, events: Sequence[Event]) -> Rollback:
        """Store a new rollback with its first events; return it with its id."""
        ...

    def save_rollback(self, rollback: Rollback, events: Sequence[Event]) -> Rollback:
        """Write a rollback's fields and append ``events``, atomically."""
        ...

    def rollback(self, rollback_id: int) -> Rollback:
        """One rollback; NotFound when there is none."""
        ...

    def rollbacks(self, pipeline: str, *, active: bool = False, limit: int = 50) -> list[Rollback]:
        """Rollbacks newest first (``active``: not final)."""
        ...

    def check_intact(self) -> None:
        """StoreLost when the store is no longer the one this process opened (removed, replaced)."""
        ...

    def record_delivery(self, pipeline: str, request_uuid: str, event: str, at: datetime) -> bool:
        """Note a webhook delivery by its ``X-Request-UUID``; False when it was noted before (a
        repeated delivery). Atomic across processes."""
        ...

    def chain_head(self) -> ChainHead:
        """The head of the events' hash chain now (one read)."""
        ...

    def appended(self) -> tuple[ChainHead, ...]:
        """The chain's head after each event the calling thread's last write appended, oldest first
        (the last one: the head that write left); empty when it appended none. Read without a query."""
        ...

    def chain(self, after: int = 0, limit: int = 1000, since: datetime | None = None) -> ChainPage:
        """At most ``limit`` events with an id above ``after`` (``since``: at that time or later),
        in id order, and the chain's head, read in one snapshot."""
        ...
