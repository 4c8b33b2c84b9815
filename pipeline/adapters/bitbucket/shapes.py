"""Bitbucket's JSON in our words: accounts, commits, pull requests and their participants and
activity, comments, webhooks (``pipeline.model`` values), read from the raw answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.adapters import http
from pipeline.model import (
    Comment,
    Commit,
    Participant,
    Person,
    PullRequest,
    PullRequestActivity,
    Webhook,
)


def web_url(api_url: str) -> str:
    """Bitbucket's web host for an API URL: bitbucket.org for api.bitbucket.org, else the same
    scheme and host (a local stand-in serves both)."""
    parts = urlsplit(api_url)
    host = parts.netloc
    if parts.hostname == "api.bitbucket.org":
        host = "bitbucket.org"
    return urlunsplit((parts.scheme or "https", host, "", "", ""))


def bbql_string(value: str) -> str:
    """A value as a BBQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def same_commit(a: str, b: str) -> bool:
    """True when two hashes name the same commit (one may be Bitbucket's 12-character form)."""
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def person(user: Mapping[str, Any] | None) -> Person | None:
    """A Bitbucket account object as a Person (``nickname`` is the username), or None."""
    if not user:
        return None
    return Person(
        username=str(user.get("nickname") or user.get("username") or ""),
        uuid=str(user.get("uuid") or ""),
        account_id=str(user.get("account_id") or ""),
        display_name=str(user.get("display_name") or ""),
    )


def commit(data: Mapping[str, Any]) -> Commit:
    """A commit from its raw JSON; ``author`` is None when the e-mail has no linked account."""
    author = data.get("author") or {}
    return Commit(
        hash=str(data["hash"]),
        message=str(data.get("message") or ""),
        author_raw=str(author.get("raw") or ""),
        author=person(author.get("user")),
        date=http.parse_time(data["date"]),
        parents=tuple(str(p["hash"]) for p in data.get("parents") or () if isinstance(p, Mapping)),
    )


def participants(items: Sequence[Mapping[str, Any]] | None) -> tuple[Participant, ...]:
    """A pull request's participants; an entry without an account (a deleted user) is left out."""
    found = []
    for data in items or ():
        user = person(data.get("user"))
        if user is None:
            continue
        found.append(
            Participant(
                user=user,
                role=str(data.get("role") or "PARTICIPANT"),
                approved=bool(data.get("approved")),
                state=data.get("state"),
                participated_on=http.parse_optional_time(data.get("participated_on")),
            )
        )
    return tuple(found)


def html_link(data: Mapping[str, Any]) -> str:
    links = data.get("links") or {}
    return str((links.get("html") or {}).get("href") or (links.get("self") or {}).get("href") or "")


def pull_request(data: Mapping[str, Any]) -> PullRequest:
    """A pull request from its raw JSON (participants when the answer has them)."""
    source = data["source"]
    destination = data["destination"]
    return PullRequest(
        id=int(data["id"]),
        title=str(data.get("title") or ""),
        url=html_link(data),
        state=str(data["state"]),
        source_branch=str(source["branch"]["name"]),
        source_commit=str((source.get("commit") or {}).get("hash") or ""),
        destination_branch=str(destination["branch"]["name"]),
        author=person(data.get("author")),
        participants=participants(data.get("participants")),
        closed_by=person(data.get("closed_by")),
        description=str(data.get("description") or ""),
        reason=str(data.get("reason") or ""),
        merge_commit=str((data.get("merge_commit") or {}).get("hash") or ""),
        reviewers=tuple(p for p in (person(r) for r in data.get("reviewers") or ()) if p is not None),
    )


def activity_entry(data: Mapping[str, Any]) -> PullRequestActivity | None:
    """One activity log entry (update, approval, changes requested or comment), or None for a
    kind the controller does not read."""
    if isinstance(data.get("update"), Mapping):
        update = data["update"]
        source = update.get("source") or {}
        return PullRequestActivity(
            kind="update",
            at=http.parse_time(str(update["date"])),
            user=person(update.get("author")),
            source_commit=str((source.get("commit") or {}).get("hash") or ""),
            state=str(update.get("state") or ""),
            text=str(update.get("reason") or ""),
        )
    for key, kind in (
        ("approval", "approval"),
        ("changes_requested", "changes_requested"),
        ("request_changes", "changes_requested"),
    ):
        if isinstance(data.get(key), Mapping):
            entry = data[key]
            return PullRequestActivity(
                kind=kind, at=http.parse_time(str(entry["date"])), user=person(entry.get("user"))
            )
    if isinstance(data.get("comment"), Mapping):
        found = comment(data["comment"])
        return PullRequestActivity(kind="comment", at=found.at, user=found.user, text=found.text)
    return None


def webhook(data: Mapping[str, Any]) -> Webhook:
    """A webhook subscription from its raw JSON (the secret is write-only: only ``secret_set``)."""
    return Webhook(
        uuid=str(data["uuid"]),
        url=str(data["url"]),
        description=str(data.get("description") or ""),
        events=tuple(sorted(str(e) for e in data.get("events") or ())),
        active=bool(data.get("active")),
        secret_set=bool(data.get("secret_set")),
    )


def comment(data: Mapping[str, Any]) -> Comment:
    """A pull request comment from its raw JSON."""
    content = data.get("content") or {}
    return Comment(
        id=int(data["id"]),
        user=person(data.get("user")),
        text=str(content.get("raw") or ""),
        at=http.parse_time(str(data["created_on"])),
    )
