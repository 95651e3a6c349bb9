"""Signed rollout: refusals leave the store alone; a running daemon swaps or rolls back.

Bundles are made from the tiny exported model (random weights) and a few photos of the
bundled held-out sample; the daemon runs in-process with the real Classifier.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from edge_fakes import textured
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.kiosk.eventlog import read_events
from mpox_edge.edge.kiosk.sources import Frame, Source
from mpox_edge.edge.model.bundle import keygen, pack, write_tar
from mpox_edge.edge.model.classifier import default_data_dir
from mpox_edge.edge.model.store import Store

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def kit(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("kit")
    pub = keygen(d / "key")
    other = keygen(d / "other")
    mk = lambda name, **kw: pack(  # noqa: E731
        tiny_model_dir,
        kw.pop("key", d / "key"),
        d / name,
        sample=default_data_dir(),
        per_class=2,
        **kw,
    )
    return {
        "dir": d,
        "pub": pub,
        "other": other,
        "v1": mk("v1.bundle", label="one"),
        "v2": mk("v2.bundle", label="two"),
        "stranger": mk("s.bundle", key=d / "other"),
    }


def members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def resign(kit: dict[str, Any], out: Path, edit: Any) -> Path:
    """A bundle whose manifest was edited and then properly signed with the trusted key."""
    from cryptography.hazmat.primitives import serialization

    m = members(Path(kit["v1"]["bundle"]))
    data = json.loads(m["manifest.json"])
    edit(data)
    mbytes = json.dumps(data).encode()
    sk = serialization.load_pem_private_key((kit["dir"] / "key").read_bytes(), None)
    sig = json.loads(m["signature.json"])
    sig["signature"] = base64.b64encode(sk.sign(mbytes)).decode()  # type: ignore[union-attr]
    write_tar(out, {**m, "manifest.json": mbytes, "signature.json": json.dumps(sig).encode()})
    return out


def cli(state: Path, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mpox_edge.edge.cli",
            "model",
            "--config",
            str(cfg),
            "--state-dir",
            str(state),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_every_refusal_is_one_line_and_changes_nothing(kit: dict[str, Any], tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[models]\ntrusted_keys = ["{kit["pub"]}"]\n')
    r = cli(state, cfg, "install", kit["v1"]["bundle"], "--activate")
    assert r.returncode == 0 and "installed" in r.stdout, r.stderr
    before = tree(state / "models")
    good = members(Path(kit["v1"]["bundle"]))
    d = tmp_path
    sig = json.loads(good["signature.json"])
    sig["signature"] = base64.b64encode(b"\0" * 64).decode()
    onnx = next(k for k in good if k.endswith(".onnx"))

    def tar_with(name: str, add: Any) -> Path:
        out = d / name
        with tarfile.open(out, "w:gz") as t:
            for k, v in good.items():
                ti = tarfile.TarInfo(k)
                ti.size = len(v)
                t.addfile(ti, io.BytesIO(v))
            add(t)
        return out

    def link(t: tarfile.TarFile) -> None:
        ti = tarfile.TarInfo("sample/evil.jpg")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(ti)

    def member(name: str) -> Any:
        def add(t: tarfile.TarFile) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = 1
            t.addfile(ti, io.BytesIO(b"x"))

        return add

    cases = {
        "bad signature": (
            write_tar(d / "badsig", {**good, "signature.json": json.dumps(sig).encode()})
            or d / "badsig",
            "bad signature",
        ),
        "unknown key": (Path(kit["stranger"]["bundle"]), "unknown key"),
        "tampered artifact": (
            write_tar(d / "tamper", {**good, onnx: good[onnx][:-1] + b"!"}) or d / "tamper",
            f"{onnx} does not match its signed sha256",
        ),
        "dot-dot path": (tar_with("dotdot", member("../../evil")), "escapes the bundle"),
        "absolute path": (tar_with("abs", member("/tmp/evil")), "absolute path"),
        "symlink": (tar_with("link", link), "is a link"),
        "incompatible manifest": (
            resign(kit, d / "newer", lambda m: m.update(schema_version=99)),
            "incompatible manifest",
        ),
        "unlisted file": (
            write_tar(d / "extra", {**good, "extra.bin": b"x"}) or d / "extra",
            "not in the signed manifest",
        ),
    }
    for what, (bundle, needle) in cases.items():
        r = cli(state, cfg, "install", str(bundle))
        assert r.returncode == 2, (what, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, (what, r.stderr)
        assert "Traceback" not in r.stderr
        assert tree(state / "models") == before, f"{what} changed the store"
    r = cli(state, cfg, "install", kit["v1"]["bundle"])
    assert r.returncode == 0 and "already installed" in r.stdout
    assert tree(state / "models") == before  # never overwritten


def test_store_keeps_two_and_rolls_back(kit: dict[str, Any], tmp_path: Path) -> None:
    s = Store(tmp_path / "models", [kit["pub"]])
    v1, v2 = s.install(kit["v1"]["bundle"]), s.install(kit["v2"]["bundle"])
    s.activate(v1)
    s.activate(v2)
    assert s.current().name == v2 and s.rollback() == v1 and s.current().name == v1  # type: ignore[union-attr]
    v3 = s.install(resign(kit, tmp_path / "v3", lambda m: m["bundle"].update(label="three")))
    s.activate(v3)
    assert {v["version"] for v in s.versions()} == {v3, v1}  # current + previous; v2 pruned


class Camera(Source):
    """30 frames per second, like a camera: the one-slot buffer drops what waits."""

    def __init__(self) -> None:
        super().__init__("usb://0", config.SourceConfig())
        self.img = textured(240, 320, red=150)

    def read(self) -> Frame | None:
        time.sleep(1 / 30)
        return self._frame(self.img)


def test_hot_swap_serves_throughout_and_a_failed_check_rolls_back(
    kit: dict[str, Any], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    s = Store(state / "models", [kit["pub"]])
    v1, v2 = s.install(kit["v1"]["bundle"]), s.install(kit["v2"]["bundle"])
    bad = s.install(
        resign(
            kit,
            tmp_path / "bad",
            lambda m: m["bundle"]["sample"].update(correct=8, accuracy=1.0, tolerance=0.0),
        )
    )
    s.activate(v1)
    cfg = config.from_dict(
        {
            "state_dir": str(state),
            "http": {"port": 0},
            "model": {"backend": "onnxruntime", "warmup": 1},
            "models": {"trusted_keys": [kit["pub"]]},
        }
    )
    d = Daemon(cfg, source_factory=lambda sc: Camera(), reload_config=lambda: cfg)
    d.start()
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        assert d.rollout.serving() == v1
        time.sleep(1.0)
        tel = d.telemetry
        before = {k: tel.get(k) for k in ("frames_captured_total", "frames_dropped_total")}
        s.activate(v2)
        d.request_reload()  # what SIGHUP does
        end = time.monotonic() + 60
        while d.rollout.state.get("state") != "serving" and time.monotonic() < end:
            time.sleep(0.02)
        assert d.rollout.state["state"] == "serving" and d.rollout.serving() == v2
        cap = tel.get("frames_captured_total") - before["frames_captured_total"]
        drops = tel.get("frames_dropped_total") - before["frames_dropped_total"]
        assert tel.get("frames_failed_total") == 0
        assert drops <= max(1, cap // 20), f"{drops} of {cap} frames dropped during the swap"
        s.activate(bad)
        d.request_reload()
        end = time.monotonic() + 60
        while d.rollout.state.get("state") != "failed" and time.monotonic() < end:
            time.sleep(0.02)
        st = d.rollout.state
        assert st["state"] == "failed" and "health check failed" in st["error"]
        assert "below the recorded 8/8" in st["error"]
        assert d.rollout.serving() == v2 and s.current().name == v2  # type: ignore[union-attr]
        from urllib.request import urlopen

        with urlopen(d.http.url + "/status", timeout=5) as r:  # type: ignore[union-attr]
            status = json.loads(r.read())
        assert status["rollout"]["state"] == "failed" and status["model_version"] == v2
    finally:
        d.request_stop()
        t.join(5)
        d.stop()
    evs = [e for e in read_events(cfg.events_path) if e["event"] == "model"]
    assert [e["ok"] for e in evs] == [True, False] and evs[0]["swap_ms"] > 0


def test_set_model_over_mqtt_swaps_rolls_back_and_refuses(
    kit: dict[str, Any], tmp_path: Path
) -> None:
    """The operator's ``set/model`` on an authenticated TLS connection to a real Mosquitto:
    a version prefix swaps, ``rollback`` goes back, a malformed or unknown request is refused
    while the old model keeps serving, and each outcome reaches MQTT as ``events/model``."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt: pip install 'mpox-edge[fleet]'")
    from test_fleet_mqtt import tls_broker, wait_until

    state = tmp_path / "state"
    s = Store(state / "models", [kit["pub"]])
    v1, v2 = s.install(kit["v1"]["bundle"]), s.install(kit["v2"]["bundle"])
    s.activate(v1)
    broker, device, op = tls_broker(tmp_path)
    seen: list[dict[str, Any]] = []
    op.on_message = lambda _c, _u, m: seen.append(json.loads(m.payload))
    op.subscribe("mpox-edge/door-1/events/model", qos=1)
    cfg = config.from_dict(
        {
            "state_dir": str(state),
            "http": {"enabled": False},
            "model": {"backend": "onnxruntime", "warmup": 1},
            "models": {"trusted_keys": [kit["pub"]]},
            "mqtt": {"enabled": True, "port": broker.port, "device_id": "door-1", **device},
        }
    )
    d = Daemon(cfg, source_factory=lambda sc: Camera(), reload_config=lambda: cfg)
    d.start()
    t = threading.Thread(target=d.run, daemon=True)
    t.start()

    def command(payload: bytes) -> dict[str, Any]:
        n = len(seen)
        op.publish("mpox-edge/door-1/set/model", payload, qos=1).wait_for_publish(10)
        wait_until(lambda: len(seen) > n and not d.rollout._busy.locked(), 60, "events/model")
        return seen[-1]

    try:
        wait_until(lambda: d.mqtt is not None and d.mqtt.listening, 20, "taking commands")
        assert d.rollout.serving() == v1
        ev = command(json.dumps({"version": v2[:12]}).encode())
        assert ev["ok"] and ev["version"] == v2 and d.rollout.serving() == v2
        ev = command(json.dumps({"action": "rollback"}).encode())
        assert ev["ok"] and ev["version"] == v1 and d.rollout.serving() == v1
        ev = command(b"not json")
        assert not ev["ok"] and "set/model wants" in ev["error"] and ev["serving"] == v1
        ev = command(json.dumps({"version": "f" * 12}).encode())
        assert not ev["ok"] and ev["serving"] == v1 and ev["error"]
        assert d.rollout.serving() == v1 and s.current().name == v1  # type: ignore[union-attr]
        assert d.telemetry.get("frames_failed_total") == 0
    finally:
        d.request_stop()
        t.join(5)
        d.stop()
        op.loop_stop()
        op.disconnect()
        broker.stop()
    logged = [e["ok"] for e in read_events(cfg.events_path) if e["event"] == "model"]
    assert logged == [True, True, False, False]


