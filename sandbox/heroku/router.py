"""Heroku's router for one app: a stable ``http://127.0.0.1:<port>/`` forwarding to the app's web dyno.

The port stays the same across releases (and across restarts when it is free), so ``web_url``
never changes while the process behind it does. When nothing can answer, the router answers like
Heroku's: 503 with the "Application Error" page (maintenance mode: the maintenance page), the
Heroku error code (H10 App crashed, H14 No web processes running, H13, H12...) in the
``X-Heroku-Error`` header and in a comment of the page.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("sandbox")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
REQUEST_TIMEOUT = 30.0  # Heroku's H12 limit

ERROR_PAGE = """<!DOCTYPE html>
<html>
  <head>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta charset="utf-8">
    <title>{title}</title>
  </head>
  <body>
    <!-- {code} -->
    <h1>{title}</h1>
    <p>{text}</p>
  </body>
</html>
"""
APPLICATION_ERROR = (
    "Application Error",
    "An error occurred in the application and your page could not be served. If you are the application "
    "owner, check your logs for details. You can do this from the Heroku CLI with the command "
    "<code>heroku logs --tail</code>",
)
MAINTENANCE = (
    "Offline for Maintenance",
    "This app is in maintenance mode. Please check back soon.",
)

# (port or None, error code) for the app's current web dyno; and whether the app is in maintenance
Backend = Callable[[], tuple[int | None, str]]
Maintenance = Callable[[], bool]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    backend: Backend
    maintenance: Maintenance


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("router: " + format, *args)

    def _error(self, code: str, page: tuple[str, str] = APPLICATION_ERROR) -> None:
        body = ERROR_PAGE.format(title=page[0], text=page[1], code=code).encode()
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Heroku-Error", code)
        self.send_header("Cache-Control", "no-cache, no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.server.maintenance():
            self._error("H80 Maintenance mode", MAINTENANCE)
            return
        port, reason = self.server.backend()
        if port is None:
            self._error(reason)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = str(self.server.server_address[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            upstream = conn.getresponse()
            payload = upstream.read()
        except TimeoutError:
            self._error("H12 Request timeout")
            return
        except ConnectionRefusedError:
            self._error("H10 App crashed")
            return
        except (OSError, http.client.HTTPException):
            self._error("H13 Connection closed without response")
            return
        finally:
            conn.close()
        self.send_response(upstream.status, upstream.reason)
        for name, value in upstream.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward


class Router:
    """One app's router. ``port`` 0 (or a taken port) picks a free one; ``self.port`` is the bound one."""

    def __init__(self, port: int, backend: Backend, maintenance: Maintenance) -> None:
        try:
            server = _Server(("127.0.0.1", port), _Handler)
        except OSError:
            if port == 0:
                raise
            log.warning("router port %s is taken; using another", port)
            server = _Server(("127.0.0.1", 0), _Handler)
        server.backend = backend
        server.maintenance = maintenance
        self._server = server
        self.port: int = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"router-{self.port}",
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
