"""What the Heroku Data API stand-in needs to know of the Platform API stand-in.

The Data API (``sandbox.heroku_data``) is a separate server, like Heroku's own, but it answers
about the same apps and add-ons with the same API keys; it asks through this Protocol, which
``sandbox.heroku.HerokuPlatform`` implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AppRef:
    id: str
    name: str


@dataclass(frozen=True)
class AddonRef:
    id: str
    name: str  # e.g. "postgresql-shaped-12345"
    plan: str  # e.g. "heroku-postgresql:standard-0"
    app: AppRef
    database_url: str  # what DATABASE_URL holds on the app


class HerokuLookup(Protocol):
    def check_api_key(self, key: str) -> bool:
        """True when ``key`` is a valid API key of the stand-in's account."""
        ...

    def find_app(self, id_or_name: str) -> AppRef | None: ...

    def find_addon(self, id_or_name: str) -> AddonRef | None:
        """A heroku-postgresql add-on by id or name, or None."""
        ...

    def app_addons(self, app_id: str) -> list[AddonRef]:
        """The app's heroku-postgresql add-ons (one per app in the sandbox)."""
        ...
