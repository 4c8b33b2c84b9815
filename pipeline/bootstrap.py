"""The composition root: the one place that builds things from settings.

Nothing is built at import time. The product never imports ``sandbox``; the sandbox wiring
below imports it lazily, only when someone asks for the sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.core import Sandbox


def sandbox(state_dir: Path, ports: dict[str, int] | None = None, **options: Any) -> Sandbox:
    """A sandbox (not yet started) keeping its state in ``state_dir``; ``options`` go to ``Sandbox``."""
    from sandbox.core import Sandbox

    return Sandbox(state_dir, ports=ports, **options)


def running_sandbox(state_dir: Path) -> dict[str, Any] | None:
    """The description of the sandbox running on ``state_dir``, or None."""
    from sandbox.core import running_info

    return running_info(state_dir)
