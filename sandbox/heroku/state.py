"""The Heroku stand-in's records: plain dicts in memory behind one lock, saved after every change.

``Store`` holds one collection per resource (``apps``, ``builds``, ``releases``...), each a dict
from id to record. Records hold what Heroku would store, never absolute URLs (the base URL may
change across restarts); ``sandbox.heroku.shapes`` turns them into the JSON Heroku sends.

Contract: read or change records only inside ``with store.lock:``; call ``store.save()`` after a
change (``store.change()`` does both). ``store.changed`` is a Condition on the same lock, notified
on every save, so waiters (``deploy``) wake up when a build or release moves on.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.persist import JsonFile

Record = dict[str, Any]

COLLECTIONS = (
    "apps",
    "addons",
    "formations",
    "builds",
    "slugs",
    "releases",
    "sources",
    "pipelines",
    "couplings",
    "promotions",
    "promotion_targets",
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def now() -> str:
    """A timestamp the way Heroku writes them: ``2024-05-01T12:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


class Store:
    def __init__(self, path: Path) -> None:
        self._file = JsonFile(path)
        loaded: Record = self._file.load({})
        self.account: Record = loaded.get("account", {})
        self.collections: dict[str, dict[str, Record]] = {
            name: dict(loaded.get(name, {})) for name in COLLECTIONS
        }
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)

    # -- persistence -----------------------------------------------------------------------------

    def save(self) -> None:
        """Write everything to disk and wake waiters. Call with the lock held."""
        data: Record = {"account": self.account, **self.collections}
        self._file.save(data)
        self.changed.notify_all()

    @contextmanager
    def change(self) -> Iterator[Store]:
        """``with store.change():`` changes records under the lock, then saves."""
        with self.lock:
            yield self
            self.save()

    # -- collections -----------------------------------------------------------------------------

    @property
    def apps(self) -> dict[str, Record]:
        return self.collections["apps"]

    @property
    def addons(self) -> dict[str, Record]:
        return self.collections["addons"]

    @property
    def formations(self) -> dict[str, Record]:
        return self.collections["formations"]

    @property
    def builds(self) -> dict[str, Record]:
        return self.collections["builds"]

    @property
    def slugs(self) -> dict[str, Record]:
        return self.collections["slugs"]

    @property
    def releases(self) -> dict[str, Record]:
        return self.collections["releases"]

    @property
    def sources(self) -> dict[str, Record]:
        return self.collections["sources"]

    @property
    def pipelines(self) -> dict[str, Record]:
        return self.collections["pipelines"]

    @property
    def couplings(self) -> dict[str, Record]:
        return self.collections["couplings"]

    @property
    def promotions(self) -> dict[str, Record]:
        return self.collections["promotions"]

    @property
    def promotion_targets(self) -> dict[str, Record]:
        return self.collections["promotion_targets"]

    # -- look-ups (call with the lock held) --------------------------------------------------------

    def find_app(self, ident: str) -> Record | None:
        """An app by id or name."""
        if ident in self.apps:
            return self.apps[ident]
        return next((a for a in self.apps.values() if a["name"] == ident), None)

    def app_releases(self, app_id: str) -> list[Record]:
        """The app's releases, oldest first."""
        return sorted(
            (r for r in self.releases.values() if r["app_id"] == app_id), key=lambda r: r["version"]
        )

    def find_release(self, app_id: str, ident: str) -> Record | None:
        """A release of the app by id or version number (``5`` or ``v5``)."""
        release = self.releases.get(ident)
        if release is not None and release["app_id"] == app_id:
            return release
        digits = ident[1:] if ident[:1] in ("v", "V") else ident
        if digits.isdigit():
            return next((r for r in self.app_releases(app_id) if r["version"] == int(digits)), None)
        return None

    def current_release(self, app_id: str) -> Record | None:
        app = self.apps[app_id]
        current = app.get("current_release_id")
        return self.releases.get(current) if current else None

    def app_formations(self, app_id: str) -> list[Record]:
        return [f for f in self.formations.values() if f["app_id"] == app_id]

    def find_formation(self, app_id: str, ident: str) -> Record | None:
        """A formation of the app by id or process type."""
        return next(
            (f for f in self.app_formations(app_id) if ident in (f["id"], f["type"])),
            None,
        )

    def app_addons(self, app_id: str) -> list[Record]:
        return [a for a in self.addons.values() if a["app_id"] == app_id]

    def find_addon(self, ident: str) -> Record | None:
        if ident in self.addons:
            return self.addons[ident]
        return next((a for a in self.addons.values() if a["name"] == ident), None)

    def find_pipeline(self, ident: str) -> Record | None:
        if ident in self.pipelines:
            return self.pipelines[ident]
        return next((p for p in self.pipelines.values() if p["name"] == ident), None)

    def app_coupling(self, app_id: str) -> Record | None:
        return next((c for c in self.couplings.values() if c["app_id"] == app_id), None)
