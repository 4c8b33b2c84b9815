"""The audit of the history: walking the events' hash chain to find the first event edited, removed
or inserted behind the controller's back, and exporting the events with their hashes for an auditor.

Only the store is needed (no secrets). The chain is read a page at a time; the head read with the
last page is read in the same snapshot as its events, so a ``serve`` appending meanwhile is no
problem: what was appended after is not judged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from checks import parse_duration
from pipeline.errors import BadInput
from pipeline.ports import ChainHead, ChainLink, ReleaseStore

# Events read per query, walking the chain.
PAGE = 1000

What = Literal["edited", "removed", "inserted"]


@dataclass(frozen=True)
class ChainProblem:
    """The first break of the chain: the event (``kind`` and ``at`` None for a removed one, which is
    gone) and what was done to it."""

    event: int
    kind: str | None
    at: str | None
    what: What
    detail: str


@dataclass(frozen=True)
class ChainReport:
    """What walking the chain found: ``events`` whole (every one when ``ok``), the chain's head hash,
    and the first problem."""

    ok: bool
    events: int
    head: str
    problem: ChainProblem | None = None

    def json(self) -> dict[str, Any]:
        """``pipeline audit verify --json``: ``{"ok", "events", "head", "problem"}``."""
        return {
            "ok": self.ok,
            "events": self.events,
            "head": self.head,
            "problem": None if self.problem is None else asdict(self.problem),
        }


def verify(store: ReleaseStore, page: int = PAGE) -> ChainReport:
    """Walk the chain in id order: each event's hash must be what its content (and the hash before
    it) hashes to, each must be chained after the one before it with no id missing, and the last must
    be the chain's head. Stops at the first event that is not so."""
    previous: ChainLink | None = None
    whole = 0
    after = 0
    while True:
        found = store.chain(after=after, limit=page)
        for link in found.links:
            problem = _check(store, found.head, link, previous)
            if problem is not None:
                return ChainReport(False, whole, found.head.hash, problem)
            previous, whole = link, whole + 1
        if len(found.links) < page:
            break
        after = found.links[-1].id
    problem = _ends_at_head(found.head, previous, whole)
    return ChainReport(problem is None, whole, found.head.hash, problem)


def _check(
    store: ReleaseStore, head: ChainHead, link: ChainLink, previous: ChainLink | None
) -> ChainProblem | None:
    """What is wrong with ``link`` coming after ``previous`` (None: it is the first), if anything.
    The store gives events the ids after the head's, without gaps: an event past the head, or one
    without a hash, was put there by hand; an id missing before a link that does not follow was
    removed."""
    if link.id > (head.event_id or 0):
        return _problem(link, "inserted", f"it comes after the chain's head (event {head.event_id or 0})")
    if not link.hash:
        return _problem(link, "inserted", "it has no hash: the store never wrote it")
    expected = previous.hash if previous is not None else None
    before = previous.id if previous is not None else 0
    if link.prev_hash != expected and link.id > before + 1:
        missing = before + 1
        gone = f"event {missing} is" if link.id == missing + 1 else f"events {missing} to {link.id - 1} are"
        return ChainProblem(
            missing, None, None, "removed", f"{gone} missing: {_named(link)} was chained after an event gone"
        )
    if link.computed != link.hash:
        return _problem(link, "edited", "its content no longer matches its hash")
    if link.prev_hash == expected:
        return None
    if previous is not None and _chain_goes_on_from(store, link):
        # The one before was rewritten and its hash made anew: this one still names the old hash.
        return _problem(
            previous, "edited", f"its hash was rewritten: event {link.id} was chained after another"
        )
    return _problem(
        link, "inserted", "it does not follow the event before it, and the chain does not go on from it"
    )


def _chain_goes_on_from(store: ReleaseStore, link: ChainLink) -> bool:
    """Whether the chain goes on from ``link``: the next event is chained after it, or it is the head."""
    following = store.chain(after=link.id, limit=1)
    if following.links:
        return following.links[0].prev_hash == link.hash
    return following.head.event_id == link.id and following.head.hash == link.hash


def _ends_at_head(head: ChainHead, last: ChainLink | None, whole: int) -> ChainProblem | None:
    """What is wrong with the chain ending at ``last`` (read with ``head``), if anything."""
    last_id = last.id if last is not None else 0
    end = head.event_id or 0
    if last_id < end:
        gone = f"event {end} is" if last_id + 1 == end else f"events {last_id + 1} to {end} are"
        return ChainProblem(
            last_id + 1, None, None, "removed", f"{gone} missing: the chain's head is event {end}"
        )
    if last is not None and last.hash != head.hash:
        return _problem(last, "edited", "its hash was rewritten: the chain's head holds another")
    if whole != head.events:
        return ChainProblem(
            end,
            None,
            None,
            "removed",
            f"the chain's head counts {head.events} events, the store holds {whole}",
        )
    return None


def _problem(link: ChainLink, what: What, why: str) -> ChainProblem:
    return ChainProblem(link.id, link.kind, link.at, what, f"{_named(link)}: {why}")


def _named(link: ChainLink) -> str:
    return f"event {link.id} ({link.kind} at {link.at})"


def export(store: ReleaseStore, since: datetime | None = None, page: int = PAGE) -> Iterator[str]:
    """The events (``since``: at that time or later) oldest first, one JSON object per line: the
    record its hash covers (``pipeline.store.chain``) and ``hash``. Keys sorted, no spaces: without
    ``hash``, a line is the canonical JSON its hash is taken of."""
    after = 0
    while True:
        found = store.chain(after=after, limit=page, since=since)
        for link in found.links:
            yield json.dumps(
                {**link.record, "hash": link.hash}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
            )
        if len(found.links) < page:
            return
        after = found.links[-1].id


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from now ("2h", "7d") or a time, ISO 8601 (without an offset:
    UTC). BadInput when it is neither."""
    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            "--since", "expected a duration such as 2h or 7d, or a time such as 2026-12-01T00:00 (ISO 8601)"
        ) from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)
