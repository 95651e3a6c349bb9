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


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never holds up shutdown
    allow_reuse_address = True
    request_queue_size = 16
    provider: Provider
    token: str
    routes: Routes | None = None

    def __init__(self, addr: tuple[str, int], handler: type, ipv6: bool) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mpox-edge"
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stops talking frees its thread
    streaming = False  # True once a route holds the connection open (SSE, MJPEG)

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
    ) -> None:
        self.httpd = _Server((host, port), _Handler, ipv6=":" in host)
        self.httpd.provider = provider
        self.httpd.token = token
        self.httpd.routes = routes
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
