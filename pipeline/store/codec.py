"""``Release`` and ``Event`` <-> table rows, and the nested values <-> JSON text.

Pure functions, no I/O. The contract is round-trip fidelity: ``release_from_row(release_to_row(r))``
equals ``r`` for every valid ``Release`` (the ``id`` comes from the row). Nested values are stored as
lists of plain dicts, keys named after the dataclass fields, datetimes as ISO-8601 UTC strings
(``2024-05-01T12:00:00.250000+00:00``), a missing ``Person`` as ``null``. Naive datetimes are refused
with ValueError wherever they appear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, get_type_hints

from pipeline.model import (
    Approval,
    Change,
    CheckProgress,
    Commit,
    EnvironmentState,
    Event,
    EventKind,
    Intent,
    Person,
    Release,
    Rollback,
    RollbackState,
    State,
    TakenOut,
)
from pipeline.store.tables import as_utc

# Release fields held as JSON text rather than in a column of their own type.
JSON_FIELDS = frozenset({"commits", "changes", "approvals", "feedback", "check_progress"})
RELEASE_FIELDS = tuple(f.name for f in fields(Release))
ROLLBACK_FIELDS = tuple(f.name for f in fields(Rollback))
ENVIRONMENT_FIELDS = tuple(f.name for f in fields(EnvironmentState))


def _datetime_fields(cls: type) -> frozenset[str]:
    hints = get_type_hints(cls)
    return frozenset(f.name for f in fields(cls) if hints[f.name] in (datetime, datetime | None))


DATETIME_FIELDS = _datetime_fields(Release)
ROLLBACK_DATETIMES = _datetime_fields(Rollback)
ENVIRONMENT_DATETIMES = _datetime_fields(EnvironmentState)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def time_to_text(value: datetime) -> str:
    """An aware datetime as ISO-8601 in UTC; ValueError when naive."""
    return as_utc(value).isoformat()


def time_from_text(text: str) -> datetime:
    """The inverse of ``time_to_text``; an offset-less string is read as UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def person_to_dict(person: Person | None) -> dict[str, str] | None:
    if person is None:
        return None
    return {
        "username": person.username,
        "uuid": person.uuid,
        "account_id": person.account_id,
        "display_name": person.display_name,
    }


def person_from_dict(data: Mapping[str, Any] | None) -> Person | None:
    if data is None:
        return None
    return Person(
        username=data["username"],
        uuid=data.get("uuid", ""),
        account_id=data.get("account_id", ""),
        display_name=data.get("display_name", ""),
    )


def commits_to_json(commits: tuple[Commit, ...]) -> str:
    return _dumps(
        [
            {
                "hash": c.hash,
                "message": c.message,
                "author_raw": c.author_raw,
                "author": person_to_dict(c.author),
                "date": time_to_text(c.date),
                "parents": list(c.parents),
            }
            for c in commits
        ]
    )


def commits_from_json(text: str) -> tuple[Commit, ...]:
    return tuple(
        Commit(
            hash=d["hash"],
            message=d["message"],
            author_raw=d["author_raw"],
            author=person_from_dict(d["author"]),
            date=time_from_text(d["date"]),
            parents=tuple(d.get("parents", ())),
        )
        for d in json.loads(text)
    )


def changes_to_json(changes: tuple[Change, ...]) -> str:
    return _dumps(
        [
            {
                "id": c.id,
                "title": c.title,
                "author": person_to_dict(c.author),
                "url": c.url,
                "merge_commit": c.merge_commit,
            }
            for c in changes
        ]
    )


def changes_from_json(text: str) -> tuple[Change, ...]:
    return tuple(
        Change(
            id=d["id"],
            title=d["title"],
            author=person_from_dict(d["author"]),
            url=d["url"],
            merge_commit=d["merge_commit"],
        )
        for d in json.loads(text)
    )


def approvals_to_json(approvals: tuple[Approval, ...]) -> str:
    return _dumps(
        [
            {
                "user": person_to_dict(a.user),
                "at": time_to_text(a.at),
                "counted": a.counted,
                "reason": a.reason,
                "pull_request_id": a.pull_request_id,
                "commit": a.commit,
                "policy_digest": a.policy_digest,
                "kind": a.kind,
            }
            for a in approvals
        ]
    )


def approvals_from_json(text: str) -> tuple[Approval, ...]:
    approvals = []
    for d in json.loads(text):
        user = person_from_dict(d["user"])
        if user is None:
            raise ValueError("an approval without a user in the store")
        approvals.append(
            Approval(
                user=user,
                at=time_from_text(d["at"]),
                counted=d["counted"],
                reason=d["reason"],
                pull_request_id=d.get("pull_request_id"),
                commit=d.get("commit", ""),
                policy_digest=d.get("policy_digest", ""),
                kind=d.get("kind", "approval"),
            )
        )
    return tuple(approvals)


def _optional_time(value: datetime | None) -> str | None:
    return None if value is None else time_to_text(value)


def _time_or_none(text: str | None) -> datetime | None:
    return None if text is None else time_from_text(text)


def progress_to_json(progress: tuple[CheckProgress, ...]) -> str:
    return _dumps(
        [
            {
                "name": p.name,
                "failures": p.failures,
                "passing_since": _optional_time(p.passing_since),
                "next_at": _optional_time(p.next_at),
                "done": p.done,
                "detail": p.detail,
            }
            for p in progress
        ]
    )


