"""A small HTTP server that hosts one emulated vendor API on a free loopback port.

Each vendor module provides a ``VendorApp`` (routes, auth, data); ``SandboxServer``
serves it in a background thread, records every request, and can be told to
misbehave (``faults``) so tests can check how the taps cope.
"""

from __future__ import annotations

import base64
import re
import socket
import sys
import threading
import time
import typing as t
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

Body = t.Union[bytes, t.Iterable[bytes]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: t.Mapping[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def json(self) -> t.Any:
        return orjson.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password

    def bearer(self) -> str | None:
        header = self.headers.get("Authorization", "")
        return header[7:] if header.startswith("Bearer ") else None


@dataclass
class Response:
    status: int = 200
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: t.Any, status: int = 200, headers: dict | None = None) -> Response:
        return cls(
            status,
            orjson.dumps(payload),
            {"Content-Type": "application/json", **(headers or {})},
        )


Handler = t.Callable[..., Response]
#: Rewrites the normal answer to a request; None when it does not apply to this one.
Transform = t.Callable[[Request, Response], t.Optional[Response]]


@dataclass
class Fault:
    """What the next ``times`` requests matching ``path`` (a regex) get instead.

    ``kind``: ``respond`` (the given status/body/headers), ``delay`` (sleep
    ``seconds`` before the normal answer), ``reset`` (send half the normal body,
    then drop the connection), ``truncate`` (send the normal body cut at
    ``fraction`` with a correct-looking end), ``slow`` (send the first ``fraction``
    of the body, stall ``seconds``, then the rest), ``drop`` (close the connection
    without answering, as an unreachable host would), ``transform`` (the normal answer
    rewritten by ``transform``; a request it does not apply to is answered normally
    and does not use up the fault). The first ``skip`` matching requests are answered
    normally; ``applied`` counts the requests the fault changed.
    """

    path: str
    kind: str = "respond"
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    method: str | None = None
    seconds: float = 0.0
    fraction: float = 0.5
    skip: int = 0
    transform: Transform | None = None
    applied: int = 0

    def matches(self, request: Request) -> bool:
        return (self.method is None or self.method == request.method) and bool(
            re.search(self.path, request.path)
        )


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    authorization: str | None
    at: float


class VendorApp:
    """Routes of one emulated API. Subclasses call ``route`` in ``__init__``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.server: SandboxServer | None = None
        #: Servers this app started (a storage host): stopped when its own server stops.
        self.companions: list[SandboxServer] = []

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def authenticate(self, request: Request) -> Response | None:
        """None when the request may proceed, else the error response."""
        return None

    def before(self, request: Request) -> Response | None:
        """Hook for limits applied to every request (rate limits)."""
        return None

    def after(self, request: Request, response: Response) -> Response:
        return response

    def not_found(self, request: Request) -> Response:
        return Response.json({"error": f"no route for {request.method} {request.path}"}, 404)

    def error_envelope(self, message: str, status: int) -> bytes:
        """The body this API wraps an error in (used by ``isv_sandbox.faults``)."""
        return orjson.dumps({"error": message})

    def dispatch(self, request: Request) -> Response:
        limited = self.before(request)
        if limited is not None:
            return limited
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                if getattr(handler, "public", False) is False:
                    denied = self.authenticate(request)
                    if denied is not None:
                        return denied
                return self.after(request, handler(request, **match.groupdict()))
        return self.not_found(request)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.url


def public(handler: Handler) -> Handler:
    """Mark a route that needs no credentials (token endpoint, presigned URLs)."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


class SandboxServer:
    """Serves one ``VendorApp`` at ``http://<host>:<free port>`` in a daemon thread."""

    def __init__(self, app: VendorApp, host: str = "127.0.0.1", port: int = 0,
                 url_prefix: str = "") -> None:
        self.app = app
        app.server = self
        self.vendor = ""  # set by isv_sandbox.start
        self.url_prefix = url_prefix.rstrip("/")
        self.faults: list[Fault] = []
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.url_prefix

    def start(self) -> SandboxServer:
        # A short poll interval: stop() waits for the loop to notice, up to this long.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        for companion in self.app.companions:
            companion.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_fault(self, path: str, **kwargs: t.Any) -> Fault:
        fault = Fault(path=path, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(request):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    fault.applied += 1
                    return fault
        return None

    def give_back(self, fault: Fault) -> None:
        """A fault that did not apply to the request it was taken for."""
        with self._lock:
            fault.times += 1
            fault.applied -= 1

    def log(self, request: Request, status: int) -> None:
        with self._lock:
            self.requests.append(
                LoggedRequest(request.method, request.path, request.query, status,
                              request.headers.get("Authorization"), time.monotonic())
            )

    def count(self, path_regex: str = "", status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for r in self.requests
                if re.search(path_regex, r.path) and (status is None or r.status == status)
            )


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (a timeout, a fault test) is normal here, not a traceback
    on the test process's stderr."""

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _make_handler(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK
        # add ~40 ms to every response on loopback.
        disable_nagle_algorithm = True

        def log_message(self, *args: t.Any) -> None:  # quiet
            return

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            if server.url_prefix and path.startswith(server.url_prefix):
                path = path[len(server.url_prefix):] or "/"
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, path, parse_qs(parts.query, keep_blank_values=True),
                              self.headers, body)
            fault = server.take_fault(request)
            if fault is not None and fault.kind == "drop":
                server.log(request, 0)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None and fault.kind == "respond":
                response = Response(fault.status, fault.body, dict(fault.headers))
            else:
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                try:
                    response = server.app.dispatch(request)
                except Exception as exc:  # noqa: BLE001  (a sandbox bug must show)
                    response = Response.json({"error": f"sandbox error: {exc!r}"}, 500)
                if fault is not None and fault.kind == "transform":
                    assert fault.transform is not None
                    changed = fault.transform(request, response)
                    if changed is None:
                        server.give_back(fault)
                        fault = None
                    else:
                        response = changed
            server.log(request, response.status)
            self._send(response, fault)

        def _send(self, response: Response, fault: Fault | None) -> None:
            body = response.body
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if fault is not None and fault.kind in ("reset", "truncate", "slow"):
                data = body if isinstance(body, bytes) else b"".join(body)
                cut = data[: int(len(data) * fault.fraction)]
                if fault.kind == "slow":
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    try:
                        self.wfile.write(cut)
                        self.wfile.flush()
                        time.sleep(fault.seconds)
                        self.wfile.write(data[len(cut):])
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                    return
                if fault.kind == "reset":
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(cut)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                body = cut
            if isinstance(body, bytes):
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in body:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return _Handler


class TokenBucket:
    """Server-side request metering: ``capacity`` tokens, refilled at ``rate``/s."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False

    def refund(self) -> None:
        """Give back the token of a request the vendor does not charge after all."""
        with self._lock:
            self.tokens = min(self.capacity, self.tokens + 1)

    @property
    def remaining(self) -> int:
        return int(self.tokens)
