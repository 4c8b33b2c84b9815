"""Repository webhooks (R = /2.0/repositories/{ws}/{repo})::

    GET|POST R/hooks        GET|PUT|DELETE R/hooks/{uid}     ({uid} with or without braces)

Fields: ``url`` (required, http or https), ``description``, ``events`` (required, at least one, each
a Bitbucket event key), ``active`` (default true), ``secret`` (write-only: never returned; the
answer says ``secret_set``; on update, leaving it out keeps it and null or "" removes it).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import flask

from sandbox.bitbucket import paging
from sandbox.bitbucket.api import answer, json_body
from sandbox.bitbucket.errors import field_error, not_found, required
from sandbox.bitbucket.shapes import now
from sandbox.bitbucket.store import Record

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

R = "/2.0/repositories/<workspace>/<slug>/hooks"
EVENTS = frozenset(
    {
        "repo:push",
        "repo:fork",
        "repo:updated",
        "repo:commit_comment_created",
        "repo:commit_status_created",
        "repo:commit_status_updated",
        "repo:created",
        "repo:deleted",
        "repo:imported",
        "repo:transfer",
        "issue:created",
        "issue:updated",
        "issue:comment_created",
        "pullrequest:created",
        "pullrequest:updated",
        "pullrequest:approved",
        "pullrequest:unapproved",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
        "pullrequest:changes_request_created",
        "pullrequest:changes_request_removed",
        "pullrequest:comment_created",
        "pullrequest:comment_updated",
        "pullrequest:comment_deleted",
        "pullrequest:comment_resolved",
        "pullrequest:comment_reopened",
        "project:updated",
    }
)


def _validated(body: dict[str, Any], existing: Record | None) -> Record:
    out: Record = {}
    if existing is None or "url" in body:
        url = body.get("url")
        if not url:
            raise required("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise field_error("url", f"{url!r} is not a valid http(s) URL.")
        out["url"] = url
    if existing is None or "events" in body:
        events = body.get("events")
        if not events:
            raise required("events")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise field_error("events", "must be a list of event keys.")
        unknown = sorted(set(events) - EVENTS)
        if unknown:
            raise field_error("events", f"{unknown[0]!r} is not a valid event.")
        out["events"] = sorted(set(events))
    if "description" in body or existing is None:
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise field_error("description", "must be a string.")
        out["description"] = description
    if "active" in body or existing is None:
        active = body.get("active", True)
        if not isinstance(active, bool):
            raise field_error("active", "must be true or false.")
        out["active"] = active
    if "secret" in body:
        secret = body["secret"]
        if secret is not None and (not isinstance(secret, str) or len(secret) > 128):
            raise field_error("secret", "must be a string of at most 128 characters.")
        out["secret"] = secret or None
    if "skip_cert_verification" in body:
        out["skip_cert_verification"] = bool(body["skip_cert_verification"])
    return out


def register(app: flask.Flask, bb: BitbucketCloud) -> None:
    shapes = bb.shapes

    def hook_or_404(repo: Record, uid: str) -> Record:
        hook = repo["hooks"].get("{" + uid.strip("{}") + "}")
        if hook is None:
            raise not_found(
                f"Webhook {uid} not found", "There is no webhook with that uuid on this repository."
            )
        return hook

    def hooks_list(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        req = paging.page_request(flask.request.args)
        with bb.lock:
            values = [
                shapes.hook(repo, h) for h in sorted(repo["hooks"].values(), key=lambda h: h["created_at"])
            ]
        return answer(
            paging.page_of(values, req, base=shapes.repo_api(repo, "hooks"), args=flask.request.args)
        )

    def hooks_create(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        fields = _validated(json_body(), None)
        with bb.lock:
            hook: Record = {"uuid": "{" + str(uuid.uuid4()) + "}", "created_at": now(), "secret": None}
            hook.update(fields)
            repo["hooks"][hook["uuid"]] = hook
            bb.save()
            body = shapes.hook(repo, hook)
        return answer(body, 201, {"Location": body["links"]["self"]["href"]})

    def hook_get(workspace: str, slug: str, uid: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        with bb.lock:
            return answer(shapes.hook(repo, hook_or_404(repo, uid)))

    def hook_put(workspace: str, slug: str, uid: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        body = json_body()
        with bb.lock:
            hook = hook_or_404(repo, uid)
            hook.update(_validated(body, hook))
            bb.save()
            return answer(shapes.hook(repo, hook))

    def hook_delete(workspace: str, slug: str, uid: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        with bb.lock:
            hook = hook_or_404(repo, uid)
            del repo["hooks"][hook["uuid"]]
            bb.save()
        return flask.Response(status=204)

    app.add_url_rule(R, "hooks_list", hooks_list, methods=["GET"])
    app.add_url_rule(R, "hooks_create", hooks_create, methods=["POST"])
    app.add_url_rule(f"{R}/<uid>", "hook_get", hook_get, methods=["GET"])
    app.add_url_rule(f"{R}/<uid>", "hook_put", hook_put, methods=["PUT"])
    app.add_url_rule(f"{R}/<uid>", "hook_delete", hook_delete, methods=["DELETE"])
