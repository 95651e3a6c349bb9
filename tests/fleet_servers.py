"""Real Mosquitto and Prometheus for the fleet tests, on free loopback ports.

Both come from Debian packages (``.ci/apt.d/h15.txt``); without the binary a test skips and
says which package to install. Each server runs in its own temporary directory and is
stopped by the fixture; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class Mosquitto:
    """A broker with persistence (its queued QoS 1 messages survive a restart)."""

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None) -> None:
        if not Path(MOSQUITTO).is_file():
            pytest.skip("mosquitto is not installed (Debian package: mosquitto)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # as root mosquitto drops to user 'mosquitto', which cannot write a 0700 temp dir
            f"user {getpass.getuser()}\n"
            + (extra or "allow_anonymous true\n")
            + f"persistence true\npersistence_location {self.dir}/\n"
            "max_queued_messages 1000000\nmax_inflight_messages 100\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file on the way out."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class Prometheus:
    def __init__(self, workdir: Path, target: str, interval_ms: int = 500) -> None:
        if not Path(PROMETHEUS).is_file():
            pytest.skip("prometheus is not installed (Debian package: prometheus)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(
            f"global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {interval_ms}ms\n"
            "scrape_configs:\n  - job_name: mpox-edge\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "prometheus.log", "wb"),  # noqa: SIM115
        )
        wait_port(self.port, 30)
        end = time.monotonic() + 30
        while time.monotonic() < end:  # the port opens before the TSDB is ready
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)

    def query(self, expr: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