def test_install_from_a_url(kit: dict[str, Any], tmp_path: Path) -> None:
    """``model install http://...`` from a real HTTP server on loopback: installed as from a
    file; a missing URL or an oversized download is one line, and nothing stays behind."""
    import functools
    import http.server

    from mpox_edge.edge.errors import UsageError
    from mpox_edge.edge.model.storecli import _fetch

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(kit["dir"]))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    state, cfg = tmp_path / "state", tmp_path / "c.toml"
    cfg.write_text(f'[models]\ntrusted_keys = ["{kit["pub"]}"]\n')
    try:
        r = cli(state, cfg, "install", f"{base}/v1.bundle", "--activate")
        assert r.returncode == 0 and "installed" in r.stdout and "now current" in r.stdout, r.stderr
        r2 = cli(state, cfg, "list")
        assert r2.returncode == 0 and kit["v1"]["version"][:12] in r2.stdout, r2.stdout
        before = tree(state / "models")
        r = cli(state, cfg, "install", f"{base}/missing.bundle")
        assert r.returncode == 2 and "cannot download" in r.stderr and "404" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        with pytest.raises(UsageError, match="larger than 1000 bytes"):
            _fetch(f"{base}/v2.bundle", state / "models", limit=1000)
        assert tree(state / "models") == before  # no partial download left
    finally:
        srv.shutdown()
        srv.server_close()
