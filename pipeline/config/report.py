"""The resolved plan for people: what ``pipeline config check`` prints (and ``--json``), with
secrets shown only as set or missing and passwords in URLs as ``***``.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any

from pipeline.config.environment import WEBHOOK_SECRET
from pipeline.config.models import DAYS, WindowsSettings
from pipeline.config.settings import Settings


def redact_url(url: str) -> str:
    """``url`` with any password (``user:pw@`` or ``?password=``) replaced by ``***``."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def describe(settings: Settings) -> dict[str, Any]:
    """The resolved plan as JSON-serialisable data: secrets shown only as "set"/"missing", durations
    as "30s", passwords in URLs as "***" (and any secret's value, wherever it appears, as "***")."""
    stages = []
    for index, stage in enumerate(settings.stages):
        stages.append(
            {
                "name": stage.name,
                "role": "production" if index == len(settings.stages) - 1 else "staging",
                "file": str(stage.file),
                "app": stage.app,
                "pipeline": stage.pipeline,
                "checks": [
                    {"kind": c.kind, "options": c.options.model_dump(mode="json")} for c in stage.checks
                ],
                "backups": stage.backups.model_dump(mode="json") if stage.backups else None,
                "windows": _windows_plan(stage.windows),
                "rollback": stage.rollback.model_dump(mode="json"),
            }
        )
    source = settings.source.model_dump(mode="json")
    source["url"] = redact_url(source["url"])
    plan: dict[str, Any] = {
        "name": settings.name,
        "config_path": str(settings.config_path),
        "credentials": "none set: `pipeline run` uses the sandbox"
        if settings.sandbox
        else "from the environment",
        "source": source,
        "stages": stages,
        "approval": settings.approval.model_dump(mode="json"),
        "schedule": settings.schedule.model_dump(mode="json"),
        "heroku": {k: redact_url(v) for k, v in settings.heroku.model_dump(mode="json").items()},
        "webhooks": settings.webhooks.model_dump(mode="json") if settings.webhooks else None,
        "secrets": {
            "BITBUCKET_TOKEN": "set" if settings.bitbucket_token else "missing",
            "HEROKU_API_KEY": "set" if settings.heroku_api_key else "missing",
        }
        | (
            {WEBHOOK_SECRET: "set" if settings.webhook_secret else "missing"}
            if settings.webhooks is not None
            else {}
        ),
        "bitbucket_credential": bitbucket_credential(settings),
        "database_url": redact_url(settings.database_url),
        "restore_server": redact_url(settings.restore_server.get_secret_value()),
        "actor": settings.actor,
    }
    return _scrub(plan, [s for s in settings.secrets if len(s) >= 6])


def bitbucket_credential(settings: Settings) -> str:
    """What BITBUCKET_TOKEN is taken to be, and how it is sent (for people; no secret)."""
    if settings.bitbucket_token is None:
        return "none"
    if settings.bitbucket_email:
        return f"an Atlassian API token of {settings.bitbucket_email} (Basic email:token)"
    return "a workspace, project or repository access token (Bearer; set BITBUCKET_EMAIL for an API token)"


def _windows_plan(windows: WindowsSettings | None) -> dict[str, Any] | None:
    if windows is None:
        return None
    return {
        "timezone": windows.timezone,
        "allow": [
            {
                "days": [DAYS[d] for d in sorted(w.days)],
                "hours": f"{w.hours[0]:%H:%M}-"
                + ("24:00" if w.hours[1] == time(0) else f"{w.hours[1]:%H:%M}"),
            }
            for w in windows.allow
        ],
    }


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
    return value
