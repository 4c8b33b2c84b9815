"""Names from the files and the environment (a key, a variable, a check, a path) as a problem
repeats them: on one line, and short, whatever the file holds."""

from __future__ import annotations

SHOWN = 60
"""The most characters of a name that a problem repeats."""


def shown(name: object, limit: int = SHOWN) -> str:
    """``name`` as a problem may repeat it: on one line (control characters escaped) and at most
    ``limit`` characters (a longer one cut, with "...")."""
    text = str(name)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text
