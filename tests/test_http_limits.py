"""HTTP limits (issue 13, case 9): a request deadline that closes slow-loris connections
and a connection cap, while other clients keep being served."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from mpox_edge.edge.kiosk.httpapi import ApiServer


class Provider:
    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def status(self) -> dict[str, Any]:
        return {"ok": True}

    def metrics_text(self) -> str:
        return ""

    def latest_jpeg(self) -> bytes | None:
        return None


@pytest.fixture
def server() -> Iterator[tuple[ApiServer, Counter[str]]]:
    counts: Counter[str] = Counter()
    api = ApiServer(Provider(), "127.0.0.1", 0, count=lambda name: counts.update([name]))
    api.httpd.request_deadline_s = 2.0
    api.httpd.max_connections = 8
    api.start()
    yield api, counts
    api.close()


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status


def test_a_slow_loris_is_closed_at_the_deadline(server: tuple[ApiServer, Counter[str]]) -> None:
    api, counts = server
    s = socket.create_connection(("127.0.0.1", api.port))
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    closed_after = None
    s.settimeout(0.5)
    while time.monotonic() - t0 < 8:
        try:
            s.sendall(b"X")  # one header byte every 0.5 s: no single read ever times out
            if s.recv(1) == b"":
                closed_after = time.monotonic() - t0
                break
        except TimeoutError:
            assert _get(api.url + "/healthz") == 200  # everyone else is still served
        except OSError:
            closed_after = time.monotonic() - t0
            break
    s.close()
    assert closed_after is not None and 1.5 < closed_after < 4.0, closed_after
    assert counts["http_timeouts_total"] == 1


def test_connection_cap_bounds_threads_and_others_get_through(
    server: tuple[ApiServer, Counter[str]],
) -> None:
    api, counts = server
    threads0 = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(300)]
    try:
        time.sleep(0.5)
        assert api.httpd.open_connections <= 8
        assert threading.active_count() <= threads0 + 8
        for _ in range(5):  # a real client evicts the idlest connection and is answered
            assert _get(api.url + "/status") == 200
        assert counts["http_refused_total"] >= 292
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    assert api.httpd.open_connections == 0
