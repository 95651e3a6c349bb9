"""MQTT against a real Mosquitto: store-and-forward through outages, health, fleet, commands.

The daemon runs in-process with a fake classifier (fast, no weights) on a synthetic lossless
source, so 10,000 decisions take seconds. Its state lives on /dev/shm where there is one:
the event log fsyncs every record and a disk would make this a minute-long test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_fakes import FakeClassifier, textured
from fleet_servers import Mosquitto
from mpox_edge.edge.errors import ConfigError
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.kiosk.eventlog import read_events
from mpox_edge.edge.kiosk.sources import Frame, Source

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt: pip install 'mpox-edge[fleet]'")


class Synthetic(Source):
    """Frames as fast as the pipeline takes them (lossless: no drops), alternating colour."""

    lossless = True

    def __init__(self) -> None:
        super().__init__("synthetic://", config.SourceConfig())
        self.imgs = [textured(48, 64, red=r, seed=r) for r in (20, 230)]
        self.n = 0

    def read(self) -> Frame | None:
        self.n += 1
        return self._frame(self.imgs[self.n % 2])


@pytest.fixture
def state() -> Iterator[Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base, prefix="mpox-fleet-") as d:
        yield Path(d)


def fleet_cfg(state: Path, port: int, **mqtt: Any) -> config.Config:
    return config.from_dict(
        {
            "state_dir": str(state / "state"),
            "model": {"warmup": 0},
            "http": {"enabled": False},
            "source": {"uri": "usb://0"},
            "events": {"every_frame": True, "max_bytes": 400_000, "backups": 50},
            "mqtt": {
                "enabled": True,
                "port": port,
                "device_id": "door-1",
                "health_interval_s": 0.3,
                **mqtt,
            },
        }
    )


def start_daemon(cfg: config.Config) -> tuple[Daemon, threading.Thread]:
    d = Daemon(
        cfg, classifier_factory=lambda c: FakeClassifier(), source_factory=lambda sc: Synthetic()
    )
    d.start()
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    return d, t


def halt(d: Daemon, t: threading.Thread) -> None:
    d.request_stop()
    t.join(10)
    d.stop()


class Consumer:
    """A persistent-session QoS 1 subscriber, as a fleet back end would run."""

    def __init__(self, port: int, topic: str = "mpox-edge/+/events/#") -> None:
        self.got: list[tuple[str, int]] = []
        self.status: dict[str, Any] = {}
        self.c = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="consumer", clean_session=False
        )
        self.c.on_connect = lambda c, *_: c.subscribe([(topic, 1), ("mpox-edge/+/status", 1)])
        self.c.on_message = self._msg
        self.c.reconnect_delay_set(1, 2)
        self.c.connect_async("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, _c: Any, _u: Any, m: Any) -> None:
        body = json.loads(m.payload)
        if m.topic.endswith("/status"):
            self.status = body
        else:
            self.got.append((body["device"], int(body["seq"])))

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def wait_until(cond: Any, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or cond}")


def test_outages_and_a_restart_lose_nothing(state: Path) -> None:
    broker = Mosquitto(state / "broker").start()
    consumer = Consumer(broker.port)
    time.sleep(0.3)
    cfg = fleet_cfg(state, broker.port)
    seqs: list[int] = []
    missing = lambda: set()  # noqa: E731
    logged = lambda: sum(  # noqa: E731
        1 for e in read_events(cfg.events_path, rotated=True) if e["event"] == "decision"
    )
    try:
        t0 = time.monotonic()
        d, t = start_daemon(cfg)
        for target, action in ((2000, broker.stop), (3500, broker.start)):
            wait_until(lambda n=target: d.telemetry.get("frames_processed_total") >= n)
            action()
            print(f"{action.__name__} at {target} decisions, t={time.monotonic() - t0:.1f} s")
        wait_until(lambda: d.telemetry.get("frames_processed_total") >= 5000)
        halt(d, t)  # daemon restart: the second one resumes from the saved offset
        first = d.telemetry.get("frames_processed_total")
        d, t = start_daemon(cfg)
        for target, action in ((6500, broker.stop), (8000, broker.start)):
            wait_until(lambda n=target: first + d.telemetry.get("frames_processed_total") >= n)
            action()
            print(f"{action.__name__} at {target} decisions, t={time.monotonic() - t0:.1f} s")
        wait_until(lambda: first + d.telemetry.get("frames_processed_total") >= 10_000)
        t_up = time.monotonic()
        assert d.recorder is not None and d.mqtt is not None
        wait_until(lambda: d.mqtt.acked >= d.recorder.log.seq - 50, 60, "the backlog to drain")
        print(f"backlog drained {time.monotonic() - t_up:.1f} s after the last restart")
        halt(d, t)
        seqs = [e["seq"] for e in read_events(cfg.events_path, rotated=True)]
        assert logged() >= 10_000 and seqs == list(range(1, len(seqs) + 1))
        missing = lambda: set(seqs) - {s for _, s in consumer.got}  # noqa: E731
        wait_until(lambda: not missing(), 30, "every event id")
    except AssertionError:
        print("missing:", sorted(missing())[:20], len(missing()), "of", len(seqs))
        print((state / "broker" / "mosquitto.log").read_text()[-3000:])
        raise
    finally:
        consumer.close()
        broker.stop()
    assert {dev for dev, _ in consumer.got} == {"door-1"}
    firsts: list[int] = []
    seen: set[int] = set()
    for _, s in consumer.got:
        if s not in seen:
            seen.add(s)
            firsts.append(s)
    assert firsts == sorted(firsts), "first arrivals must be in log order"
    dup = len(consumer.got) - len(seen)
    assert dup < len(seen) * 0.1, f"{dup} duplicates: the offset is not being kept"


def test_health_availability_and_the_fleet_table(state: Path) -> None:
    broker = Mosquitto(state / "broker").start()
    try:
        cfg = fleet_cfg(state, broker.port)
        d, t = start_daemon(cfg)
        consumer = Consumer(broker.port)
        wait_until(lambda: consumer.status.get("fps", 0) > 0, 20, "a health message")
        st = consumer.status
        assert st["device"] == "door-1" and st["camera"]["state"] == "streaming"
        assert st["decisions_last_hour"] > 0 and st["mqtt"]["connected"]
        consumer.close()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpox_edge.edge.cli",
                "fleet",
                "--broker",
                f"127.0.0.1:{broker.port}",
                "--json",
                "--wait",
                "1.5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        (row,) = json.loads(r.stdout)
        assert row["device"] == "door-1" and row["online"] is True and row["fps"] > 0
        assert row["camera"] == "streaming" and row["decisions_last_hour"] > 0
        halt(d, t)
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpox_edge.edge.cli",
                "fleet",
                "--broker",
                f"127.0.0.1:{broker.port}",
                "--once",
                "--wait",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and "door-1" in r.stdout, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith("door-1"))
        assert line.split()[1] == "NO"  # the retained 'offline' after a clean stop
    finally:
        broker.stop()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mpox_edge.edge.cli",
            "fleet",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "cannot reach the broker" in r.stderr
    assert "Traceback" not in r.stderr


def test_commands_need_tls_and_authentication() -> None:
    with pytest.raises(ConfigError, match="commands = true needs an authenticated TLS"):
        config.from_dict({"mqtt": {"enabled": True, "commands": True}})
    with pytest.raises(ConfigError, match="commands = true needs"):
        config.from_dict({"mqtt": {"commands": True, "tls": True}})  # TLS without auth


def _tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made here with cryptography."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d / "ca.pem", d / "server.pem", d / "server.key"


def tls_broker(state: Path) -> tuple[Mosquitto, dict[str, Any], Any]:
    """A started broker with TLS and password authentication; the device's ``[mqtt]`` keys
    (commands on) and a connected operator client that may publish commands."""
    import shutil

    pytest.importorskip("cryptography")
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (Debian package: mosquitto)")
    d = state / "tls"
    d.mkdir()
    ca, cert, key = _tls_files(d)
    subprocess.run([passwd, "-b", "-c", str(d / "users"), "door-1", "s3cret"], check=True)
    subprocess.run([passwd, "-b", str(d / "users"), "operator", "0p"], check=True)
    (d / "door.pass").write_text("s3cret\n")
    extra = (
        f"allow_anonymous false\npassword_file {d / 'users'}\ncafile {ca}\n"
        f"certfile {cert}\nkeyfile {key}\n"
    )
    broker = Mosquitto(state / "broker", extra=extra).start()
    device = {
        "tls": True,
        "ca_file": str(ca),
        "username": "door-1",
        "password_file": str(d / "door.pass"),
        "commands": True,
    }
    op = paho.Client(paho.CallbackAPIVersion.VERSION2)
    op.tls_set(ca_certs=str(ca))
    op.username_pw_set("operator", "0p")
    op.connect("127.0.0.1", broker.port)
    op.loop_start()
    return broker, device, op


def test_reload_command_over_authenticated_tls(state: Path) -> None:
    broker, device, op = tls_broker(state)
    try:
        cfg = fleet_cfg(state, broker.port, **device)
        dmn = Daemon(
            cfg,
            classifier_factory=lambda c: FakeClassifier(),
            source_factory=lambda sc: Synthetic(),
            reload_config=lambda: cfg,
        )
        dmn.start()
        t = threading.Thread(target=dmn.run, daemon=True)
        t.start()
        wait_until(lambda: dmn.mqtt.listening, 20, "a TLS connection taking commands")
        op.publish("mpox-edge/door-1/set/reload", b"", qos=1).wait_for_publish(10)
        wait_until(
            lambda: any(
                e["event"] == "reload" and e.get("ok")
                for e in read_events(cfg.events_path, rotated=True)
            ),
            20,
            "the reload the command asked for",
        )
        halt(dmn, t)
    finally:
        op.loop_stop()
        op.disconnect()
        broker.stop()


def test_mqtt_threads_run_below_the_frame_loop(state: Path) -> None:
    """The publisher and paho's network thread run 10 nice levels below the frame loop:
    fleet telemetry must not take a core from the model's inference."""
    import os

    from mpox_edge.edge.kiosk.mqtt import BACKGROUND_NICE

    broker = Mosquitto(state / "broker").start()
    try:
        d, t = start_daemon(fleet_cfg(state, broker.port))
        assert d.mqtt is not None
        wait_until(lambda: d.mqtt.connected and d.mqtt.published > 0, 20, "a publish")
        base = os.getpriority(os.PRIO_PROCESS, 0)
        nice = lambda th: os.getpriority(os.PRIO_PROCESS, th.native_id)  # noqa: E731
        assert nice(t) == base
        want = min(19, base + BACKGROUND_NICE)
        assert nice(d.mqtt._thread) == nice(d.mqtt.client._thread) == want
        halt(d, t)
    finally:
        broker.stop()
