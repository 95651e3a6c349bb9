"""The kiosk page's server side without a browser: strings, hints, SSE, MJPEG, access, privacy.

In-process daemons with the fake classifier (fast); the real browser against the real model
is tests/test_kiosk_page.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edge_fakes import FakeClassifier, make_images, make_video
from mpox_edge.edge.errors import ConfigError
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.config import WEB_DIR, DecisionConfig, ui_languages
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.kiosk.eventlog import read_events
from mpox_edge.edge.kiosk.pipeline import assess_quality
from mpox_edge.edge.kiosk.privacy import FaceBlur
from mpox_edge.edge.kiosk.webui import CSP, MAX_CLIENTS, basic_auth, load_strings, retake_hint

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "edge" / "data" / "heldout"
CARDS = ("waiting", "retake", "refer", "clear", "unsure")
HINTS = ("hold_still", "move_closer", "more_light", "less_light", "even_light", "generic")


# -- strings and hints --------------------------------------------------------------------------
def test_every_language_has_every_string() -> None:
    assert ui_languages() == ["en", "fr", "pt"]
    raw = {
        lang: json.loads((WEB_DIR / "i18n" / f"{lang}.json").read_text())
        for lang in ["en", "fr", "pt"]
    }
    keys = set(raw["en"])
    for lang, strings in raw.items():
        assert set(strings) == keys, (lang, set(strings) ^ keys)
        assert all(isinstance(v, str) and v.strip() for v in strings.values()), lang
    assert raw["fr"]["refer.title"] != raw["en"]["refer.title"] != raw["pt"]["refer.title"]
    for state in CARDS:
        assert f"{state}.title" in keys and f"{state}.body" in keys
    assert {f"retake.hint.{h}" for h in HINTS} <= keys
    for page in ("index.html", "operator.html"):
        used = set(re.findall(r"\{\{t:([a-z0-9_.]+)\}\}", (WEB_DIR / page).read_text()))
        assert used and used <= keys, used - keys
    # what the issue asks each card to say, in English
    en = raw["en"]
    assert en["refer.title"] == "Please see a health worker for a test"
    assert en["clear.title"] == "No signs found" and "not a diagnosis" in en["clear.body"]
    assert en["unsure.title"] == "We cannot tell" and "health worker" in en["unsure.body"]
    assert "not a diagnosis" in en["disclaimer"]


def test_retake_hints_follow_the_pipelines_quality_reasons() -> None:
    img = cv2.imread(str(HELDOUT / "Normal" / "normal118.webp"))
    cfg = DecisionConfig()
    cases = {
        "hold_still": cv2.GaussianBlur(img, (0, 0), 6),
        "more_light": (img * 0.12).astype(np.uint8),
        "less_light": cv2.convertScaleAbs(img, alpha=1.0, beta=150),
    }
    for hint, frame in cases.items():
        q = assess_quality(frame, "BGR", cfg)
        assert not q.ok and retake_hint(q.reason) == hint, (hint, q.reason)
    assert retake_hint("badly exposed (40% of pixels clipped)") == "even_light"
    assert retake_hint("lesion too small in the frame") == "move_closer"
    assert retake_hint("nothing in view (contrast 1.2 < 4)") == "move_closer"
    assert retake_hint("something new") == "generic"


def test_ui_config_is_checked() -> None:
    assert config.from_dict({}).ui.language == "en"
    with pytest.raises(ConfigError) as e:
        config.from_dict({"ui": {"language": "fre", "stream_fps": float("nan"), "stream_width": 9}})
    msg = str(e.value)
    assert "3 problem(s)" in msg and "did you mean 'fr'" in msg and "en, fr, pt" in msg
    assert "stream_fps: must be a finite number" in msg and "stream_width must be 64..3840" in msg


# -- the daemon in-process ----------------------------------------------------------------------
@pytest.fixture
def daemon(tmp_path: Path, running: Any) -> Any:

    def start(uri: str, **sections: Any) -> Daemon:
        data: dict[str, Any] = {
            "state_dir": str(tmp_path / "state"),
            "model": {"warmup": 1},
            "http": {"port": 0},
            "source": {"uri": uri},
        }
        for k, v in sections.items():
            if isinstance(v, dict):
                data.setdefault(k, {}).update(v)
            else:
                data[k] = v
        return running(
            Daemon(config.from_dict(data), classifier_factory=lambda c: FakeClassifier(0.002))
        )

    return start


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def raw_stream(
    url: str, path: str, nbytes: int, timeout: float = 5.0
) -> tuple[bytes, socket.socket]:
    """Open a streaming route and read at least ``nbytes`` (headers included)."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    end = time.monotonic() + timeout
    while len(buf) < nbytes and time.monotonic() < end:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf, s


