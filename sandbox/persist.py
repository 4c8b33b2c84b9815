"""State that survives a restart of the sandbox: JSON files written atomically.

Stand-ins keep their state in memory, guarded by their own lock, and call ``save`` after
every change. Absolute URLs are never stored: the ports may differ after a restart, so
responses build URLs from the server's current base URL.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class JsonFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, default: Any) -> Any:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return default

    def save(self, data: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
