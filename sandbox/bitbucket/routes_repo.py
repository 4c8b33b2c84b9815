"""Repositories, branches, commits, ``POST /src`` and commit statuses.

R below is ``/2.0/repositories/{workspace}/{repo_slug}``::

    GET  /2.0/repositories/{ws}                        GET R
    GET|POST R/refs/branches    GET|DELETE R/refs/branches/{name}
    GET|POST R/commits[/{revision}] (include/exclude)  GET R/commit/{hash}
    POST R/src (multipart or urlencoded form)          GET R/src/{rev}/{path}
    GET  R/commit/{hash}/statuses       POST R/commit/{hash}/statuses/build
    GET|PUT R/commit/{hash}/statuses/build/{key}

Accounts and workspaces are in ``routes_accounts``; the source archive is on the website host
(``website``). An access token sees only the repositories it was made for.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.datastructures import MultiDict

from sandbox.bitbucket import paging, query
from sandbox.bitbucket.api import answer, current_user, json_body
from sandbox.bitbucket.errors import ApiError, bad_request, field_error, not_found, required
from sandbox.bitbucket.gitrepo import GitRepo, Identity, RefMoved, valid_branch_name
from sandbox.bitbucket.shapes import now
from sandbox.bitbucket.store import Record
from sandbox.bitbucket.users import reaches

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

R = "/2.0/repositories/<workspace>/<slug>"
STATES = ("SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED")
COMMITS_DEFAULT_PAGELEN = 30
_AUTHOR = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")
SRC_RESERVED = ("message", "author", "parents", "branch", "files")


def resolve_commit(git: GitRepo, rev: str) -> str:
    sha = git.resolve(rev)
    if sha is None:
        raise not_found("Commit not found", f"No commit, branch or tag named {rev!r} in this repository.")
    return sha


def register(app: flask.Flask, bb: BitbucketCloud) -> None:
    shapes = bb.shapes

    # -- repositories -------------------------------------------------------------------------

    def render_repo(repo: Record) -> Record:
        return shapes.repository(repo, bb.store.workspaces[repo["workspace"]], bb.git(repo).size())

    @app.route("/2.0/repositories/<workspace>", methods=["GET"])
    def repositories_list(workspace: str) -> flask.Response:
        if workspace not in bb.store.workspaces:
            raise not_found(f"No workspace with identifier '{workspace}'.")
        req = paging.page_request(flask.request.args)
        me = current_user()
        with bb.lock:
            repos = [
                r
                for r in bb.store.repos.values()
                if r["workspace"] == workspace and reaches(me, workspace, r["slug"])
            ]
            values = [render_repo(r) for r in sorted(repos, key=lambda r: r["slug"])]
        return answer(
            paging.page_of(values, req, base=shapes.api(f"repositories/{workspace}"), args=flask.request.args)
        )

    @app.route(R, methods=["GET"])
    def repository_get(workspace: str, slug: str) -> flask.Response:
        return answer(render_repo(bb.repo_or_404(workspace, slug)))

    # -- branches -----------------------------------------------------------------------------

    branch_fields: dict[str, query.Getter] = {
        "name": lambda b: b["name"],
        "target.hash": lambda b: b["target"]["hash"],
        "target.date": lambda b: b["target"]["date"],
        "target.message": lambda b: b["target"]["message"],
    }

    @app.route(f"{R}/refs/branches", methods=["GET"])
    def branches_list(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        args = flask.request.args
        req = paging.page_request(args)
        git = bb.git(repo)
        values = [shapes.branch(repo, name, git.commit(sha)) for name, sha in git.branches().items()]
        if args.get("q"):
            predicate = query.parse(args["q"], branch_fields)
            values = [v for v in values if predicate(v)]
        values = query.sort(values, args.get("sort", "name"), branch_fields)
        return answer(paging.page_of(values, req, base=shapes.repo_api(repo, "refs/branches"), args=args))

    @app.route(f"{R}/refs/branches/<path:name>", methods=["GET"])
    def branch_get(workspace: str, slug: str, name: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        git = bb.git(repo)
        sha = git.branch(name)
        if sha is None:
            raise not_found(f'Branch "{name}" doesn\'t exist')
        return answer(shapes.branch(repo, name, git.commit(sha)))

    @app.route(f"{R}/refs/branches", methods=["POST"])
    def branch_create(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        body = json_body()
        name = body.get("name")
        if not name:
            raise required("name")
        if not isinstance(name, str) or not valid_branch_name(name):
            raise field_error("name", f"{name!r} is not a valid branch name.")
        target = body.get("target")
        if not isinstance(target, dict) or not target.get("hash"):
            raise required("target.hash")
        git = bb.git(repo)
        with bb.lock:
            sha = git.resolve(str(target["hash"]))
            if sha is None:
                raise field_error("target.hash", f"commit {target['hash']} not found")
            if git.branch(name) is not None:
                raise ApiError(400, f'Branch "{name}" already exists', fields={"name": ["already exists"]})
            try:
                bb.move_branch(repo, current_user()["username"], name, None, sha)
            except RefMoved as exc:
                raise ApiError(409, "The branch changed while it was being created", str(exc)) from None
        return answer(shapes.branch(repo, name, git.commit(sha)), 201)

    @app.route(f"{R}/refs/branches/<path:name>", methods=["DELETE"])
    def branch_delete(workspace: str, slug: str, name: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        git = bb.git(repo)
        with bb.lock:
            sha = git.branch(name)
            if sha is None:
                raise not_found(f'Branch "{name}" doesn\'t exist')
            if name == repo["mainbranch"]:
                raise bad_request(
                    "Cannot delete the main branch", f"{name} is this repository's main branch."
                )
            bb.move_branch(repo, current_user()["username"], name, sha, None)
        return flask.Response(status=204)

    # -- commits ------------------------------------------------------------------------------

    def commit_list(workspace: str, slug: str, revision: str | None) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        git = bb.git(repo)
        args = flask.request.args
        source: MultiDict[str, str] = args
        if flask.request.method == "POST":
            source = MultiDict(list(args.items(multi=True)) + list(flask.request.form.items(multi=True)))
        req = paging.page_request(args, default=COMMITS_DEFAULT_PAGELEN)
        include = [resolve_commit(git, r) for r in source.getlist("include")]
        exclude = [resolve_commit(git, r) for r in source.getlist("exclude")]
        if revision is not None:
            include.insert(0, resolve_commit(git, revision))
        if revision is None and not include:
            include = sorted(set(git.branches().values()))
        commits = git.log(include, exclude, skip=req.start, limit=req.pagelen + 1)
        base = shapes.repo_api(repo, f"commits/{revision}" if revision else "commits")
        body: dict[str, Any] = {
            "values": [shapes.commit(repo, c) for c in commits[: req.pagelen]],
            "pagelen": req.pagelen,
            "page": req.page,
        }
        if len(commits) > req.pagelen:
            body["next"] = paging.next_url(base, source, req.page + 1)
        return answer(body)

    @app.route(f"{R}/commits", methods=["GET", "POST"])
    def commits_all(workspace: str, slug: str) -> flask.Response:
        return commit_list(workspace, slug, None)

    @app.route(f"{R}/commits/<path:revision>", methods=["GET", "POST"])
    def commits_of(workspace: str, slug: str, revision: str) -> flask.Response:
        return commit_list(workspace, slug, revision)

    @app.route(f"{R}/commit/<rev>", methods=["GET"])
    def commit_get(workspace: str, slug: str, rev: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        git = bb.git(repo)
        return answer(shapes.commit(repo, git.commit(resolve_commit(git, rev))))

    # -- POST /src ----------------------------------------------------------------------------

    def parse_author(raw: str | None) -> Identity:
        if raw is None:
            return bb.identity(current_user()["username"], now())
        m = _AUTHOR.match(raw)
        if m is None:
            raise field_error("author", f"{raw!r} is not of the form 'Full Name <email>'.")
        return Identity(m["name"], m["email"], now())

    @app.route(f"{R}/src", methods=["POST"])
    def src_create(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        mimetype = flask.request.mimetype
        if mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise bad_request(
                "Unsupported content type",
                "POST /src takes multipart/form-data or application/x-www-form-urlencoded, "
                f"not {mimetype or 'no content type'}.",
            )
        form, uploads = flask.request.form, flask.request.files
        files: dict[str, bytes] = {}
        for key, value in form.items():
            if key not in SRC_RESERVED:
                files[key] = value.encode()
        for key, storage in uploads.items():
            if key not in SRC_RESERVED:
                files[key] = storage.read()
        files = {path.lstrip("/"): content for path, content in files.items()}
        for path in files:
            if not path or any(part in ("", ".", "..", ".git") for part in path.split("/")):
                raise field_error(path or "path", "is not a valid file path.")
        deletions = [
            p.strip().lstrip("/") for p in form.getlist("files") for p in p.splitlines() if p.strip()
        ]
        deletions = [p for p in deletions if p not in files]
        message = form.get("message") or "Edited online with Bitbucket"
        if not message.endswith("\n"):
            message += "\n"
        identity = parse_author(form.get("author"))
        branch = form.get("branch") or repo["mainbranch"]
        if not valid_branch_name(branch):
            raise field_error("branch", f"{branch!r} is not a valid branch name.")
        git = bb.git(repo)
        parents = [p.strip() for raw in form.getlist("parents") for p in raw.split(",") if p.strip()]
        with bb.lock:
            resolved = []
            for parent in parents:
                sha = git.resolve(parent)
                if sha is None:
                    raise field_error("parents", f"commit {parent} not found")
                resolved.append(sha)
            tip = git.branch(branch)
            if tip is not None and resolved and resolved[0] != tip:
                raise ApiError(
                    409,
                    "The branch has moved",
                    f"parents[0] is {resolved[0]}, but {branch} points at {tip}; fetch and retry.",
                )
            if not resolved:
                base = tip or git.branch(repo["mainbranch"])
                resolved = [base] if base else []
            for path in deletions:
                if not resolved or git.file(resolved[0], path) is None:
                    raise field_error("files", f"{path} does not exist, so it cannot be deleted.")
            sha = git.write_commit(resolved, files, deletions, message, identity)
            try:
                bb.move_branch(repo, current_user()["username"], branch, tip, sha)
            except RefMoved as exc:
                raise ApiError(409, "The branch has moved", str(exc)) from None
        return answer_created(shapes.repo_api(repo, f"commit/{sha}"))

    def answer_created(location: str) -> flask.Response:
        resp = flask.Response(status=201)
        resp.headers["Location"] = location
        return resp

    @app.route(f"{R}/src/<rev>/<path:path>", methods=["GET"])
    def src_file(workspace: str, slug: str, rev: str, path: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        git = bb.git(repo)
        content = git.file(resolve_commit(git, rev), path)
        if content is None:
            raise not_found("No such file or directory: " + path)
        return flask.Response(content, mimetype="application/octet-stream")

    # -- commit statuses ----------------------------------------------------------------------

    def status_fields(body: dict[str, Any], partial: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("key", "url", "state"):
            if not partial and not body.get(name):
                raise required(name)
        if "state" in body and body["state"] not in STATES:
            raise field_error("state", f"{body['state']!r} is not one of {', '.join(STATES)}.")
        for name in ("key", "url", "state", "name", "description", "refname"):
            if name in body:
                if body[name] is not None and not isinstance(body[name], str):
                    raise field_error(name, "must be a string.")
                out[name] = body[name]
        if "key" in out and (not out["key"] or len(out["key"]) > 255):
            raise field_error("key", "must be 1 to 255 characters.")
        return out

    @app.route(f"{R}/commit/<rev>/statuses", methods=["GET"])
    def statuses_list(workspace: str, slug: str, rev: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        sha = resolve_commit(bb.git(repo), rev)
        req = paging.page_request(flask.request.args)
        with bb.lock:
            items = sorted(repo["statuses"].get(sha, {}).values(), key=lambda s: s["created_on"])
            values = [shapes.status(repo, s) for s in items]
        return answer(
            paging.page_of(
                values, req, base=shapes.repo_api(repo, f"commit/{sha}/statuses"), args=flask.request.args
            )
        )

    @app.route(f"{R}/commit/<rev>/statuses/build", methods=["POST"])
    def status_post(workspace: str, slug: str, rev: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        sha = resolve_commit(bb.git(repo), rev)
        fields = status_fields(json_body(), partial=False)
        with bb.lock:
            by_key = repo["statuses"].setdefault(sha, {})
            stamp = now()
            existing = by_key.get(fields["key"])
            status = existing or {"uuid": "{" + str(uuid.uuid4()) + "}", "created_on": stamp, "commit": sha}
            status.update({"name": None, "description": "", "refname": None})
            status.update(fields, updated_on=stamp)
            by_key[fields["key"]] = status
            bb.save(repo)
            emit_status(repo, status, created=existing is None)
            return answer(shapes.status(repo, status), 201)

    def emit_status(repo: Record, status: Record, created: bool) -> None:
        event = "repo:commit_status_created" if created else "repo:commit_status_updated"
        bb.emit(
            repo,
            event,
            lambda: {
                "actor": shapes.user(current_user()["username"]),
                "repository": shapes.repository_mini(repo),
                "commit_status": shapes.status(repo, status),
            },
        )

    def status_or_404(repo: Record, sha: str, key: str) -> Record:
        status = repo["statuses"].get(sha, {}).get(key)
        if status is None:
            raise not_found("Commit status not found", f"No status with key {key!r} on commit {sha}.")
        return status

    @app.route(f"{R}/commit/<rev>/statuses/build/<path:key>", methods=["GET"])
    def status_get(workspace: str, slug: str, rev: str, key: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        sha = resolve_commit(bb.git(repo), rev)
        with bb.lock:
            return answer(shapes.status(repo, status_or_404(repo, sha, key)))

    @app.route(f"{R}/commit/<rev>/statuses/build/<path:key>", methods=["PUT"])
    def status_put(workspace: str, slug: str, rev: str, key: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        sha = resolve_commit(bb.git(repo), rev)
        fields = status_fields(json_body(), partial=True)
        fields.pop("key", None)
        with bb.lock:
            status = status_or_404(repo, sha, key)
            status.update(fields, updated_on=now())
            bb.save(repo)
            emit_status(repo, status, created=False)
            return answer(shapes.status(repo, status))
