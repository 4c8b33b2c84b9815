"""``ports.Platform`` over the Heroku Platform API, with heroku3 5.2.1 and its own session.

heroku3 is built in one place (``HerokuPlatform._client``): ``heroku3.api.Heroku(session=s)`` on
our session, its base URL set to ``api_url``. The key goes on that session as
``Authorization: Bearer`` (as Heroku documents; heroku3's own ``authenticate`` would send Basic, so
it is not called), with the documented ``Accept: application/vnd.heroku+json; version=3`` (heroku3
sets a variant) and our User-Agent, on every call. heroku3 reads the account and apps; everything
it lacks or reads incompletely (sources, builds with their release, releases with their output URL,
Range paging, pipelines, promotions, rollbacks that return the new release) goes through the same
session. A ``403`` with id ``two_factor`` is explained: the key's account needs a second factor
for this request, which a long-lived authorization (``heroku authorizations:create``) does not.
heroku3's ``Build.stream()`` (which turns TLS verification off) and ``App.rollback()`` (which
re-lists every release) are never used.

Signed URLs (the source upload's ``put_url``, a release's ``output_stream_url``) are capability
URLs: they are requested through a second session that sends no credentials at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import heroku3
import requests

from pipeline.adapters import http
from pipeline.errors import ExternalError, Permanent, Temporary
from pipeline.model import (
    Dyno,
    Formation,
    HerokuBuild,
    HerokuRelease,
    PermissionCheck,
    Promotion,
    PromotionTarget,
)

SERVICE = "heroku"
CREDENTIAL = "HEROKU_API_KEY"
ACCEPT = "application/vnd.heroku+json; version=3"
MAX_RANGE = 1000  # Heroku's largest page
OUTPUT_SECONDS = 10.0  # the longest release_output reads a release phase's log
NO_OUTPUT = (403, 404, 410)  # an output URL that is gone, expired or never existed


def _ref(data: Mapping[str, Any], name: str) -> str | None:
    """The ``id`` of a nested ``{"id": ...}`` reference, or None when it is null."""
    ref = data.get(name)
    return str(ref["id"]) if isinstance(ref, Mapping) and ref.get("id") else None


def build(data: Mapping[str, Any]) -> HerokuBuild:
    """A build from its raw JSON."""
    blob = data.get("source_blob") or {}
    return HerokuBuild(
        id=str(data["id"]),
        status=str(data["status"]),
        version=blob.get("version"),
        release_id=_ref(data, "release"),
        slug_id=_ref(data, "slug"),
        created_at=http.parse_time(data["created_at"]),
        output_stream_url=data.get("output_stream_url"),
    )


def release(data: Mapping[str, Any]) -> HerokuRelease:
    """A release from its raw JSON."""
    return HerokuRelease(
        id=str(data["id"]),
        version=int(data["version"]),
        status=str(data["status"]),
        slug_id=_ref(data, "slug"),
        current=bool(data.get("current")),
        description=str(data.get("description") or ""),
        created_at=http.parse_time(data["created_at"]),
        output_stream_url=data.get("output_stream_url"),
    )


def dyno(data: Mapping[str, Any]) -> Dyno:
    """A dyno from its raw JSON."""
    rel = data.get("release") or {}
    version = rel.get("version")
    return Dyno(
        name=str(data["name"]),
        type=str(data.get("type") or str(data["name"]).split(".")[0]),
        state=str(data["state"]),
        release_version=int(version) if version is not None else None,
    )


def formation(data: Mapping[str, Any]) -> Formation:
    """One process type of a formation from its raw JSON."""
    return Formation(
        type=str(data["type"]),
        quantity=int(data["quantity"]),
        size=str(data.get("size") or ""),
        command=str(data.get("command") or ""),
    )


def promotion_target(data: Mapping[str, Any]) -> PromotionTarget:
    return PromotionTarget(
        app_id=str(data["app"]["id"]),
        release_id=_ref(data, "release"),
        status=str(data["status"]),
        error_message=data.get("error_message"),
    )


def two_factor_explained(exc: Permanent, credential: str = CREDENTIAL, service: str = SERVICE) -> Permanent:
    """Heroku's ``403 two_factor``, explained: the key belongs to an account whose session needs a
    second factor for this; an authorization made for the controller does not."""
    if exc.status != 403 or "two_factor" not in exc.evidence:
        return exc
    message = (
        f"{credential} is refused without a second factor ({exc.evidence}): its account's key needs "
        "two-factor verification for this request. Give the controller a long-lived authorization "
        "instead: `heroku authorizations:create --description release-controller` and set its token "
        f"as {credential}"
    )
    return type(exc)(service, message, status=exc.status)


class HerokuPlatform:
    """``ports.Platform`` for the account whose key is ``api_key``, at ``api_url``
    (``https://api.heroku.com`` or a stand-in). Every request waits at most ``timeout`` seconds to
    connect and between two bytes. Lists are read ``page_size`` items a request (Heroku's maximum,
    1000, unless asked otherwise), following ``Next-Range``. Building one sends no request; the
    first call authenticates.
    """

    def __init__(
        self, api_url: str, api_key: str, timeout: float = 30.0, *, page_size: int = MAX_RANGE
    ) -> None:
        if not 1 <= page_size <= MAX_RANGE:
            raise ValueError(f"page_size must be 1..{MAX_RANGE}, not {page_size!r}")
        self._api_url = api_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._page_size = page_size
        self._session = http.session(timeout, auth=http.BearerAuth(api_key))
        self._session.headers["Accept"] = ACCEPT
        self._plain = http.session(timeout, auth=http.NoAuth())
        self._heroku: Any = None

    def __repr__(self) -> str:
        return f"HerokuPlatform({self._api_url!r})"

    # -- plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _calling(self, what: str, credential: str = CREDENTIAL) -> Iterator[None]:
        """Translate what a call raises: heroku3's RateLimitExceeded (it keeps no response) and
        every requests exception through ``http.error_for``; odd shapes into Permanent."""
        try:
            with http.calling(SERVICE, what, credential=credential, secrets=(self._api_key,)):
                try:
                    yield
                except heroku3.api.RateLimitExceeded as exc:
                    raise Temporary(
                        SERVICE, f"rate limited while {what}", status=429, retry_after=http.RATE_LIMIT_RETRY
                    ) from exc
        except Permanent as exc:
            raise two_factor_explained(exc, credential) from exc.__cause__

    def _fail(self, what: str, response: requests.Response, credential: str = CREDENTIAL) -> ExternalError:
        failure = http.error_for(SERVICE, what, response, credential=credential, secrets=(self._api_key,))
        return two_factor_explained(failure, credential) if isinstance(failure, Permanent) else failure

    def _client(self) -> Any:
        """heroku3's client, built once on the shared session, pointed at ``api_url``; the session
        sends the key as Bearer and the documented Accept header (heroku3 sets its own variant when it
        is built, so ours is put back)."""
        if self._heroku is None:
            client = heroku3.api.Heroku(session=self._session)
            client._heroku_url = self._api_url
            self._session.headers["Accept"] = ACCEPT
            self._heroku = client
        return self._heroku

    def _request(
        self, method: str, path: str, what: str, *, body: Any = None, range_: str | None = None
    ) -> requests.Response:
        """One Platform API request on the shared session; an unsuccessful answer raises."""
        self._client()
        headers = {"Accept": ACCEPT}
        if range_:
            headers["Range"] = range_
        with self._calling(what):
            answer = self._session.request(method, f"{self._api_url}/{path}", headers=headers, json=body)
        if not answer.ok:
            raise self._fail(what, answer)
        return answer

    def _json(self, method: str, path: str, what: str, body: Any = None) -> Any:
        answer = self._request(method, path, what, body=body)
        with http.reading(SERVICE, what):
            return answer.json()

    def _list(self, path: str, what: str, field: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` items of a list, newest first by ``field``, following 206 + Next-Range."""
        items: list[dict[str, Any]] = []
        rng = f"{field} ..; order=desc, max={min(max(limit, 1), self._page_size)}"
        while len(items) < limit:
            answer = self._request("GET", path, what, range_=rng)
            with http.reading(SERVICE, what):
                page = answer.json()
                if not isinstance(page, list):
                    raise TypeError(f"expected a list, got {type(page).__name__}")
            items.extend(page)
            following = answer.headers.get("Next-Range")
            if answer.status_code != 206 or not following or not page:
                break
            rng = following
        return items[:limit]

    def _app(self, app: str) -> Any:
        """heroku3's App (id, name, web_url)."""
        with self._calling(f"reading app {app}"):
            return self._client().app(app)

    def _promotion_targets(self, promotion_id: str) -> tuple[PromotionTarget, ...]:
        what = f"reading the targets of promotion {promotion_id}"
        items = self._list(
            f"pipeline-promotions/{quote(promotion_id, safe='')}/promotion-targets", what, "id", 100
        )
        with http.reading(SERVICE, what):
            return tuple(promotion_target(t) for t in items)

    @staticmethod
    def _segment(value: str | int) -> str:
        return quote(str(value), safe="")

    # -- ports.Platform --------------------------------------------------------------------------

    def check_access(self) -> str:
        """The account's e-mail. Permanent ("HEROKU_API_KEY was refused ...") on a bad key."""
        with self._calling("reading the account of HEROKU_API_KEY"):
            email = self._client().account().email
        if not email:
            raise Permanent(SERVICE, "unexpected answer while reading the account: it has no e-mail")
        return str(email)

    def permissions(self, apps: Sequence[str], pipeline: str | None) -> list[PermissionCheck]:
        """Each permission the release path needs on Heroku, granted or not: the key works; it may
        deploy each app (its account owns the app, or is a collaborator of a personal app, or has
        the ``deploy`` permission on a team app); both apps are coupled in ``pipeline`` to promote."""
        try:
            email = self.check_access()
        except Permanent as exc:
            return [PermissionCheck(CREDENTIAL, "authenticate", False, str(exc))]
        lines = [PermissionCheck(CREDENTIAL, "authenticate", True, f"account {email}")]
        for app in apps:
            try:
                ok, detail = self._may_deploy(app, email)
            except Permanent as exc:
                ok, detail = False, str(exc)
            lines.append(PermissionCheck(CREDENTIAL, f"deploy {app}", ok, detail))
        if pipeline:
            try:
                ok, detail = self._coupled(pipeline, apps)
            except Permanent as exc:
                ok, detail = False, str(exc)
            lines.append(PermissionCheck(CREDENTIAL, f"promote through pipeline {pipeline}", ok, detail))
        return lines

    def _may_deploy(self, app: str, email: str) -> tuple[bool, str]:
        data = self._json("GET", f"apps/{self._segment(app)}", f"reading app {app}")
        with http.reading(SERVICE, f"reading app {app}"):
            owner = str((data.get("owner") or {}).get("email") or "")
            team = (data.get("team") or {}).get("name")
        if owner == email:
            return True, f"{email} owns {app}"
        if team:
            what = f"reading {email}'s permissions on team app {app}"
            found = self._json("GET", f"teams/apps/{self._segment(app)}/collaborators/{quote(email)}", what)
            with http.reading(SERVICE, what):
                names = sorted(str(p["name"]) for p in found.get("permissions") or ())
            if "deploy" in names:
                return True, f"{email} has {', '.join(names)} on team app {app}"
            return False, (
                f"{email} has {', '.join(names) or 'no permission'} on team app {app}; it needs deploy: "
                f"`heroku access:update {email} -a {app} --permissions deploy,view`"
            )
        what = f"reading whether {email} collaborates on {app}"
        self._json("GET", f"apps/{self._segment(app)}/collaborators/{quote(email)}", what)
        return True, f"{email} is a collaborator of {app} (owned by {owner})"

    def _coupled(self, pipeline: str, apps: Sequence[str]) -> tuple[bool, str]:
        what = f"reading the couplings of pipeline {pipeline}"
        pipe = self._json("GET", f"pipelines/{self._segment(pipeline)}", f"reading pipeline {pipeline}")
        with http.reading(SERVICE, what):
            pipeline_id = str(pipe["id"])
        couplings = self._json("GET", f"pipelines/{pipeline_id}/pipeline-couplings", what)
        with http.reading(SERVICE, what):
            stages = {}
            for coupling in couplings:
                app_data = self._json("GET", f"apps/{coupling['app']['id']}", what)
                stages[str(app_data["name"])] = str(coupling["stage"])
        missing = [a for a in apps if a not in stages]
        if missing:
            return False, (
                f"{', '.join(missing)} not in pipeline {pipeline}: "
                f"`heroku pipelines:add {pipeline} -a {missing[0]} --stage <staging|production>`"
            )
        return True, ", ".join(f"{a} in {stages[a]}" for a in apps)

    def upload_source(self, tarball: bytes) -> str:
        """POST /sources, PUT ``tarball`` to the signed ``put_url`` (no credentials sent); return
        the ``get_url`` to build from."""
        what = "creating a source upload"
        data = self._json("POST", "sources", what)
        with http.reading(SERVICE, what):
            put_url = str(data["source_blob"]["put_url"])
            get_url = str(data["source_blob"]["get_url"])
        what = "uploading the source tarball to its signed URL"
        with self._calling(what, credential="the signed upload URL"):
            answer = self._plain.put(put_url, data=tarball)
        if not answer.ok:
            raise self._fail(what, answer, credential="the signed upload URL")
        return get_url

    def start_build(self, app: str, source_url: str, checksum: str, version: str) -> HerokuBuild:
        """Start a build of ``source_url`` (checksum ``SHA256:<hex>``) labelled ``version``."""
        what = f"starting a build of {version[:12]} on {app}"
        body = {"source_blob": {"url": source_url, "checksum": checksum, "version": version}}
        data = self._json("POST", f"apps/{self._segment(app)}/builds", what, body)
        with http.reading(SERVICE, what):
            return build(data)

    def build(self, app: str, build_id: str) -> HerokuBuild:
        """One build of ``app``."""
        what = f"reading build {build_id} of {app}"
        data = self._json("GET", f"apps/{self._segment(app)}/builds/{self._segment(build_id)}", what)
        with http.reading(SERVICE, what):
            return build(data)

    def builds(self, app: str, limit: int = 50) -> list[HerokuBuild]:
        """The app's builds, newest first (Heroku ranges builds on ``started_at``)."""
        what = f"listing the builds of {app}"
        items = self._list(f"apps/{self._segment(app)}/builds", what, "started_at", limit)
        with http.reading(SERVICE, what):
            return [build(b) for b in items]

    def release(self, app: str, id_or_version: str | int) -> HerokuRelease:
        """One release of ``app``, by id or version number."""
        what = f"reading release {id_or_version} of {app}"
        path = f"apps/{self._segment(app)}/releases/{self._segment(id_or_version)}"
        data = self._json("GET", path, what)
        with http.reading(SERVICE, what):
            return release(data)

    def dynos(self, app: str) -> list[Dyno]:
        """The app's dynos now, each with the release version it runs."""
        what = f"listing the dynos of {app}"
        data = self._json("GET", f"apps/{self._segment(app)}/dynos", what)
        with http.reading(SERVICE, what):
            return [dyno(d) for d in data]

    def formation(self, app: str) -> list[Formation]:
        """The app's formation: every process type and how many dynos of it should run."""
        what = f"reading the formation of {app}"
        data = self._json("GET", f"apps/{self._segment(app)}/formation", what)
        with http.reading(SERVICE, what):
            return [formation(f) for f in data]

    def releases(self, app: str, limit: int = 50) -> list[HerokuRelease]:
        """The app's releases, newest (highest version) first."""
        what = f"listing the releases of {app}"
        items = self._list(f"apps/{self._segment(app)}/releases", what, "version", limit)
        with http.reading(SERVICE, what):
            return [release(r) for r in items]

    def current_release(self, app: str) -> HerokuRelease | None:
        """The newest release marked ``current``, else the newest succeeded one, else None."""
        recent = self.releases(app, limit=50)
        for candidate in recent:
            if candidate.current:
                return candidate
        return next((r for r in recent if r.status == "succeeded"), None)

    def promote(self, pipeline: str, source_app: str, release_id: str, target_app: str) -> Promotion:
        """Promote ``release_id`` of ``source_app`` (its slug) to ``target_app`` through
        ``pipeline`` (a name or an id).

        Once the promotion is created its id is returned whatever happens next: when its targets
        cannot be read right away, it comes back with no targets (``promotion(id)`` reads them).
        """
        what = f"reading pipeline {pipeline}"
        pipe = self._json("GET", f"pipelines/{self._segment(pipeline)}", what)
        with http.reading(SERVICE, what):
            pipeline_id = str(pipe["id"])
        source_id = str(self._app(source_app).id)
        target_id = str(self._app(target_app).id)
        body = {
            "pipeline": {"id": pipeline_id},
            "source": {"app": {"id": source_id}, "release": {"id": release_id}},
            "targets": [{"app": {"id": target_id}}],
        }
        what = f"promoting release {release_id} of {source_app} to {target_app}"
        created = self._json("POST", "pipeline-promotions", what, body)
        with http.reading(SERVICE, what):
            promotion_id = str(created["id"])
            status = str(created["status"])
        try:
            targets = self._promotion_targets(promotion_id)
        except ExternalError:
            targets = ()
        return Promotion(id=promotion_id, status=status, targets=targets)

    def promotion(self, promotion_id: str) -> Promotion:
        """The promotion (pending | completed) with its targets."""
        what = f"reading promotion {promotion_id}"
        data = self._json("GET", f"pipeline-promotions/{self._segment(promotion_id)}", what)
        with http.reading(SERVICE, what):
            status = str(data["status"])
        return Promotion(id=promotion_id, status=status, targets=self._promotion_targets(promotion_id))

    def rollback(self, app: str, release_id: str) -> HerokuRelease:
        """A new release of ``app`` running ``release_id``'s slug and config (POST /releases with
        ``{"release": id}``); returns the new release."""
        what = f"rolling {app} back to release {release_id}"
        data = self._json("POST", f"apps/{self._segment(app)}/releases", what, {"release": release_id})
        with http.reading(SERVICE, what):
            return release(data)

    def web_url(self, app: str) -> str:
        """Where the app answers HTTP."""
        url = self._app(app).web_url
        if not url:
            raise Permanent(SERVICE, f"app {app} has no web_url")
        return str(url)

    def release_output(self, release: HerokuRelease) -> str:
        """The release phase's output: "" when the release has none, or its output URL is gone
        (403/404/410). Read for at most ``OUTPUT_SECONDS`` (a running release phase's log is
        followed live); what arrived by then is returned."""
        url = release.output_stream_url
        if not url:
            return ""
        what = f"reading the release phase output of v{release.version}"
        chunks: list[bytes] = []
        deadline = time.monotonic() + OUTPUT_SECONDS
        wait = min(self._timeout, OUTPUT_SECONDS)
        try:
            with self._plain.get(url, stream=True, timeout=wait) as answer:
                if answer.status_code in NO_OUTPUT:
                    return ""
                if not answer.ok:
                    raise self._fail(what, answer, credential="the output URL")
                for chunk in answer.iter_content(chunk_size=8192):
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        break
        except requests.RequestException as exc:
            if not chunks:
                raise http.error_for(
                    SERVICE, what, exc, credential="the output URL", secrets=(self._api_key,)
                ) from exc
        return b"".join(chunks).decode("utf-8", "replace")