def wait_until(cond: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_page_events_and_static_files(tmp_path: Path, daemon: Any) -> None:
    make_images(tmp_path / "in", [230, 30])
    d = daemon(f"dir://{tmp_path / 'in'}", source={"watch": True})
    # the frame counter moves before the decision reaches the page: wait for the page's own
    wait_until(lambda: d.webui._seq >= 2)
    code, body, hdr = get(d.http.url + "/?lang=fr")
    page = body.decode()
    assert (
        code == 200 and hdr["Content-Security-Policy"] == CSP and hdr["Cache-Control"] == "no-store"
    )
    assert '<html lang="fr">' in page and load_strings("fr")["disclaimer"] in page
    assert "{{" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert get(d.http.url + "/?lang=xx")[1].decode().count('<html lang="en">') == 1
    assert get(d.http.url + "/static/kiosk.js")[0] == 200
    for bad in (
        "/static/../config.py",
        "/static/%2e%2e/config.py",
        "/static/nope.js",
        "/static/i18n",
    ):
        assert get(d.http.url + bad)[0] == 404, bad
    buf, s = raw_stream(d.http.url, "/events", 300)
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert b"Content-Type: text/event-stream" in head and rest.startswith(b"retry: 1000")
    msg = json.loads(re.search(rb"data: (.*)\n", rest).group(1))  # type: ignore[union-attr]
    assert msg["camera"] in ("streaming", "connecting") and msg["seq"] >= 2
    assert msg["decision"]["label"] == "clear" and msg["decision"]["name"] == "person001.jpg"
    assert abs(msg["t_ms"] - time.time() * 1e3) < 60_000
    # the heatmap is only for refer/unsure, and only with explain on
    assert get(d.http.url + "/heatmap.jpg")[0] == 404


def test_live_view_is_encoded_only_while_watched_and_capped(tmp_path: Path, daemon: Any) -> None:
    clip = make_video(tmp_path / "clip.avi", frames=30, size=(960, 540))
    d = daemon(f"file://{clip}", source={"loop": True}, ui={"stream_width": 480, "stream_fps": 20})
    wait_until(lambda: d.telemetry.get("frames_processed_total") >= 30)
    assert d.webui.counts["frames_encoded"] == 0  # deciding, nobody watching: nothing encoded
    t0 = time.monotonic()
    buf, s = raw_stream(d.http.url, "/stream.mjpg", 60_000)
    took = time.monotonic() - t0
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"multipart/x-mixed-replace; boundary=frame" in head
    parts = [p for p in body.split(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n") if p]
    assert len(parts) >= 3
    img = cv2.imdecode(np.frombuffer(parts[0].removesuffix(b"\r\n"), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (270, 480, 3)  # scaled down to stream_width
    assert len(parts) <= took * 20 + 2  # at most stream_fps
    # the cap: MAX_CLIENTS streams at once, the next is told to come back
    extra = [raw_stream(d.http.url, "/stream.mjpg", 100)[1] for _ in range(MAX_CLIENTS - 1)]
    buf, s2 = raw_stream(d.http.url, "/stream.mjpg", 20)
    assert buf.startswith(b"HTTP/1.1 503"), buf[:40]
    for sock in (s, s2, *extra):
        sock.close()
    wait_until(lambda: d.webui.stats()["stream_clients"] == 0)
    n = d.webui.counts["frames_encoded"]
    time.sleep(0.5)
    assert d.webui.counts["frames_encoded"] == n  # the browser left: encoding stopped


def test_operator_view_wants_the_token_the_page_does_not_from_loopback(
    tmp_path: Path, daemon: Any
) -> None:
    make_images(tmp_path / "in", [200])
    token = "kiosk-token-0123456789abcdef"
    d = daemon(f"dir://{tmp_path / 'in'}", http={"token": token})
    url = d.http.url
    assert get(url + "/")[0] == 200  # the kiosk's own screen is a loopback client
    code, _, hdr = get(url + "/operator")
    assert code == 401 and hdr["WWW-Authenticate"].startswith("Basic ")  # the browser prompts
    assert get(url + "/operator", {"Authorization": basic_auth("wrong")})[0] == 401
    assert get(url + "/operator", {"Authorization": basic_auth(token)})[0] == 200
    code, body, _ = get(url + "/operator/status.json", {"Authorization": f"Bearer {token}"})
    st = json.loads(body)
    assert code == 200 and "errors" in st and st["camera"]["uri"].startswith("dir://")
    assert get(url + "/status", {"Authorization": basic_auth(token)})[0] == 200
    assert get(url + "/status", {"Authorization": "Basic !!!"})[0] == 401


def test_ui_disabled_leaves_the_api_alone(tmp_path: Path, daemon: Any) -> None:
    make_images(tmp_path / "in", [200])
    d = daemon(f"dir://{tmp_path / 'in'}", ui={"enabled": False})
    assert get(d.http.url + "/")[0] == 404 and get(d.http.url + "/events")[0] == 404
    assert get(d.http.url + "/status")[0] == 200


# -- privacy ------------------------------------------------------------------------------------
def face_photo() -> Path:
    return HELDOUT / "Normal" / "normal10.webp"  # a real photo in which OpenCV finds a face


def test_face_blur_pixelates_every_face_and_nothing_else() -> None:
    img = cv2.imread(str(face_photo()))
    fb = FaceBlur()
    boxes = fb.faces(img)
    assert boxes, "the face finder sees the face in the sample photo"
    out, n = fb.apply(img)
    assert n == len(boxes) and out.shape == img.shape and not np.shares_memory(out, img)
    x, y, w, h = boxes[0]
    face = cv2.cvtColor(out[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
    assert len(np.unique(face.reshape(-1))) <= 64  # 8x8 flat blocks
    mask = np.ones(img.shape[:2], bool)
    for x, y, w, h in boxes:
        mask[y : y + h, x : x + w] = False
    assert np.array_equal(out[mask], img[mask])


def test_snapshots_only_when_asked_and_with_faces_blurred(tmp_path: Path, daemon: Any) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    img = cv2.imread(str(face_photo()))
    cv2.imwrite(str(inbox / "a.png"), img)
    d = daemon(f"dir://{inbox}", source={"watch": False})
    wait_until(lambda: d.telemetry.get("frames_processed_total") >= 1)
    assert not d.cfg.snapshot_dir.exists()  # off by default: nothing of the person on disk
    d2 = daemon(
        f"dir://{inbox}",
        state_dir=str(tmp_path / "s2"),
        events={"snapshots": True, "snapshot_labels": ["refer", "clear", "retake"]},
    )
    wait_until(lambda: d2.telemetry.get("frames_processed_total") >= 1)
    wait_until(lambda: any(d2.cfg.snapshot_dir.glob("*.jpg")))
    snap = cv2.imread(str(next(d2.cfg.snapshot_dir.glob("*.jpg"))))
    x, y, w, h = FaceBlur().faces(img)[0]
    expected, _ = FaceBlur().apply(img)

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(
            np.abs(a[y : y + h, x : x + w].astype(np.float32) - b[y : y + h, x : x + w]).mean()
        )

    # the stored face is the pixelated one (JPEG noise aside), not the person's
    assert diff(snap, expected) < 2.5 and diff(snap, img) > 2 * diff(snap, expected)
    ev = [e for e in read_events(d2.cfg.events_path) if e.get("event") == "decision"]
    assert ev and ev[0]["faces_blurred"] >= 1 and ev[0]["snapshot"].endswith(".jpg")


# -- booting a kiosk into the page --------------------------------------------------------------
def test_browser_autostart_files() -> None:
    script = REPO / "deploy" / "kiosk-browser.sh"
    assert subprocess.run(["sh", "-n", str(script)], timeout=10).returncode == 0
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "MPOX_EDGE_URL" in r.stdout
    text = script.read_text()
    assert "--kiosk" in text and "http://127.0.0.1:8080/" in text and "/healthz" in text
    unit = (REPO / "deploy" / "kiosk-browser.service").read_text()
    assert "WantedBy=graphical-session.target" in unit and "Restart=always" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_browser_unit_verifies(tmp_path: Path) -> None:
    text = (REPO / "deploy" / "kiosk-browser.service").read_text()
    unit = tmp_path / "kiosk-browser.service"  # verify wants ExecStart to exist
    script = REPO / "deploy" / "kiosk-browser.sh"
    unit.write_text(
        text.replace("ExecStart=/usr/local/bin/mpox-edge-kiosk-browser", f"ExecStart={script}")
    )
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if str(unit) in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_a_reduced_frames_full_resolution_snapshot_is_blurred_too(tmp_path: Path) -> None:
    # the model may see a reduced frame while the snapshot is drawn from the camera's full one
    from mpox_edge.edge.kiosk.pipeline import Decision, Quality, Result
    from mpox_edge.edge.kiosk.recorder import Recorder
    from mpox_edge.edge.kiosk.sources import Frame
    from mpox_edge.edge.kiosk.telemetry import Telemetry

    full = cv2.resize(cv2.imread(str(face_photo())), (448, 448), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(full, (224, 224), interpolation=cv2.INTER_AREA)
    cfg = config.from_dict(
        {"state_dir": str(tmp_path), "events": {"snapshots": True, "snapshot_labels": ["clear"]}}
    )
    rec = Recorder(cfg, Telemetry())
    frame = Frame(small, "BGR", 0, time.monotonic(), name="a.png", still=True, full=full)
    d = Decision("clear", 0.01, "Normal", 0.99, 1, "p < t")
    rec.decision(Result(frame, d, Quality(100, 120, 0, True)), ["Normal"], "Normal", {})
    rec.close()
    snap = cv2.imread(str(next(cfg.snapshot_dir.glob("*.jpg"))))
    assert snap.shape == full.shape
    expected, n = FaceBlur().apply(full)
    assert n >= 1
    x, y, w, h = FaceBlur().faces(full)[0]
    face = (slice(y, y + h), slice(x, x + w))
    err = np.abs(snap[face].astype(np.float32) - expected[face]).mean()
    raw = np.abs(snap[face].astype(np.float32) - full[face]).mean()
    assert err < 2.5 and raw > 2 * err, (err, raw)
