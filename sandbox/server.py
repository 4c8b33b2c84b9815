"""One stand-in on one loopback port: a threaded WSGI server with faults and an admin endpoint.

``ServiceServer`` binds its port when it is made (so a stand-in knows its own base URL before
it builds its app), then serves the app in a background thread. Before the app sees a request,
the fault registry is consulted (``sandbox.faults``); requests under ``/_sandbox/`` go to the
admin endpoint instead:

    GET    /_sandbox/faults          the faults that apply to this stand-in
    POST   /_sandbox/faults          add one: {"kind", "path", "method", "status", "delay", "times"}
    DELETE /_sandbox/faults          remove this stand-in's faults
    DELETE /_sandbox/faults/{id}     remove one
    GET    /_sandbox/requests        {"values": [{at, method, path, status, auth, user_agent}]}, oldest first
    DELETE /_sandbox/requests        empty the request log
    GET    /_sandbox/health          {"service": ..., "ok": true}

Every request the stand-in answered (not the admin ones) goes into its ``RequestLog``
(``sandbox.requestlog``: the last 100,000, the auth scheme but never the credential). A stand-in
may serve admin endpoints of its own under ``/_sandbox/`` (``start(..., admin=...)``): the
Heroku stand-in's two-factor switch is one.

A ``merge_timeout`` fault is not answered here: it is handed to the app in the WSGI environ
(``FAULT_ENVIRON_KEY``), which acts on the request and answers 555 itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.faults import APP_FAULTS, Fault, FaultError, Faults
from sandbox.requestlog import RequestLog

log = logging.getLogger("sandbox")

WSGIApp = Callable[..., Iterable[bytes]]
FaultResponder = Callable[[Fault], Response]
# A stand-in's own admin endpoints: the answer to a /_sandbox/... request, or None (not mine).
AdminHandler = Callable[[Request], Response | None]
FAULT_ENVIRON_KEY = "sandbox.fault"


class _DropConnection(ConnectionError):
    """Raised after the socket was shut down on purpose: werkzeug treats it as a dropped client."""


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        log.debug("connection dropped: %s", error)


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object a request body holds ({} for an empty body).

    Raises ValueError saying what is wrong; each stand-in answers it in its own error shape.
    """
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    return body


def _default_fault_response(fault: Fault) -> Response:
    body = {"error": f"fault injected by the sandbox ({fault.kind})"}
    return Response(json.dumps(body), status=fault.status or 503, mimetype="application/json")


class ServiceServer:
    """A stand-in's HTTP server. ``url`` is known from construction on."""

    def __init__(self, service: str, faults: Faults, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.faults = faults
        self._app: WSGIApp | None = None
        self._fault_response: FaultResponder = _default_fault_response
        self._admin_extra: AdminHandler | None = None
        self.requests = RequestLog()
        # Bind first, ourselves: werkzeug exits the process when a port is taken; we raise OSError.
        self._socket = socket.create_server((host, port))
        self._server: BaseWSGIServer = make_server(
            host, port, self._wsgi, threaded=True, request_handler=_QuietHandler, fd=self._socket.fileno()
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(
        self, app: WSGIApp, fault_response: FaultResponder | None = None, admin: AdminHandler | None = None
    ) -> None:
        self._app = app
        if fault_response is not None:
            self._fault_response = fault_response
        self._admin_extra = admin
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{self.service}"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._socket.close()

    # -- WSGI -----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._admin(Request(environ))(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 0
            self.requests.record(
                method, path, code, environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_USER_AGENT")
            )
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        return self._serve(environ, recording_start_response, method, path)

    def _serve(
        self, environ: dict[str, Any], start_response: Callable[..., Any], method: str, path: str
    ) -> Iterable[bytes]:
        fault = self.faults.take(self.service, method, path)
        if fault is not None and fault.kind in APP_FAULTS:  # the app acts on it and answers
            environ[FAULT_ENVIRON_KEY] = fault
        elif fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind in ("drop", "lost"):
                if fault.kind == "lost":  # act on the request, then lose the answer
                    assert self._app is not None, "ServiceServer.start() was not called"
                    for _ in self._app(environ, lambda *args, **kwargs: None):
                        pass
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                raise _DropConnection(f"{fault.kind} by a sandbox fault")
            else:
                return self._fault_response(fault)(environ, start_response)
        assert self._app is not None, "ServiceServer.start() was not called"
        return self._app(environ, start_response)

    def _admin(self, request: Request) -> Response:
        def answer(body: Any, status: int = 200) -> Response:
            return Response(json.dumps(body), status=status, mimetype="application/json")

        parts = request.path.strip("/").split("/")
        if parts == ["_sandbox", "health"]:
            return answer({"service": self.service, "ok": True})
        if parts == ["_sandbox", "requests"]:
            if request.method == "GET":
                return answer({"values": self.requests.values()})
            if request.method == "DELETE":
                self.requests.clear()
                return answer({"cleared": True})
            return answer({"error": f"{request.method} is not allowed on {request.path}"}, 405)
        if self._admin_extra is not None:
            extra = self._admin_extra(request)
            if extra is not None:
                return extra
        if parts[:2] != ["_sandbox", "faults"]:
            return answer({"error": f"no admin endpoint at {request.path}"}, 404)
        if len(parts) == 2 and request.method == "GET":
            return answer([f.to_dict() for f in self.faults.list(self.service)])
        if len(parts) == 2 and request.method == "POST":
            try:
                spec = json.loads(request.get_data() or b"{}")
            except ValueError:
                return answer({"error": "the body is not JSON"}, 400)
            if not isinstance(spec, dict):
                return answer({"error": "the body must be a JSON object"}, 400)
            allowed = {"kind", "path", "method", "status", "delay", "times"}
            unknown = sorted(set(spec) - allowed)
            if unknown:
                return answer({"error": f"unknown field {unknown[0]!r}; fields: {sorted(allowed)}"}, 400)
            if "kind" not in spec:
                return answer({"error": "field 'kind' is required"}, 400)
            try:
                fault = self.faults.add(service=self.service, **spec)
            except (FaultError, TypeError) as exc:
                return answer({"error": str(exc)}, 400)
            return answer(fault.to_dict(), 201)
        if len(parts) == 2 and request.method == "DELETE":
            self.faults.clear(self.service)
            return answer({"cleared": True})
        if len(parts) == 3 and request.method == "DELETE":
            if not parts[2].isdigit() or not self.faults.remove(int(parts[2])):
                return answer({"error": f"no fault {parts[2]}"}, 404)
            return answer({"removed": int(parts[2])})
        return answer({"error": f"{request.method} is not allowed on {request.path}"}, 405)
