"""The website host (``bitbucket.org``, not ``api.bitbucket.org``): source archives and git over HTTPS.

    GET  /{ws}/{repo}/get/{rev}.tar.gz                       the source archive of a revision
    GET  /{ws}/{repo}[.git]/info/refs?service=git-upload-pack  git's ref advertisement
    POST /{ws}/{repo}[.git]/git-upload-pack                   git fetch (protocol v0 or v2)

Authentication is Basic only (``auth``): the archive takes the username or e-mail with an API
token; git takes the username or ``x-bitbucket-api-token-auth`` with an API token, or
``x-token-auth`` with an access token. Bearer is refused; a request without credentials gets 401
with ``WWW-Authenticate: Basic realm="Bitbucket.org HTTP"``. Whoever can read the repository may
fetch it (an access token needs the ``repository`` scope, a person's API token
``read:repository:bitbucket``). Pushing is not served (403): the sandbox's branches change
through the API. Errors are plain text.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import flask
from werkzeug.exceptions import HTTPException

from sandbox.bitbucket import githttp, scopes
from sandbox.bitbucket.auth import archive_account, git_account
from sandbox.bitbucket.errors import ApiError, text_response
from sandbox.bitbucket.users import User, is_bot, reaches

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

log = logging.getLogger("sandbox.bitbucket")
UPLOAD_PACK = "git-upload-pack"
PUSH_REFUSED = (
    "Pushing over HTTPS is not served by the sandbox: change branches through the API (POST .../src)."
)


def create_app(bb: BitbucketCloud) -> flask.Flask:
    here = str(Path(__file__).resolve().parent)
    app = flask.Flask("sandbox.bitbucket.website", root_path=here, instance_path=here)

    def repo_or_404(workspace: str, slug: str, account: User | None = None) -> None:
        hidden = account is not None and not reaches(account, workspace, slug)
        if bb.store.repo(workspace, slug) is None or hidden:
            raise ApiError(404, "Repository not found")

    def may_read(account: User) -> None:
        needed = scopes.GIT_READ if is_bot(account) else scopes.granular("GET", "", scopes.GIT_READ)
        scopes.check(account["scopes"], needed)

    # -- the source archive -------------------------------------------------------------------

    @app.route("/<workspace>/<slug>/get/<path:filename>", methods=["GET"])
    def archive(workspace: str, slug: str, filename: str) -> flask.Response:
        with bb.lock:
            users = list(bb.store.users.values())
        account = archive_account(flask.request.headers.get("Authorization"), users)
        may_read(account)
        repo_or_404(workspace, slug)
        if not filename.endswith(".tar.gz"):
            raise ApiError(404, "Resource not found", "Archives are served as {revision}.tar.gz here.")
        try:
            data, sha = bb.archive(workspace, slug, filename.removesuffix(".tar.gz"))
        except KeyError:
            missing = f"No commit, branch or tag named {filename[:-7]!r}."
            raise ApiError(404, "Commit not found", missing) from None
        resp = flask.Response(data, mimetype="application/x-tar")
        resp.headers["Content-Disposition"] = f'attachment; filename="{workspace}-{slug}-{sha[:12]}.tar.gz"'
        return resp

    # -- git over HTTPS -----------------------------------------------------------------------

    def git(workspace: str, repo: str, service_path: str) -> flask.Response:
        with bb.lock:
            users, bots = list(bb.store.users.values()), list(bb.store.bots.values())
        account = git_account(flask.request.headers.get("Authorization"), users, bots)
        slug = repo.removesuffix(".git")
        repo_or_404(workspace, slug, account)
        may_read(account)
        request = flask.request
        answer = githttp.serve(
            bb.state_dir / "git",
            method=request.method,
            path_info=f"/{workspace}/{slug}.git/{service_path}",
            query=request.query_string.decode("latin-1"),
            body=request.get_data(),
            content_type=request.headers.get("Content-Type"),
            content_encoding=request.headers.get("Content-Encoding"),
            git_protocol=request.headers.get("Git-Protocol"),
            remote_user=account["username"],
        )
        return flask.Response(answer.body, status=answer.status, headers=answer.headers)

    @app.route("/<workspace>/<repo>/info/refs", methods=["GET"])
    def info_refs(workspace: str, repo: str) -> flask.Response:
        service = flask.request.args.get("service")
        if service == "git-receive-pack":
            raise ApiError(403, PUSH_REFUSED)
        if service != UPLOAD_PACK:
            raise ApiError(403, "Only git's smart HTTP protocol is served here (?service=git-upload-pack).")
        return git(workspace, repo, "info/refs")

    @app.route(f"/<workspace>/<repo>/{UPLOAD_PACK}", methods=["POST"])
    def upload_pack(workspace: str, repo: str) -> flask.Response:
        return git(workspace, repo, UPLOAD_PACK)

    @app.route("/<workspace>/<repo>/git-receive-pack", methods=["POST"])
    def receive_pack(workspace: str, repo: str) -> flask.Response:
        raise ApiError(403, PUSH_REFUSED)

    # -- errors -------------------------------------------------------------------------------

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> flask.Response:
        return text_response(exc)  # type: ignore[return-value]

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> flask.Response:
        return text_response(ApiError(exc.code or 500, exc.name))  # type: ignore[return-value]

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> flask.Response:
        log.exception("bitbucket website stand-in crashed on %s %s", flask.request.method, flask.request.path)
        return text_response(ApiError(500, "Something went wrong", f"{type(exc).__name__}: {exc}"))  # type: ignore[return-value]

    return app
