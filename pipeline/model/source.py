"""What Bitbucket reports, in our words: accounts, commits, pull requests and their activity,
comments, webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
    merge_commit: str = ""  # once merged (Bitbucket sends 12 characters)
    reviewers: tuple[Person, ...] = ()


@dataclass(frozen=True)
class Merge:
    """A merge of a pull request, as Bitbucket reports it: ``merged`` (``commit`` is the merge
    commit's full hash), ``pending`` (it runs as a task: ``task`` is the URL to poll) or ``failed``
    (``detail`` says why)."""

    status: str  # merged | pending | failed
    commit: str = ""
    task: str = ""
    detail: str = ""


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
