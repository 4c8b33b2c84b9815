"""The capability URLs beside the API: the blobs of sources and slugs (S3 on Heroku) and the output
streams of builds and releases. They need no Accept nor auth, only the token in their URL::

    GET|PUT /blobs/sources/{id}?token=     the source tarball (PUT with the put token)
    GET     /blobs/slugs/{id}?token=       the slug
    GET     /streams/builds/{id}?token=    GET /streams/releases/{id}?token=   followed while pending

Blob errors are S3's XML error documents; a stream with a wrong token is a plain-text 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, request
from werkzeug.wrappers import Response

from sandbox.heroku.state import Record

if TYPE_CHECKING:
    from sandbox.heroku.platform import HerokuPlatform

STREAM_LIMIT = 900.0  # seconds an output stream follows a running build or release


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status=status, content_type="application/xml")


def register(app: Flask, platform: HerokuPlatform) -> None:
    store = platform.store

    # -- blobs -----------------------------------------------------------------------------------

    @app.route("/blobs/sources/<source_id>", methods=["GET", "PUT"])
    def source_blob(source_id: str) -> Response:
        with store.lock:
            rec = store.sources.get(source_id)
        token = request.args.get("token")
        if rec is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        path = platform.source_path(source_id)
        if request.method == "PUT":
            if token != rec["put_token"]:
                return _s3_error(
                    403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(request.get_data())
            return Response(b"", status=200)
        if token != rec["get_token"]:
            return _s3_error(403, "AccessDenied", "Access Denied")
        if not path.is_file():
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(path.read_bytes(), content_type="application/octet-stream")

    @app.get("/blobs/slugs/<slug_id>")
    def slug_blob(slug_id: str) -> Response:
        with store.lock:
            rec = store.slugs.get(slug_id)
        if rec is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if request.args.get("token") != rec["token"]:
            return _s3_error(403, "AccessDenied", "Access Denied")
        return Response(
            platform.builder.slug_path(slug_id).read_bytes(), content_type="application/octet-stream"
        )

    # -- output streams --------------------------------------------------------------------------

    def follow(path: Path, finished: Callable[[], bool]) -> Iterator[bytes]:
        position = 0
        deadline = time.monotonic() + STREAM_LIMIT
        while True:
            done = finished() or time.monotonic() > deadline
            try:
                with path.open("rb") as f:
                    f.seek(position)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            position += len(chunk)
            if chunk:
                yield chunk
            if done:
                return
            time.sleep(0.1)

    def output_stream(records: dict[str, Record], record_id: str, log_path: Path) -> Response:
        """A build's or release's log, followed until it stops being pending (capability URL)."""
        with store.lock:
            rec = records.get(record_id)
        if rec is None or request.args.get("token") != rec["token"]:
            return Response("Not found\n", status=404, content_type="text/plain")

        def finished() -> bool:
            with store.lock:
                return bool(records[record_id]["status"] != "pending")

        stream = follow(log_path, finished)
        return Response(stream, content_type="text/plain; charset=utf-8", direct_passthrough=True)

    @app.get("/streams/builds/<build_id>")
    def build_stream(build_id: str) -> Response:
        return output_stream(store.builds, build_id, platform.builder.log_path(build_id))

    @app.get("/streams/releases/<release_id>")
    def release_stream(release_id: str) -> Response:
        return output_stream(store.releases, release_id, platform.releaser.log_path(release_id))
