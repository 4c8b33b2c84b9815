"""The append-only history: one ``Event`` per transition or decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pipeline.model.release import State


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
