"""The systemd notify protocol in a few lines of standard library (no python-systemd needed).

A datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace); nothing
happens when the variable is unset, so the daemon runs the same in a terminal. A failed send
is logged, never raised: losing a status line must not take the kiosk down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

log = logging.getLogger("mpox_edge.sdnotify")


def _address(env: Mapping[str, str]) -> str | None:
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return None
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one state string (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``); False if not sent."""
    addr = _address(os.environ if env is None else env)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)  # a receiver that stops reading must never stall the frame loop
            s.connect(addr)
            s.send(state.encode("utf-8"))
        return True
    except OSError as e:
        log.warning("sd_notify %r failed: %s", state.split("=", 1)[0], e)
        return False


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (a third of WatchdogSec), or None without a watchdog."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0") or 0)
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 3e6


class Notifier:
    """The daemon's side of the protocol, with WATCHDOG=1 rate-limited to the interval."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.interval = watchdog_interval(self.env)
        self._last_ping = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return _address(self.env) is not None

    def send(self, state: str) -> bool:
        return notify(state, self.env)

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self, *, force: bool = False) -> bool:
        """Called from the frame loop each iteration; pings only once per interval."""
        if self.interval is None:
            return False
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_ping < self.interval:
                return False
            self._last_ping = now
        return self.send("WATCHDOG=1")

    @contextmanager
    def keepalive(self) -> Iterator[None]:
        """Ping from a helper thread while the main thread loads or measures a model.

        The frame loop is not running yet, and backend selection on a Pi can outlast
        WatchdogSec; TimeoutStartSec still bounds a start that never finishes.
        """
        if self.interval is None:
            yield
            return
        done = threading.Event()

        def tick() -> None:
            while not done.wait(self.interval):
                self.watchdog(force=True)

        t = threading.Thread(target=tick, name="sd-keepalive", daemon=True)
        t.start()
        try:
            yield
        finally:
            done.set()
            t.join(timeout=1.0)
