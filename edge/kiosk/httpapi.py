"""The daemon's small HTTP API on the standard library's ThreadingHTTPServer.

``/healthz`` (liveness of the frame loop), ``/status`` (JSON), ``/metrics`` (Prometheus text)
and ``/latest.jpg``. Bound to 127.0.0.1 unless configured otherwise; the config refuses a
non-loopback bind without a token, and when a token is set every endpoint but ``/healthz``
wants ``Authorization: Bearer <token>`` (or HTTP Basic with the token as password, which a
browser can send) compared in constant time. Requests never touch the frame loop: they read
snapshots the daemon keeps. Extra routes (the kiosk page, edge/kiosk/webui.py) plug in as a
``Routes`` object; a route that holds its connection open (SSE, MJPEG) sets
``handler.streaming = True`` first, so connection-level deadlines can leave it alone.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger("mpox_edge.http")


class NotReady(Exception):
    """Asked for something the daemon has not produced yet: 503 with Retry-After."""


class Provider(Protocol):
    def health(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...

    def metrics_text(self) -> str: ...

    def latest_jpeg(self) -> bytes | None:
        """The newest frame; None when [http] latest_jpg is off; NotReady before a frame."""
        ...


class Routes(Protocol):
    def handle(self, handler: Any, path: str, query: str) -> bool:
        """Serve ``path`` if it is one of ours (True), else leave it alone (False)."""
        ...


class _Conn:
    __slots__ = ("deadline", "reading", "since")

    def __init__(self, deadline: float | None) -> None:
        self.since = time.monotonic()
        self.deadline = deadline
        self.reading = True  # still receiving the request: may be evicted at the cap


class _Server(ThreadingHTTPServer):
    """Limits at the connection layer, under every route (issue 13).

    A request must arrive and be answered within ``request_deadline_s`` (a slow-loris
    client that trickles a header byte every few seconds never trips the per-read
    timeout, so a reaper thread shuts such sockets down), and at most ``max_connections``
    are open at once: at the cap the oldest connection still sending its request is
    dropped for the new one, so idle or trickling clients cannot lock others out; if all
    are busy answering, the new one gets a 503. Long responses (a stream) lift their own
    deadline with ``_Handler.lift_deadline()``.
    """

    daemon_threads = True  # a slow client never holds up shutdown
    allow_reuse_address = True
    request_queue_size = 16
    max_connections = 32
    request_deadline_s = 15.0
    provider: Provider
    token: str
    routes: Routes | None = None

    def __init__(
        self,
        addr: tuple[str, int],
        handler: type,
        ipv6: bool,
        count: Callable[[str], None] | None = None,
    ) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)
        self.count = count or (lambda _name: None)
        self._conns: dict[socket.socket, _Conn] = {}
        self._lock = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        victim = None
        with self._lock:
            if len(self._conns) >= self.max_connections:
                slow = [(c.since, s) for s, c in self._conns.items() if c.reading]
                if not slow:
                    self.count("http_refused_total")
                    _refuse(request)
                    return False
                victim = min(slow, key=lambda t: t[0])[1]
                del self._conns[victim]
            self._conns[request] = _Conn(time.monotonic() + self.request_deadline_s)
        if victim is not None:
            self.count("http_refused_total")
            _shut(victim)
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._conns.pop(request, None)

    def mark(self, sock: Any, *, reading: bool, deadline: float | None = -1.0) -> None:
        with self._lock:
            c = self._conns.get(sock)
            if c is not None:
                c.reading = reading
                if deadline is None or deadline >= 0:
                    c.deadline = deadline

    def reap(self) -> None:
        """Shut down every connection past its deadline (called by the reaper thread)."""
        now = time.monotonic()
        with self._lock:
            late = [
                s for s, c in self._conns.items() if c.deadline is not None and now > c.deadline
            ]
            for s in late:
                self._conns[s].deadline = None
        for s in late:
            self.count("http_timeouts_total")
            _shut(s)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the handler's blocking read returns at once
    except OSError:
        pass


def _refuse(sock: Any) -> None:
    try:
        sock.setblocking(False)
        sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mpox-edge"
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stops talking frees its thread
    _streaming = False

    @property
    def streaming(self) -> bool:
        """True once a route holds the connection open (SSE, MJPEG): no overall deadline."""
        return self._streaming

    @streaming.setter
    def streaming(self, value: bool) -> None:
        self._streaming = value
        if value:
            self.lift_deadline()

    def handle_one_request(self) -> None:
        deadline = time.monotonic() + self.server.request_deadline_s
        self.server.mark(self.connection, reading=True, deadline=deadline)
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.mark(self.connection, reading=False)  # headers in: now answering
        return ok

    def lift_deadline(self) -> None:
        """For a long-lived response (a stream): no overall deadline, per-write timeouts only."""
        self.server.mark(self.connection, reading=False, deadline=None)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(
        self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        token = self.server.token
        if not token:
            return True
        got = self.headers.get("Authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() == "basic":  # a browser's login prompt: any user name, token as password
            try:
                value = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), token.encode())

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        p = self.server.provider
        try:
            if path == "/healthz":
                ok, text = p.health()
                self._send(200 if ok else 503, (text + "\n").encode(), "text/plain")
                return
            routes = self.server.routes
            if routes is not None and routes.handle(self, path, query):
                return
            if path not in ("/status", "/metrics", "/latest.jpg"):
                self._send(
                    404, b"not found: try /healthz /status /metrics /latest.jpg\n", "text/plain"
                )
                return
            if not self._authorized():
                self._send(
                    401,
                    b"unauthorized\n",
                    "text/plain",
                    {"WWW-Authenticate": 'Bearer realm="mpox-edge"'},
                )
                return
            if path == "/status":
                body = json.dumps(p.status(), indent=1, default=str, allow_nan=False)
                self._send(200, body.encode(), "application/json")
            elif path == "/metrics":
                self._send(200, p.metrics_text().encode(), "text/plain; version=0.0.4")
            else:
                try:
                    jpg = p.latest_jpeg()
                except NotReady as e:
                    self._send(503, f"{e}\n".encode(), "text/plain", {"Retry-After": "2"})
                    return
                if jpg is None:
                    self._send(
                        404, b"/latest.jpg is off ([http] latest_jpg = false)\n", "text/plain"
                    )
                else:
                    self._send(200, jpg, "image/jpeg")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - one bad request must not take the API down
            log.exception("error serving %s", path)
            try:
                self._send(500, b"internal error\n", "text/plain")
            except OSError:
                pass


class ApiServer:
    """Runs the server in a daemon thread; ``close()`` returns within about 0.2 s."""

    def __init__(
        self,
        provider: Provider,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str = "",
        routes: Routes | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.httpd = _Server((host, port), _Handler, ipv6=":" in host, count=count)
        self.httpd.provider = provider
        self.httpd.token = token
        self.httpd.routes = routes
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )
        self._closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="http-reaper", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ApiServer:
        self._thread.start()
        self._reaper.start()
        return self

    def _reap(self) -> None:
        while not self._closed.wait(0.25):
            self.httpd.reap()

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
