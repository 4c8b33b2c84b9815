"""Small words for messages: times as ISO text, spans as "72h", commits compared by prefix."""

from __future__ import annotations

from datetime import datetime, timedelta


def same_commit(a: str, b: str) -> bool:
    """True when two commit hashes name the same commit (Bitbucket shortens some to 12 characters)."""
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def iso(at: datetime) -> str:
    """2026-11-24T12:00:00Z."""
    return at.isoformat().replace("+00:00", "Z")


def span_text(span: timedelta) -> str:
    """72h -> "72h", 90 minutes -> "90m", 45 s -> "45s" (for messages)."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 4 * 86400):
            return f"{seconds // size}{unit}"
    return f"{span.total_seconds():g}s"
