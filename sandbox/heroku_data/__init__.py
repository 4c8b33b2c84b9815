"""The Heroku Data API stand-in: Postgres backups (transfers), their schedules and database info.

``HerokuData`` (in ``sandbox.heroku_data.api``) is the HTTP face; ``store`` keeps the state,
``backups`` captures real dumps in a worker thread, ``signed_urls`` makes the download URLs and
``database_info`` answers what ``heroku pg:info`` shows.
"""

from __future__ import annotations

from sandbox.heroku_data.api import HerokuData

__all__ = ["HerokuData"]
