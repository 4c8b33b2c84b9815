"""Accounts and workspaces::

    GET /2.0/user                                   the caller (a person: access tokens lack ``account``)
    GET /2.0/users/{uuid|account_id|nickname}       a person, or a bot by uuid or account id
    GET /2.0/user/permissions/repositories          the caller's permission on each repository
    GET /2.0/workspaces/{ws}                        GET /2.0/workspaces/{ws}/members

``/2.0/user/permissions/repositories`` lists ``{"type": "repository_permission", "permission":
"read"|"write", "repository", "user"}`` for every repository the caller can see, filtered by ``q``
(``repository.full_name="ws/repo"``, ``repository.name``, ``repository.uuid``, ``permission``)
and ordered by ``sort``, paged as usual. The scope table (``scopes``) keeps access tokens out of
``/2.0/user``, the members and the permissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flask

from sandbox.bitbucket import paging, query
from sandbox.bitbucket.api import answer, current_user
from sandbox.bitbucket.errors import not_found
from sandbox.bitbucket.store import Record
from sandbox.bitbucket.users import permission, reaches

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud


def register(app: flask.Flask, bb: BitbucketCloud) -> None:
    shapes = bb.shapes

    def workspace_or_404(workspace: str) -> Record:
        ws = bb.store.workspaces.get(workspace)
        if ws is None or not reaches(current_user(), workspace):
            raise not_found(f"No workspace with identifier '{workspace}'.")
        return ws

    @app.route("/2.0/user", methods=["GET"])
    def user_me() -> flask.Response:
        return answer(shapes.user_full(current_user()["username"]))

    @app.route("/2.0/users/<selected>", methods=["GET"])
    def user_get(selected: str) -> flask.Response:
        with bb.lock:
            for name, u in [*bb.store.users.items(), *bb.store.bots.items()]:
                if selected in (u["uuid"], u["account_id"], u.get("nickname"), u["uuid"].strip("{}")):
                    return answer(shapes.user_full(name))
        raise not_found(f"{selected} not found")

    permission_fields: dict[str, query.Getter] = {
        "repository.full_name": lambda p: p["repository"]["full_name"],
        "repository.name": lambda p: p["repository"]["name"],
        "repository.uuid": lambda p: p["repository"]["uuid"],
        "permission": lambda p: p["permission"],
    }

    @app.route("/2.0/user/permissions/repositories", methods=["GET"])
    def user_repository_permissions() -> flask.Response:
        me = current_user()
        args = flask.request.args
        req = paging.page_request(args)
        with bb.lock:
            repos = sorted(bb.store.repos.values(), key=lambda r: (r["workspace"], r["slug"]))
            values = [
                shapes.repository_permission(r, me["username"], permission(me))
                for r in repos
                if reaches(me, r["workspace"], r["slug"])
            ]
        if args.get("q"):
            predicate = query.parse(args["q"], permission_fields)
            values = [v for v in values if predicate(v)]
        if args.get("sort"):
            values = query.sort(values, args["sort"], permission_fields)
        base = shapes.api("user/permissions/repositories")
        return answer(paging.page_of(values, req, base=base, args=args))

    @app.route("/2.0/workspaces/<workspace>", methods=["GET"])
    def workspace_get(workspace: str) -> flask.Response:
        return answer(shapes.workspace(workspace_or_404(workspace), full=True))

    @app.route("/2.0/workspaces/<workspace>/members", methods=["GET"])
    def workspace_members(workspace: str) -> flask.Response:
        ws = workspace_or_404(workspace)
        req = paging.page_request(flask.request.args)
        base = shapes.api(f"workspaces/{workspace}/members")
        with bb.lock:
            values = [
                {
                    "type": "workspace_membership",
                    "user": shapes.user(name),
                    "workspace": shapes.workspace(ws),
                    "links": {"self": {"href": f"{base}/{bb.store.users[name]['uuid']}"}},
                }
                for name in sorted(bb.store.users)
            ]
        return answer(paging.page_of(values, req, base=base, args=flask.request.args))