def progress_from_json(text: str) -> tuple[CheckProgress, ...]:
    return tuple(
        CheckProgress(
            name=d["name"],
            failures=d["failures"],
            passing_since=_time_or_none(d["passing_since"]),
            next_at=_time_or_none(d["next_at"]),
            done=d["done"],
            detail=d["detail"],
        )
        for d in json.loads(text)
    )


def taken_out_to_json(items: tuple[TakenOut, ...]) -> str:
    return _dumps(
        [
            {
                "version": t.version,
                "release_id": t.release_id,
                "commit": t.commit,
                "description": t.description,
            }
            for t in items
        ]
    )


def taken_out_from_json(text: str) -> tuple[TakenOut, ...]:
    return tuple(
        TakenOut(
            version=d["version"], release_id=d["release_id"], commit=d["commit"], description=d["description"]
        )
        for d in json.loads(text)
    )


def rollback_to_row(rollback: Rollback) -> dict[str, Any]:
    """Column name -> value for every ``rollbacks`` column but ``id``."""
    row: dict[str, Any] = {}
    for name in ROLLBACK_FIELDS:
        if name == "id":
            continue
        value = getattr(rollback, name)
        if name in ROLLBACK_DATETIMES and value is not None:
            value = as_utc(value)
        row[name] = value
    row["state"] = RollbackState(rollback.state).value
    row["taken_out"] = taken_out_to_json(rollback.taken_out)
    row["forced"] = _dumps(list(rollback.forced))
    row["check_progress"] = progress_to_json(rollback.check_progress)
    return row


def rollback_from_row(row: Mapping[Any, Any]) -> Rollback:
    values = {name: row[name] for name in ROLLBACK_FIELDS}
    values["state"] = RollbackState(row["state"])
    values["taken_out"] = taken_out_from_json(row["taken_out"])
    values["forced"] = tuple(json.loads(row["forced"]))
    values["check_progress"] = progress_from_json(row["check_progress"])
    return Rollback(**values)


def environment_to_row(state: EnvironmentState) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in ENVIRONMENT_FIELDS:
        value = getattr(state, name)
        if name in ENVIRONMENT_DATETIMES and value is not None:
            value = as_utc(value)
        row[name] = value
    return row


def environment_from_row(row: Mapping[Any, Any]) -> EnvironmentState:
    return EnvironmentState(**{name: row[name] for name in ENVIRONMENT_FIELDS})


def release_to_row(release: Release) -> dict[str, Any]:
    """Column name -> value for every ``releases`` column but ``id``. ValueError on a naive time."""
    row: dict[str, Any] = {}
    for name in RELEASE_FIELDS:
        if name == "id":
            continue
        value = getattr(release, name)
        if name in DATETIME_FIELDS and value is not None:
            value = as_utc(value)
        row[name] = value
    row["state"] = State(release.state).value
    row["commits"] = commits_to_json(release.commits)
    row["changes"] = changes_to_json(release.changes)
    row["approvals"] = approvals_to_json(release.approvals)
    row["feedback"] = _dumps(list(release.feedback))
    row["check_progress"] = progress_to_json(release.check_progress)
    return row


def release_from_row(row: Mapping[Any, Any]) -> Release:
    """A ``Release`` from a ``releases`` row (times already aware UTC, see ``tables.UtcDateTime``)."""
    values = {name: row[name] for name in RELEASE_FIELDS}
    values["state"] = State(row["state"])
    values["pending_action"] = None if row["pending_action"] is None else Intent(row["pending_action"])
    values["commits"] = commits_from_json(row["commits"])
    values["changes"] = changes_from_json(row["changes"])
    values["approvals"] = approvals_from_json(row["approvals"])
    values["feedback"] = tuple(json.loads(row["feedback"]))
    values["check_progress"] = progress_from_json(row["check_progress"])
    return Release(**values)


def event_to_row(event: Event, release_id: int | None, pipeline: str) -> dict[str, Any]:
    """Column name -> value for a new ``events`` row of pipeline ``pipeline``, about release
    ``release_id`` (None: an environment's event), without ``id``."""
    return {
        "pipeline": pipeline,
        "environment": event.environment,
        "release_id": release_id,
        "at": as_utc(event.at),
        "kind": None if event.kind is None else str(event.kind),  # None: the database refuses it
        "actor": event.actor,
        "reason": event.reason,
        "state_from": None if event.state_from is None else State(event.state_from).value,
        "state_to": None if event.state_to is None else State(event.state_to).value,
        "refs": _dumps(dict(event.refs)),
        "detail": event.detail,
    }


def event_from_row(row: Mapping[Any, Any]) -> Event:
    return Event(
        id=row["id"],
        release_id=row["release_id"],
        at=row["at"],
        kind=EventKind(row["kind"]),
        actor=row["actor"],
        reason=row["reason"],
        state_from=None if row["state_from"] is None else State(row["state_from"]),
        state_to=None if row["state_to"] is None else State(row["state_to"]),
        refs=json.loads(row["refs"]),
        detail=row["detail"] or "",
        environment=row["environment"],
        pipeline=row["pipeline"],
    )
