"""``WebServer``: one WSGI application served by waitress from a daemon thread.

The port is bound when the server is built, so a taken port is an ``OSError`` naming
``host:port`` before anything else starts (``pipeline serve`` builds it first); ``start`` then
serves with 4 worker threads, ``stop`` stops within a couple of seconds and may be called at any
time, more than once.

Waitress bounds the request body itself (``max_request_body_size``): an announced or chunked body
larger than ``max_body`` is answered 413 by waitress (plain text) before the application runs.
Waitress refuses a body of exactly its bound, so it is given ``max_body + 1``: a body of exactly
``max_body`` bytes with a ``Content-Length`` is taken, as the Flask application and the receiver take
it. (A chunked body is counted with its chunk framing, so it must be some bytes smaller.)

Idle connections cannot starve it: up to 1,000 are held, each cut after 10 s without a byte, and
request lines with headers are bounded (16 KiB).

Logging: waitress's INFO (about itself) is left out unless its logger was configured, and its
"Task queue depth" warning (all worker threads busy) is let through at most once a minute,
with the number left out since.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import waitress
from waitress import wasyncore

from pipeline.web.webhooks import MAX_BODY

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("pipeline.web.server")

THREADS = 4
# Idle connections are cut after CHANNEL_TIMEOUT (checked every CLEANUP_INTERVAL) and up to
# CONNECTION_LIMIT are held open, so a hundred idle clients starve neither /healthz nor deliveries.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT = 10
CLEANUP_INTERVAL = 2
MAX_HEADERS = 16 * 1024  # bytes of request line and headers: Bitbucket's are a few hundred
LOOP_TIMEOUT = 1.0  # seconds the serving loop sleeps between checks (stop() wakes it at once)
DRAIN_SECONDS = 1.0  # how long stop() lets requests being served finish
QUEUE_WARNING_EVERY = 60.0  # seconds between two "task queue depth" warnings


class OncePer(logging.Filter):
    """Lets one record through every ``seconds``; the next one says how many were left out."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._lock = threading.Lock()
        self._last: float | None = None
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.seconds:
                self._dropped += 1
                return False
            self._last = now
            if self._dropped:
                record.msg = f"{record.msg} ({self._dropped} such warnings left out since the last)"
                self._dropped = 0
        return True


def quiet_waitress() -> None:
    """Waitress's logging made quiet, not silent (see the module docstring). Idempotent."""
    main = logging.getLogger("waitress")
    if main.level == logging.NOTSET:
        main.setLevel(logging.WARNING)
    queue = logging.getLogger("waitress.queue")
    if not any(isinstance(f, OncePer) for f in queue.filters):
        queue.addFilter(OncePer(QUEUE_WARNING_EVERY))


class WebServer:
    """Serves ``app`` on ``host:port`` (port 0: any free one; ``.port`` says which).

    Building it binds and listens (connections wait in the backlog until ``start``); an
    ``OSError`` naming ``host:port`` when that fails. ``start`` serves from a daemon thread (once);
    ``stop`` stops accepting, lets requests being served finish for up to a second, closes every
    connection and the socket and returns within about two seconds; idempotent, and fine before
    ``start``.
    """

    def __init__(
        self, app: WSGIApplication, host: str, port: int, *, max_body: int = MAX_BODY, threads: int = THREADS
    ) -> None:
        self._app = app
        self.host = host
        self._max_body = max_body
        self._threads = threads
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket: socket.socket | None = socket.create_server((host, port), family=family)
        except OSError as exc:
            # socket.create_server appends the address to strerror: say it once, our way
            reason = (exc.strerror or str(exc) or type(exc).__name__).split(" (while attempting to bind")[0]
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {reason}") from exc
        self.port: int = self._socket.getsockname()[1]
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = False
        quiet_waitress()

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets), with the real port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"WebServer({self.url})"

    def start(self) -> WebServer:
        """Serve from a daemon thread; returns at once. RuntimeError when started before or stopped."""
        with self._lock:
            if self._stopped or self._socket is None:
                raise RuntimeError(f"{self!r} was stopped; build a new one")
            if self._thread is not None:
                raise RuntimeError(f"{self!r} is already serving")
            self._server = waitress.create_server(
                self._app,
                sockets=[self._socket],
                threads=self._threads,
                max_request_body_size=self._max_body + 1,  # waitress refuses a body of its bound
                max_request_header_size=MAX_HEADERS,
                connection_limit=CONNECTION_LIMIT,
                channel_timeout=CHANNEL_TIMEOUT,
                cleanup_interval=CLEANUP_INTERVAL,
                asyncore_use_poll=True,
            )
            self._thread = threading.Thread(target=self._serve, name=f"web-{self.port}", daemon=True)
            self._thread.start()
        log.info("serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (see the class docstring); idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping.set()
            thread, server = self._thread, self._server
            if server is not None:
                with contextlib.suppress(OSError):
                    server.pull_trigger()  # wake the loop now
        if thread is not None:
            thread.join(timeout=DRAIN_SECONDS + LOOP_TIMEOUT + 1.0)
            if thread.is_alive():
                log.warning("the web server on %s did not stop in time", self.url)
        elif self._socket is not None:
            self._socket.close()
        self._socket = None

    # -- the serving thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        server = self._server
        channels: dict[int, Any] = server._map  # waitress's socket map: the listener, trigger, connections
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=LOOP_TIMEOUT, map=channels, use_poll=True, count=1)
        except Exception:
            log.exception("the web server on %s failed", self.url)
        finally:
            self._close(server, channels)

    @staticmethod
    def _busy(channels: dict[int, Any]) -> bool:
        return any(
            getattr(c, "requests", None) or getattr(c, "total_outbufs_len", 0) for c in channels.values()
        )

    def _close(self, server: Any, channels: dict[int, Any]) -> None:
        with contextlib.suppress(Exception):
            server.close()  # the listening socket: nothing new is accepted
        deadline = time.monotonic() + DRAIN_SECONDS
        with contextlib.suppress(Exception):
            while self._busy(channels) and time.monotonic() < deadline:
                wasyncore.loop(timeout=0.05, map=channels, use_poll=True, count=1)
        with contextlib.suppress(Exception):
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=0.5)
        wasyncore.close_all(channels, ignore_all=True)
