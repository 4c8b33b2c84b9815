"""Pull requests, their participants, merges, activity and comments (R = /2.0/repositories/{ws}/{repo})::

    GET|POST R/pullrequests              GET|PUT R/pullrequests/{id}
    POST|DELETE R/pullrequests/{id}/approve          POST|DELETE .../request-changes
    POST .../decline    POST .../merge   GET .../merge/task-status/{task id}
    GET .../activity    GET .../commits  GET .../statuses
    GET|POST .../comments                GET .../comments/{comment_id}

Listing: ``state`` may repeat; without it only OPEN pull requests are listed, unless ``q`` itself
filters on ``state``. ``q`` and ``sort`` as in ``query``; pagelen at most 50. Approving is open to
the author (Bitbucket Cloud allows it); approving, merging or declining a closed pull request is
a 400. ``PUT`` needs ``title`` every time (400 "title is required" without it), as Bitbucket does.
Reviewers are given as ``[{"uuid": ...} | {"account_id": ...}]``; the author among them, or an
unknown account, is a 400. How merges happen (at once or as a task) is in ``merges``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import flask

from sandbox.bitbucket import events, paging, query
from sandbox.bitbucket.api import answer, current_user, json_body
from sandbox.bitbucket.errors import ApiError, bad_request, field_error, not_found, required
from sandbox.bitbucket.merges import TIMED_OUT, MergeOrder, close_pullrequest, require_open
from sandbox.bitbucket.shapes import now
from sandbox.bitbucket.store import Record
from sandbox.faults import MERGE_TIMEOUT_STATUS
from sandbox.server import FAULT_ENVIRON_KEY

if TYPE_CHECKING:
    from sandbox.bitbucket.service import BitbucketCloud

R = "/2.0/repositories/<workspace>/<slug>/pullrequests"
PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")


def title_required() -> ApiError:
    """What Bitbucket answers a ``PUT`` without ``title``, even one that changes nothing else."""
    return ApiError(400, "title is required", fields={"title": ["This field is required."]})


def _branch_name(body: dict[str, Any], field: str) -> str | None:
    endpoint = body.get(field)
    if endpoint is None:
        return None
    branch = endpoint.get("branch") if isinstance(endpoint, dict) else None
    name = branch.get("name") if isinstance(branch, dict) else None
    if not isinstance(name, str) or not name:
        raise field_error(field, 'must be of the form {"branch": {"name": "..."}}.')
    return name


def register(app: flask.Flask, bb: BitbucketCloud) -> None:
    shapes = bb.shapes

    def render(repo: Record, pr: Record) -> Record:
        return shapes.pullrequest(repo, pr, pr["source_hash"], pr["dest_hash"])

    def pr_or_404(repo: Record, pr_id: int) -> Record:
        pr = repo["pullrequests"].get(str(pr_id))
        if pr is None:
            raise not_found(f"Pull request {pr_id} not found", "There is no pull request with that id here.")
        return pr

    def user_of(ref: Any) -> str:
        """A username from a reviewer reference (``{"uuid": ...}`` or ``{"account_id": ...}``)."""
        if isinstance(ref, dict):
            for name, u in bb.store.users.items():
                if ref.get("uuid") == u["uuid"] or ref.get("account_id") == u["account_id"]:
                    return name
        raise field_error("reviewers", f"{ref!r} is not a valid user.")

    def reviewers_from(body: dict[str, Any], author: str) -> list[str] | None:
        if "reviewers" not in body or body["reviewers"] is None:
            return None
        if not isinstance(body["reviewers"], list):
            raise field_error("reviewers", "Malformed reviewers list")
        names: list[str] = []
        for ref in body["reviewers"]:
            name = user_of(ref)
            if name == author:
                display = bb.store.users[name]["display_name"]
                raise ApiError(
                    400,
                    f"{display} is the author and cannot be included as a reviewer.",
                    fields={"reviewers": [f"{display} is the author and cannot be included as a reviewer."]},
                )
            if name not in names:
                names.append(name)
        return names

    def set_reviewers(pr: Record, names: list[str]) -> None:
        """Make ``names`` the reviewers; a reviewer taken off who had acted stays a participant."""
        pr["reviewers"] = names
        kept = list(pr["participants"])
        for p in kept:
            p["role"] = "REVIEWER" if p["user"] in names else "PARTICIPANT"
        present = {p["user"] for p in kept}
        kept += [
            {"user": n, "role": "REVIEWER", "approved": False, "state": None, "participated_on": None}
            for n in names
            if n not in present
        ]
        pr["participants"] = [
            p for p in kept if p["role"] == "REVIEWER" or p["approved"] or p["state"] or p["participated_on"]
        ]

    def participant(pr: Record, username: str) -> Record:
        for p in pr["participants"]:
            if p["user"] == username:
                return p
        p = {
            "user": username,
            "role": "PARTICIPANT",
            "approved": False,
            "state": None,
            "participated_on": None,
        }
        pr["participants"].append(p)
        return p

    def account(handle: str) -> Record:
        found = bb.store.account(handle)
        assert found is not None, f"no account {handle!r}"
        return found

    # -- list, create, get, update ------------------------------------------------------------

    pr_fields: dict[str, query.Getter] = {
        "id": lambda p: p["id"],
        "title": lambda p: p["title"],
        "description": lambda p: p["description"],
        "state": lambda p: p["state"],
        "source.branch.name": lambda p: p["source"],
        "destination.branch.name": lambda p: p["destination"],
        "source.commit.hash": lambda p: p["source_hash"][:12],
        "destination.commit.hash": lambda p: p["dest_hash"][:12],
        "author.uuid": lambda p: account(p["author"])["uuid"],
        "author.account_id": lambda p: account(p["author"])["account_id"],
        "author.nickname": lambda p: account(p["author"]).get("nickname"),
        "created_on": lambda p: p["created_on"],
        "updated_on": lambda p: p["updated_on"],
        "close_source_branch": lambda p: p["close_source_branch"],
    }

    @app.route(R, methods=["GET"])
    def pulls_list(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        args = flask.request.args
        req = paging.page_request(args, maximum=paging.PULLREQUEST_MAX_PAGELEN)
        states = [s.upper() for s in args.getlist("state")]
        for s in states:
            if s not in PR_STATES:
                raise field_error("state", f"{s!r} is not one of {', '.join(PR_STATES)}.")
        q = args.get("q")
        predicate = query.parse(q, pr_fields) if q else None
        if not states and not (q and query.mentions(q, "state")):
            states = ["OPEN"]
        with bb.lock:
            items = [p for p in repo["pullrequests"].values() if not states or p["state"] in states]
            if predicate is not None:
                items = [p for p in items if predicate(p)]
            items = query.sort(items, args.get("sort", "id"), pr_fields)
            values = [render(repo, p) for p in items]
        return answer(paging.page_of(values, req, base=shapes.repo_api(repo, "pullrequests"), args=args))

    @app.route(R, methods=["POST"])
    def pulls_create(workspace: str, slug: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        body = json_body()
        me = current_user()["username"]
        title = body.get("title")
        if not title:
            raise required("title")
        if not isinstance(title, str):
            raise field_error("title", "must be a string.")
        source = _branch_name(body, "source")
        if source is None:
            raise required("source")
        destination = _branch_name(body, "destination") or repo["mainbranch"]
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise field_error("description", "must be a string.")
        close = bool(body.get("close_source_branch") or False)
        git = bb.git(repo)
        with bb.lock:
            source_sha = git.branch(source)
            if source_sha is None:
                raise field_error("source", f'Branch "{source}" doesn\'t exist.')
            dest_sha = git.branch(destination)
            if dest_sha is None:
                raise field_error("destination", f'Branch "{destination}" doesn\'t exist.')
            if source == destination:
                raise field_error("destination", "The source and destination branches are the same.")
            reviewers = reviewers_from(body, me) or []
            for existing in repo["pullrequests"].values():
                if existing["state"] == "OPEN" and (existing["source"], existing["destination"]) == (
                    source,
                    destination,
                ):
                    existing.update(title=title, description=description, close_source_branch=close)
                    set_reviewers(existing, reviewers)
                    existing["updated_on"] = now()
                    bb.save(repo)
                    events.pullrequest(bb, repo, existing, "pullrequest:updated", me)
                    return answer(render(repo, existing), 200)
            if git.is_ancestor(source_sha, dest_sha):
                raise bad_request(
                    "There are no changes to be pulled", f"{destination} already contains {source}."
                )
            stamp = now()
            pr: Record = {
                "id": repo["next_pr"],
                "title": title,
                "description": description,
                "state": "OPEN",
                "author": me,
                "source": source,
                "destination": destination,
                "source_hash": source_sha,
                "dest_hash": dest_sha,
                "merge_base": None,
                "close_source_branch": close,
                "reviewers": [],
                "participants": [],
                "created_on": stamp,
                "updated_on": stamp,
                "merge_commit": None,
                "closed_by": None,
                "reason": "",
                "comments": [],
                "activity": [
                    {
                        "kind": "update",
                        "date": stamp,
                        "user": me,
                        "state": "OPEN",
                        "source_hash": source_sha,
                        "dest_hash": dest_sha,
                    }
                ],
            }
            set_reviewers(pr, reviewers)
            repo["next_pr"] += 1
            repo["pullrequests"][str(pr["id"])] = pr
            bb.save(repo)
            events.pullrequest(bb, repo, pr, "pullrequest:created", me)
            resp = answer(
                render(repo, pr), 201, {"Location": shapes.repo_api(repo, f"pullrequests/{pr['id']}")}
            )
        return resp

    @app.route(f"{R}/<int:pr_id>", methods=["GET"])
    def pull_get(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        with bb.lock:
            return answer(render(repo, pr_or_404(repo, pr_id)))

    @app.route(f"{R}/<int:pr_id>", methods=["PUT"])
    def pull_update(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        body = json_body()
        me = current_user()["username"]
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            if not body.get("title"):
                raise title_required()
            require_open(pr, "update")
            changes: dict[str, Any] = {}
            for name in ("title", "description"):
                if name in body and body[name] is not None:
                    if not isinstance(body[name], str) or (name == "title" and not body[name]):
                        raise field_error(
                            name, "must be a non-empty string." if name == "title" else "must be a string."
                        )
                    if body[name] != pr[name]:
                        changes[name] = {"old": pr[name], "new": body[name]}
                        pr[name] = body[name]
            destination = _branch_name(body, "destination")
            if destination is not None and destination != pr["destination"]:
                dest_sha = bb.git(repo).branch(destination)
                if dest_sha is None:
                    raise field_error("destination", f'Branch "{destination}" doesn\'t exist.')
                changes["destination"] = {"old": pr["destination"], "new": destination}
                pr["destination"], pr["dest_hash"] = destination, dest_sha
            if "close_source_branch" in body and body["close_source_branch"] is not None:
                pr["close_source_branch"] = bool(body["close_source_branch"])
            reviewers = reviewers_from(body, pr["author"])
            if reviewers is not None and reviewers != pr["reviewers"]:
                changes["reviewers"] = {"added": [r for r in reviewers if r not in pr["reviewers"]]}
                set_reviewers(pr, reviewers)
            pr["updated_on"] = now()
            pr["activity"].append(
                {
                    "kind": "update",
                    "date": pr["updated_on"],
                    "user": me,
                    "state": "OPEN",
                    "changes": changes,
                    "source_hash": pr["source_hash"],
                    "dest_hash": pr["dest_hash"],
                }
            )
            bb.save(repo)
            events.pullrequest(bb, repo, pr, "pullrequest:updated", me)
            return answer(render(repo, pr))

    # -- approvals and change requests --------------------------------------------------------

    @contextmanager
    def reviewing(
        workspace: str, slug: str, pr_id: int, verb: str
    ) -> Iterator[tuple[Record, Record, Record, str]]:
        """(repo, pr, the caller's participant entry, the caller) under the lock, for an open PR."""
        repo = bb.repo_or_404(workspace, slug)
        me = current_user()["username"]
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            require_open(pr, verb)
            yield repo, pr, participant(pr, me), me

    @app.route(f"{R}/<int:pr_id>/approve", methods=["POST"])
    def approve(workspace: str, slug: str, pr_id: int) -> flask.Response:
        with reviewing(workspace, slug, pr_id, "approve") as (repo, pr, p, me):
            if not p["approved"]:
                stamp = now()
                p.update(approved=True, state="approved", participated_on=stamp)
                pr["activity"].append({"kind": "approval", "date": stamp, "user": me})
                bb.save(repo)
                approval = {"date": stamp, "user": shapes.user(me)}
                events.pullrequest(bb, repo, pr, "pullrequest:approved", me, {"approval": approval})
            return answer(shapes.participant(p))

    @app.route(f"{R}/<int:pr_id>/approve", methods=["DELETE"])
    def unapprove(workspace: str, slug: str, pr_id: int) -> flask.Response:
        with reviewing(workspace, slug, pr_id, "unapprove") as (repo, pr, p, me):
            if not p["approved"]:
                raise not_found("You haven't approved this pull request.")
            p.update(approved=False, state=None)
            bb.save(repo)
            approval = {"date": now(), "user": shapes.user(me)}
            events.pullrequest(bb, repo, pr, "pullrequest:unapproved", me, {"approval": approval})
        return flask.Response(status=204)

    @app.route(f"{R}/<int:pr_id>/request-changes", methods=["POST"])
    def request_changes(workspace: str, slug: str, pr_id: int) -> flask.Response:
        with reviewing(workspace, slug, pr_id, "request changes on") as (repo, pr, p, me):
            if p["state"] != "changes_requested":
                stamp = now()
                p.update(approved=False, state="changes_requested", participated_on=stamp)
                pr["activity"].append({"kind": "changes_requested", "date": stamp, "user": me})
                bb.save(repo)
                extra = {"changes_request": {"date": stamp, "user": shapes.user(me)}}
                events.pullrequest(bb, repo, pr, "pullrequest:changes_request_created", me, extra)
            return answer(shapes.participant(p))

    @app.route(f"{R}/<int:pr_id>/request-changes", methods=["DELETE"])
    def unrequest_changes(workspace: str, slug: str, pr_id: int) -> flask.Response:
        with reviewing(workspace, slug, pr_id, "remove a change request on") as (repo, pr, p, me):
            if p["state"] != "changes_requested":
                raise not_found("You haven't requested changes on this pull request.")
            p["state"] = None
            bb.save(repo)
            extra = {"changes_request": {"date": now(), "user": shapes.user(me)}}
            events.pullrequest(bb, repo, pr, "pullrequest:changes_request_removed", me, extra)
        return flask.Response(status=204)

    # -- decline and merge --------------------------------------------------------------------

    @app.route(f"{R}/<int:pr_id>/decline", methods=["POST"])
    def decline(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        body = json_body()
        me = current_user()["username"]
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            require_open(pr, "decline")
            pr["reason"] = body.get("message") if isinstance(body.get("message"), str) else ""
            close_pullrequest(pr, "DECLINED", me)
            bb.save(repo)
            events.pullrequest(bb, repo, pr, "pullrequest:rejected", me)
            return answer(render(repo, pr))

    @app.route(f"{R}/<int:pr_id>/merge", methods=["POST"])
    def merge(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        order = MergeOrder.from_body(json_body())
        me = current_user()["username"]
        timed_out = flask.request.environ.get(FAULT_ENVIRON_KEY) is not None  # a merge_timeout fault
        queued = bb.merge_mode == "async" or flask.request.args.get("async", "").lower() == "true"
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            if timed_out:
                bb.merger.queue(repo, pr, me, order)
                raise ApiError(MERGE_TIMEOUT_STATUS, TIMED_OUT)
            if queued:
                task = bb.merger.queue(repo, pr, me, order)
                resp = flask.Response(status=202)
                resp.headers["Location"] = bb.merger.status_url(repo, task)
                return resp
            bb.merger.refuse_if_merging(repo, pr)
            bb.merger.merge_now(repo, pr, me, order)
            return answer(render(repo, pr))

    @app.route(f"{R}/<int:pr_id>/merge/task-status/<task_id>", methods=["GET"])
    def merge_status(workspace: str, slug: str, pr_id: int, task_id: str) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        me = current_user()["username"]
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            return answer(bb.merger.status(repo, pr, task_id, me))

    # -- activity, commits, statuses ----------------------------------------------------------

    def activity_entry(repo: Record, pr: Record, a: Record) -> Record:
        mini = shapes.pr_mini(repo, pr)
        user = shapes.user(a["user"])
        if a["kind"] == "approval":
            return {"approval": {"date": a["date"], "pullrequest": mini, "user": user}, "pull_request": mini}
        if a["kind"] == "changes_requested":
            return {
                "changes_requested": {"date": a["date"], "pullrequest": mini, "user": user},
                "pull_request": mini,
            }
        if a["kind"] == "comment":
            comment = next(c for c in pr["comments"] if c["id"] == a["comment_id"])
            return {"comment": shapes.comment(repo, pr, comment), "pull_request": mini}
        update = {
            "state": a["state"],
            "draft": False,
            "title": pr["title"],
            "description": pr["description"],
            "reason": a.get("reason", ""),
            "author": user,
            "date": a["date"],
            "reviewers": [shapes.user(r) for r in pr["reviewers"]],
            "changes": a.get("changes", {}),
            # Where the branches pointed when this update happened (older state files lack it).
            "source": shapes.endpoint(repo, pr["source"], a.get("source_hash") or pr["source_hash"]),
            "destination": shapes.endpoint(repo, pr["destination"], a.get("dest_hash") or pr["dest_hash"]),
        }
        return {"update": update, "pull_request": mini}

    @app.route(f"{R}/<int:pr_id>/activity", methods=["GET"])
    def activity(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        req = paging.page_request(flask.request.args, maximum=paging.PULLREQUEST_MAX_PAGELEN)
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            values = [activity_entry(repo, pr, a) for a in reversed(pr["activity"])]
        base = shapes.repo_api(repo, f"pullrequests/{pr_id}/activity")
        return answer(paging.page_of(values, req, base=base, args=flask.request.args, with_size=False))

    @app.route(f"{R}/<int:pr_id>/commits", methods=["GET"])
    def pull_commits(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        req = paging.page_request(flask.request.args)
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            exclude = pr["merge_base"] or pr["dest_hash"]
            commits = bb.git(repo).log([pr["source_hash"]], [exclude])
            values = [shapes.commit(repo, c) for c in commits]
        base = shapes.repo_api(repo, f"pullrequests/{pr_id}/commits")
        return answer(paging.page_of(values, req, base=base, args=flask.request.args, with_size=False))

    @app.route(f"{R}/<int:pr_id>/statuses", methods=["GET"])
    def pull_statuses(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        req = paging.page_request(flask.request.args)
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            items = sorted(
                repo["statuses"].get(pr["source_hash"], {}).values(), key=lambda s: s["created_on"]
            )
            values = [shapes.status(repo, s) for s in items]
        base = shapes.repo_api(repo, f"pullrequests/{pr_id}/statuses")
        return answer(paging.page_of(values, req, base=base, args=flask.request.args))

    # -- comments -----------------------------------------------------------------------------

    @app.route(f"{R}/<int:pr_id>/comments", methods=["GET"])
    def comments_list(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        req = paging.page_request(flask.request.args)
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            values = [shapes.comment(repo, pr, c) for c in pr["comments"]]
        base = shapes.repo_api(repo, f"pullrequests/{pr_id}/comments")
        return answer(paging.page_of(values, req, base=base, args=flask.request.args))

    @app.route(f"{R}/<int:pr_id>/comments", methods=["POST"])
    def comments_create(workspace: str, slug: str, pr_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        body = json_body()
        content = body.get("content")
        raw = content.get("raw") if isinstance(content, dict) else None
        if not isinstance(raw, str) or not raw:
            raise required("content.raw")
        me = current_user()["username"]
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            stamp = now()
            comment = {
                "id": repo["next_comment"],
                "user": me,
                "raw": raw,
                "created_on": stamp,
                "updated_on": stamp,
            }
            repo["next_comment"] += 1
            pr["comments"].append(comment)
            p = participant(pr, me)
            if not p["approved"]:
                p["participated_on"] = stamp
            pr["activity"].append({"kind": "comment", "date": stamp, "user": me, "comment_id": comment["id"]})
            bb.save(repo)
            shaped = shapes.comment(repo, pr, comment)
            events.pullrequest(bb, repo, pr, "pullrequest:comment_created", me, {"comment": shaped})
            return answer(shaped, 201, {"Location": shaped["links"]["self"]["href"]})

    @app.route(f"{R}/<int:pr_id>/comments/<int:comment_id>", methods=["GET"])
    def comment_get(workspace: str, slug: str, pr_id: int, comment_id: int) -> flask.Response:
        repo = bb.repo_or_404(workspace, slug)
        with bb.lock:
            pr = pr_or_404(repo, pr_id)
            for c in pr["comments"]:
                if c["id"] == comment_id:
                    return answer(shapes.comment(repo, pr, c))
        raise not_found(f"Comment {comment_id} not found")
