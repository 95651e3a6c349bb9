"""sd_notify against a real AF_UNIX datagram socket, and the daemon's READY/WATCHDOG order."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_fakes import FakeClassifier, make_video
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.kiosk.sdnotify import Notifier, notify, watchdog_interval


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield s, path
    s.close()


def _drain(s: socket.socket, timeout: float = 0.05) -> list[str]:
    s.settimeout(timeout)
    out = []
    try:
        while True:
            out.append(s.recv(4096).decode())
    except (TimeoutError, BlockingIOError):
        return out


def test_noop_without_socket() -> None:
    assert notify("READY=1", env={}) is False
    assert Notifier(env={}).ready() is False and Notifier(env={}).watchdog() is False


def test_datagrams_arrive(sock: tuple[socket.socket, str]) -> None:
    s, path = sock
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.ready("model loaded") and n.status("camera unavailable") and n.stopping()
    assert s.recv(4096) == b"READY=1\nSTATUS=model loaded"
    assert s.recv(4096) == b"STATUS=camera unavailable"
    assert s.recv(4096) == b"STOPPING=1"
    assert n.reloading() and s.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")


def test_abstract_namespace_socket() -> None:
    name = f"mpox-edge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        assert notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
        assert s.recv(64) == b"READY=1"


def test_dead_socket_is_logged_not_raised(tmp_path: Path) -> None:
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "nobody")}) is False


def test_watchdog_interval_and_rate_limit(sock: tuple[socket.socket, str]) -> None:
    s, path = sock
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == pytest.approx(1.0)
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier(env=env)
    sent = sum(n.watchdog() for _ in range(1000))  # a tight frame loop
    assert sent == 1 and _drain(s) == ["WATCHDOG=1"]
    with n.keepalive():
        time.sleep(0.35)
    assert _drain(s).count("WATCHDOG=1") >= 2


def test_full_receiver_queue_does_not_block(sock: tuple[socket.socket, str]) -> None:
    _, path = sock
    t0 = time.monotonic()
    results = [notify("WATCHDOG=1", env={"NOTIFY_SOCKET": path}) for _ in range(300)]
    assert time.monotonic() - t0 < 2 and results[0] and not results[-1]  # dropped, not stuck


def test_daemon_ready_only_after_warmup_then_watchdog(
    sock: tuple[socket.socket, str], tmp_path: Path
) -> None:
    s, path = sock
    clip = make_video(tmp_path / "clip.avi", frames=10)
    cfg = config.from_dict(
        {
            "state_dir": str(tmp_path / "state"),
            "http": {"enabled": False},
            "model": {"warmup": 3},
            "source": {"uri": f"file://{clip}", "loop": True},
        }
    )
    msgs: list[str] = []

    class Checking(FakeClassifier):
        def predict(self, frame, **kw):  # type: ignore[no-untyped-def]
            if self.calls < 3:  # still warming up: systemd must not have READY=1 yet
                msgs.extend(_drain(s, 0.001))
                assert not any(m.startswith("READY=1") for m in msgs)
            return super().predict(frame, **kw)

    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"}
    d = Daemon(cfg, classifier_factory=lambda c: Checking(), notifier=Notifier(env=env))
    d.start()
    assert d.classifier.calls == 3
    done = threading.Event()
    t = threading.Thread(target=lambda: (d.run(), done.set()))
    t.start()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        msgs.extend(_drain(s, 0.02))
    d.request_stop()
    t.join(3)
    d.stop()
    msgs.extend(_drain(s, 0.2))
    ready = next(i for i, m in enumerate(msgs) if m.startswith("READY=1"))
    assert msgs[0] == "STATUS=loading model"
    assert msgs[ready + 1 :].count("WATCHDOG=1") >= 3  # from the frame loop, after READY
    assert msgs[-1] == "STOPPING=1" and done.is_set()
