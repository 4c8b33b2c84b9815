"""The claims demo app: a small web server with a health check.

    GET /health  200 {"status": "ok", "release", "commit", "schema"} once the database answers,
                 500 {"status": "failing", "reason"} otherwise
    GET /        a page saying which release and commit run here

It listens on 127.0.0.1:$PORT and reads $DATABASE_URL, $HEROKU_RELEASE_VERSION and
$HEROKU_SLUG_COMMIT, as a Heroku web dyno would. The file HEALTH lets a commit break the app
on purpose (see README.md).
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import database

HERE = Path(__file__).resolve().parent
STARTED = time.monotonic()


@dataclass(frozen=True)
class Health:
    """What the HEALTH file asks for: ok, fail, fail-after N, crash-after N, slow N or fail-on APP."""

    mode: str = "ok"
    seconds: float = 0.0
    app: str = ""

    @classmethod
    def read(cls, path: Path) -> Health:
        if not path.exists():
            return cls()
        words = path.read_text().split()
        if words in ([], ["ok"]):
            return cls()
        if words == ["fail"]:
            return cls("fail")
        if len(words) == 2 and words[0] == "fail-on":
            return cls("fail-on", app=words[1])
        if len(words) == 2 and words[0] in ("fail-after", "crash-after", "slow"):
            try:
                return cls(words[0], float(words[1]))
            except ValueError:
                pass
        raise SystemExit(
            f"app: HEALTH says {' '.join(words)!r}; "
            "expected ok, fail, fail-after N, crash-after N, slow N or fail-on APP"
        )

    def failing(self) -> str | None:
        """Why /health must fail now, or None."""
        if self.mode == "fail":
            return "HEALTH says fail"
        if self.mode == "fail-after" and time.monotonic() - STARTED >= self.seconds:
            return f"HEALTH says fail after {self.seconds:g} seconds"
        if self.mode == "fail-on" and os.environ.get("HEROKU_APP_NAME") == self.app:
            return f"HEALTH says fail on {self.app}"
        return None


HEALTH = Health.read(HERE / "HEALTH")
RELEASE = os.environ.get("HEROKU_RELEASE_VERSION", "unknown")
COMMIT = os.environ.get("HEROKU_SLUG_COMMIT", "unknown")


def check() -> tuple[int, dict[str, object]]:
    """The health check's status code and body."""
    reason = HEALTH.failing()
    if reason is None:
        try:
            conn = database.connect()
            try:
                schema = database.latest_migration(conn)
            finally:
                conn.close()
            return 200, {"status": "ok", "release": RELEASE, "commit": COMMIT, "schema": schema}
        except database.DatabaseError as exc:
            reason = f"database: {exc}"
    return 500, {"status": "failing", "reason": reason, "release": RELEASE, "commit": COMMIT}


class Handler(BaseHTTPRequestHandler):
    server_version = "claims-demo/1"

    def do_GET(self) -> None:
        if HEALTH.mode == "slow":
            time.sleep(HEALTH.seconds)
        if self.path.split("?")[0] == "/health":
            status, body = check()
            self.answer(status, "application/json", json.dumps(body))
        elif self.path.split("?")[0] == "/":
            page = (
                "<!doctype html><title>Claims</title><h1>Claims</h1>"
                f"<p>Release {html.escape(RELEASE)}, commit <code>{html.escape(COMMIT)}</code>.</p>"
            )
            self.answer(200, "text/html; charset=utf-8", page)
        else:
            self.answer(404, "application/json", json.dumps({"error": f"no page at {self.path}"}))

    def answer(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"app: {self.address_string()} {format % args}", flush=True)


def crash_later(seconds: float) -> None:
    def crash() -> None:
        print(f"app: HEALTH says crash after {seconds:g} seconds; exiting", flush=True)
        os._exit(1)

    timer = threading.Timer(seconds, crash)
    timer.daemon = True
    timer.start()


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if HEALTH.mode == "crash-after":
        crash_later(HEALTH.seconds)
    print(f"app: release {RELEASE} (commit {COMMIT}) listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
