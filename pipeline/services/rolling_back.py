"""Rolling an environment back."""

from __future__ import annotations

from pipeline.errors import BadInput


def _version(text: str) -> int:
    value = text.strip().lower().removeprefix("v")
    if not value.isdecimal():
        raise BadInput(
            "--to", "expected a Heroku release version such as 12 or v12 (`heroku releases` lists them)"
        )
    return int(value)
