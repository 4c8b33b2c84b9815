"""What a credential may do: one line of ``pipeline credentials check`` per permission the release
path needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PermissionCheck:
    """Whether ``credential`` (an environment variable's name) allows ``need`` ("merge pull
    requests", "deploy claims-staging"); ``detail`` says what was seen, and what to do when not."""

    credential: str
    need: str
    ok: bool
    detail: str
