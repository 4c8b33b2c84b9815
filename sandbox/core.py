"""The sandbox: Bitbucket Cloud, the Heroku Platform API and the Heroku Data API on loopback.

``Sandbox(state_dir).start()`` binds the stand-ins' servers (Bitbucket's API and website hosts,
Heroku, Heroku Data; reusing the ports of the last run in that state dir where they are free),
seeds them on first start (workspace ``whisper``, repository ``claims`` holding the demo app, its
users and access tokens, Heroku apps ``claims-staging`` and ``claims-production`` coupled in
pipeline ``claims``, both running ``main``), and on later starts brings the apps' processes back
up. ``stop()`` stops the servers and every process the sandbox started. ``requests(service)`` is
what a stand-in answered (its request log).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from sandbox.bitbucket import BitbucketCloud
from sandbox.databases import Databases
from sandbox.demo import demo_files
from sandbox.faults import Faults
from sandbox.heroku import HerokuPlatform
from sandbox.heroku_data import HerokuData
from sandbox.persist import JsonFile
from sandbox.server import ServiceServer

log = logging.getLogger("sandbox")

WORKSPACE = "whisper"
REPOSITORY = "claims"
PIPELINE = "claims"
APPS = {"staging": "claims-staging", "production": "claims-production"}
SERVICES = ("bitbucket", "bitbucket-web", "heroku", "heroku-data")
RUNNING_FILE = "sandbox.json"  # the running sandbox's info(), for `pipeline sandbox env`


def running_info(state_dir: Path | str) -> dict[str, Any] | None:
    """What a sandbox running on ``state_dir`` describes itself as, or None if none runs there."""
    info: dict[str, Any] | None = JsonFile(Path(state_dir) / RUNNING_FILE).load(None)
    return info


class Sandbox:
    def __init__(
        self,
        state_dir: Path | str,
        *,
        ports: dict[str, int] | None = None,
        host: str = "127.0.0.1",
        heroku_rate_limit: int = 4500,
        bitbucket_rate_limit: int = 1000,
        bitbucket_merge: str = "sync",
        bitbucket_merge_delay: float = 1.0,
        deploy_main: bool = True,
    ) -> None:
        """``bitbucket_merge``: ``sync`` (a merge answers 200) or ``async`` (202 and a task that stays
        pending ``bitbucket_merge_delay`` seconds); see ``sandbox.bitbucket.merges``."""
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.heroku_rate_limit = heroku_rate_limit
        self.bitbucket_rate_limit = bitbucket_rate_limit
        self.bitbucket_merge = bitbucket_merge
        self.bitbucket_merge_delay = bitbucket_merge_delay
        self.deploy_main = deploy_main
        self._wanted_ports = dict(ports or {})
        self.faults = Faults()
        self._servers: dict[str, ServiceServer] = {}
        self.databases: Databases | None = None
        self._bitbucket: BitbucketCloud | None = None
        self._heroku: HerokuPlatform | None = None
        self._heroku_data: HerokuData | None = None

    # -- the three stand-ins ---------------------------------------------------------------------

    @property
    def bitbucket(self) -> BitbucketCloud:
        assert self._bitbucket is not None, "the sandbox is not started"
        return self._bitbucket

    @property
    def heroku(self) -> HerokuPlatform:
        assert self._heroku is not None, "the sandbox is not started"
        return self._heroku

    @property
    def heroku_data(self) -> HerokuData:
        assert self._heroku_data is not None, "the sandbox is not started"
        return self._heroku_data

    def url(self, service: str) -> str:
        """The base URL of ``service``: bitbucket (the API), bitbucket-web, heroku or heroku-data."""
        return self._servers[service].url

    def requests(self, service: str) -> list[dict[str, Any]]:
        """What ``service`` answered, oldest first (``GET /_sandbox/requests`` of that server)."""
        return self._servers[service].requests.values()

    def clear_requests(self, service: str | None = None) -> None:
        """Empty the request log of ``service`` (every service's when None)."""
        for name, server in self._servers.items():
            if service in (None, name):
                server.requests.clear()

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ports_file = JsonFile(self.state_dir / "ports.json")
        remembered: dict[str, int] = ports_file.load({})
        try:
            for service in SERVICES:
                self._servers[service] = self._bind(service, remembered.get(service, 0))
            ports_file.save({s: srv.port for s, srv in self._servers.items()})

            self.databases = Databases(self.state_dir / "databases")
            self._bitbucket = BitbucketCloud(
                self.state_dir / "bitbucket",
                self.url("bitbucket"),
                web_url=self.url("bitbucket-web"),
                rate_limit=self.bitbucket_rate_limit,
                merge_mode=self.bitbucket_merge,
                merge_delay=self.bitbucket_merge_delay,
            )
            self._heroku = HerokuPlatform(
                self.state_dir / "heroku",
                self.url("heroku"),
                self.databases,
                rate_limit=self.heroku_rate_limit,
            )
            self._heroku_data = HerokuData(
                self.state_dir / "heroku-data", self.url("heroku-data"), self._heroku, self.databases
            )
            bb, heroku, data = self._bitbucket, self._heroku, self._heroku_data
            self._servers["bitbucket"].start(bb.wsgi_app, bb.fault_response)
            self._servers["bitbucket-web"].start(bb.web_wsgi_app, bb.fault_response)
            self._servers["heroku"].start(heroku.wsgi_app, heroku.fault_response, heroku.admin)
            self._servers["heroku-data"].start(data.wsgi_app, data.fault_response)
            self._seed()
            JsonFile(self.state_dir / RUNNING_FILE).save(self.info())  # 0600, like every state file
        except BaseException:
            self.stop()
            raise
        return self

    def _bind(self, service: str, remembered: int) -> ServiceServer:
        wanted = self._wanted_ports.get(service)
        if wanted:  # asked for explicitly: that port or an error
            return ServiceServer(service, self.faults, host=self.host, port=wanted)
        if remembered:
            try:
                return ServiceServer(service, self.faults, host=self.host, port=remembered)
            except OSError:
                log.warning("port %s of the last %s stand-in is taken; using another", remembered, service)
        return ServiceServer(service, self.faults, host=self.host, port=0)

    def _seed(self) -> None:
        marker = JsonFile(self.state_dir / "seeded.json")
        seeded = marker.load({})
        self.bitbucket.seed(demo_files(), workspace=WORKSPACE, repository=REPOSITORY)
        self.heroku.seed(pipeline=PIPELINE, apps=APPS)
        if self.deploy_main and not seeded.get("deployed_main"):
            tarball, commit = self.bitbucket.archive(WORKSPACE, REPOSITORY, "main")
            for app in APPS.values():
                self.heroku.deploy(app, tarball, commit, description=f"Deploy {commit[:7]} (sandbox seed)")
            seeded["deployed_main"] = commit
            marker.save(seeded)
        else:
            self.heroku.start_runtime()

    def stop(self) -> None:
        for stand_in in (self._heroku_data, self._heroku, self._bitbucket):
            if stand_in is not None:
                try:
                    stand_in.close()
                except Exception:  # keep stopping the rest
                    log.exception("stopping a stand-in failed")
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        (self.state_dir / RUNNING_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def webhook_secret(self) -> str:
        """The secret the controller signs the sandbox's webhook deliveries with: made on first use
        and kept in the state dir (sandbox-only, like the users' tokens)."""
        store = JsonFile(self.state_dir / "webhook-secret.json")
        kept: dict[str, str] = store.load({})
        if not kept.get("secret"):
            kept = {"secret": secrets.token_hex(24)}
            store.save(kept)
        return kept["secret"]

    # -- what `pipeline sandbox up --json` prints ----------------------------------------------------

    def info(self) -> dict[str, Any]:
        tokens = self.bitbucket.tokens()
        emails = self.bitbucket.emails()
        access_tokens = self.bitbucket.access_tokens()
        bitbucket_url = self.url("bitbucket")
        return {
            "bitbucket": {
                "url": bitbucket_url,
                "api": f"{bitbucket_url}/2.0",
                "web_url": self.url("bitbucket-web"),
                "workspace": WORKSPACE,
                "repository": REPOSITORY,
                "users": tokens,
                "emails": emails,
                "access_tokens": {key: access_tokens[key] for key in ("repository", "workspace")},
            },
            "heroku": {
                "url": self.url("heroku"),
                "data_url": self.url("heroku-data"),
                "api_key": self.heroku.api_key,
                "pipeline": PIPELINE,
                "apps": dict(APPS),
                "web_urls": {stage: self.heroku.web_url(app) for stage, app in APPS.items()},
            },
            "databases": self.databases.kind if self.databases else None,
            "state_dir": str(self.state_dir),
            "admin": {s: f"{srv.url}/_sandbox/faults" for s, srv in self._servers.items()},
            "env": {
                "BITBUCKET_URL": bitbucket_url,
                "BITBUCKET_TOKEN": tokens["controller"],
                "BITBUCKET_EMAIL": emails["controller"],
                "HEROKU_API_URL": self.url("heroku"),
                "HEROKU_API_KEY": self.heroku.api_key,
                "HEROKU_DATA_API_URL": self.url("heroku-data"),
                "BITBUCKET_WEBHOOK_SECRET": self.webhook_secret(),
            },
        }
