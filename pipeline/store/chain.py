"""The hash chain over the events: what an event's hash covers, in which canonical form, and how
new events are linked to the chain's head. Pure functions, no I/O.

Every event carries ``hash``: the hex SHA-256 of its *record* in canonical JSON, where the record
is the event's content and the hash of the event before it::

    {"actor", "at", "detail", "environment", "id", "kind", "pipeline", "prev_hash", "reason",
     "refs", "release_id", "state_from", "state_to"}

- ``at`` as ISO-8601 in UTC (``2026-05-04T09:30:15.123456+00:00``; no fraction when it is zero);
- ``kind``, ``state_from``, ``state_to`` as the strings stored; ``refs`` as the JSON object stored;
  ``detail`` as a string ("" when none); ``environment``, ``release_id`` and ``prev_hash`` may be
  null (``prev_hash``: the first event of the store);
- canonical JSON: keys sorted, no whitespace (``separators=(",", ":")``), non-ASCII characters as
  themselves, encoded as UTF-8.

The events form one chain per store, in id order: each event's ``prev_hash`` is the ``hash`` of the
event with the next lower id, and the store's ``chain_head`` row holds the last one's id and hash and
how many events the chain holds. ``pipeline audit export`` writes each record with its ``hash``: an
auditor recomputes the hash of each line without its ``hash`` key and follows ``prev_hash``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.ports import ChainHead, ChainLink
from pipeline.store.tables import as_utc

# The event columns the record holds, beside ``prev_hash`` (``hash`` is what it hashes to).
RECORD_COLUMNS = (
    "id",
    "pipeline",
    "environment",
    "release_id",
    "at",
    "kind",
    "actor",
    "reason",
    "state_from",
    "state_to",
    "refs",
    "detail",
)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record, as UTF-8 bytes: what its hash is taken of."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def digest(record: Mapping[str, Any]) -> str:
    """The hex SHA-256 of a record's canonical JSON."""
    return hashlib.sha256(canonical(record)).hexdigest()


def record(row: Mapping[Any, Any], prev_hash: str | None) -> dict[str, Any]:
    """The record of an ``events`` row (column -> value as written or as read back, ``id`` set)
    chained after ``prev_hash``. A row whose ``refs`` is no JSON object any more (edited by hand)
    keeps the text as it is, so it can still be hashed (and never matches)."""
    at = row["at"]
    values = {name: row[name] for name in RECORD_COLUMNS}
    values["at"] = as_utc(at).isoformat() if isinstance(at, datetime) else str(at)
    values["refs"] = _json_or_text(row["refs"])
    values["detail"] = row["detail"] or ""
    values["prev_hash"] = prev_hash
    return values


def link(head: ChainHead, rows: Sequence[MutableMapping[str, Any]]) -> tuple[ChainHead, ...]:
    """Chain new ``events`` rows (without ``id``) after ``head``: each is given the next id, the
    hash before it as ``prev_hash`` and its own ``hash``. Returns the chain's head after each row."""
    heads = []
    for row in rows:
        row["id"] = (head.event_id or 0) + 1
        row["prev_hash"] = head.hash or None
        row["hash"] = digest(record(row, row["prev_hash"]))
        head = ChainHead(events=head.events + 1, event_id=row["id"], hash=row["hash"])
        heads.append(head)
    return tuple(heads)


def _json_or_text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def head_from_row(row: Mapping[Any, Any]) -> ChainHead:
    """The ``chain_head`` row (``events``, ``event_id``, ``hash``) as a ``ChainHead``."""
    return ChainHead(events=int(row["events"]), event_id=int(row["event_id"]) or None, hash=str(row["hash"]))


def link_from_row(row: Mapping[Any, Any]) -> ChainLink:
    """A stored ``events`` row as the chain sees it: its record, stored hash and recomputed hash."""
    found = record(row, row["prev_hash"])
    return ChainLink(record=found, hash=row["hash"], computed=digest(found))
