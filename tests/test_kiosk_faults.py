"""The kiosk under hostile input and faults (issue 13, cases 2, 4, 5 and 10): reloads that
never kill the daemon, an inbox that screens each photo exactly once, sources that end,
non-finite config values, /healthz when the capture thread dies."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from edge_fakes import FakeClassifier, make_images, make_video
from mpox_edge.edge.errors import ConfigError
from mpox_edge.edge.kiosk import config, serve
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.kiosk.eventlog import read_events
from mpox_edge.edge.model.classifier import default_model_dir
from test_daemon import http_get, wait_until


def _toml(tmp_path: Path, uri: str, extra: str = "") -> str:
    return (
        f'state_dir = "{tmp_path}/state"\n{extra}\n[source]\nuri = "{uri}"\n'
        '[http]\nport = 0\n[model]\nwarmup = 1\nbackend = "onnxruntime"\n'
    )


# -- 10: config values -------------------------------------------------------------------------
def test_non_finite_and_absurd_values_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        "[source]\nbackoff_max_s = inf\nread_timeout_s = nan\nwidth = 100000000\n"
        "[decision]\nmin_sharpness = -inf\n[model]\nthreads = 100000\n"
    )
    with pytest.raises(ConfigError) as e:
        config.load(p)
    msg = str(e.value)
    assert "[source] backoff_max_s: must be a finite number, not inf" in msg
    assert "[source] read_timeout_s: must be a finite number, not nan" in msg
    assert "[source] width and height must be 0..16384" in msg
    assert "[decision] min_sharpness: must be a finite number, not -inf" in msg
    assert "[model] threads must be 0..256" in msg


def test_start_with_a_bad_config_fails_once_with_one_line(tmp_path: Path) -> None:
    bad = {
        "utf8.toml": (b'[source]\nuri = "dir://x\xff"\n', "not UTF-8 text (byte 0xff at offset"),
        "width.toml": (b"[source]\nwidth = 100000000\n", "width and height must be 0..16384"),
        "nan.toml": (b"[decision]\nrefer_threshold = nan\n", "must be a finite number, not nan"),
    }
    for name, (data, needle) in bad.items():
        (tmp_path / name).write_bytes(data)
        r = subprocess.run(
            [sys.executable, "-m", "mpox_edge.edge.cli", "serve", "--config", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("mpox-edge serve: error: ") and needle in r.stderr, r.stderr
    unit = (Path(__file__).resolve().parents[1] / "deploy" / "mpox-edge.service").read_text()
    assert "RestartPreventExitStatus=2" in unit  # so systemd does not retry it ten times


# -- 2: reloads ----------------------------------------------------------------------------------
def test_no_reload_failure_stops_the_daemon(
    tmp_path: Path, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clip = make_video(tmp_path / "clip.avi", frames=10)
    uri = f"file://{clip}?loop=1"
    five = tmp_path / "five"
    shutil.copytree(default_model_dir(), five)
    m = json.loads((five / "manifest.json").read_text())
    m["classes"].append("Cowpox")
    (five / "manifest.json").write_text(json.dumps(m))
    path = tmp_path / "config.toml"
    good = _toml(tmp_path, uri)
    path.write_text(good)
    boom = {"on": False}

    def reload_config() -> config.Config:
        if boom["on"]:
            raise RuntimeError("disk on fire")
        return serve.load_config(str(path), {})

    d = running(Daemon(serve.load_config(str(path), {}), reload_config=reload_config))
    first = d.classifier
    wait_until(lambda: d.telemetry.get("frames_processed_total") > 5, 30)
    cases = [
        (good.encode().replace(b"[http]", b"# caf\xe9\n[http]"), "not UTF-8 text"),
        (good.replace("[source]\n", "[source]\nwidth = 100000000\n").encode(), "width and"),
        (good.replace("[source]\n", "[source]\nbackoff_max_s = inf\n").encode(), "finite"),
        (good.replace("[model]\n", f'[model]\ndir = "{five}"\n').encode(), "5 classes but"),
        (None, "RuntimeError: disk on fire"),
    ]
    for i, (data, needle) in enumerate(cases, 1):
        if data is None:
            boom["on"] = True
        else:
            path.write_bytes(data)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="mpox_edge.daemon"):
            d.request_reload()
            wait_until(lambda i=i: d.telemetry.get("reloads_failed_total") == i, 30)
        lines = [r.getMessage() for r in caplog.records if r.name == "mpox_edge.daemon"]
        assert len(lines) == 1 and "\n" not in lines[0] and needle in lines[0], lines
        st = json.loads(http_get(d.http.url + "/status")[1])
        assert st["reload"]["ok"] is False and needle in st["reload"]["error"]
        assert d.classifier is first and d.cfg.source.uri == uri
        n = d.telemetry.get("frames_processed_total")
        wait_until(lambda n=n: d.telemetry.get("frames_processed_total") > n + 3, 30)
    evs = [e for e in read_events(d.cfg.events_path) if e["event"] == "reload"]
    assert [e["ok"] for e in evs] == [False] * len(cases)
    assert http_get(d.http.url + "/healthz")[0] == 200


# -- 5: sources that end -------------------------------------------------------------------------
def test_a_file_without_loop_stays_ended(tmp_path: Path, running: Any) -> None:
    clip = make_video(tmp_path / "clip.avi", frames=12)
    d = running(
        Daemon(
            config.from_dict(
                {
                    "state_dir": str(tmp_path / "state"),
                    "model": {"warmup": 0},
                    "http": {"port": 0},
                    "source": {"uri": f"file://{clip}", "backoff_initial_s": 0.05},
                }
            ),
            classifier_factory=lambda c: FakeClassifier(),
        )
    )
    wait_until(lambda: d.capture.state == "ended", 20)
    time.sleep(2.0)  # the old code replayed the clip every ~2 s
    assert d.telemetry.get("frames_processed_total") == 12
    assert d.telemetry.get("camera_failures_total") == 0
    st = json.loads(http_get(d.http.url + "/status")[1])
    assert st["camera"]["state"] == "ended" and "end of video" in st["camera"]["error"]
    assert http_get(d.http.url + "/healthz")[0] == 200  # ended is not a fault
    cams = [e["state"] for e in read_events(d.cfg.events_path) if e["event"] == "camera"]
    assert cams == ["streaming", "ended"]


# -- 10: /healthz and a dead capture thread ------------------------------------------------------
def test_healthz_fails_while_the_capture_thread_is_dead(tmp_path: Path, running: Any) -> None:
    d = running(
        Daemon(
            config.from_dict(
                {
                    "state_dir": str(tmp_path / "state"),
                    "model": {"warmup": 0},
                    "http": {"port": 0},
                    "source": {"uri": f"file://{tmp_path}/absent.avi"},
                }
            ),
            classifier_factory=lambda c: FakeClassifier(),
        )
    )
    # what an infinite backoff did: Event.wait(inf) raises OverflowError in the thread
    d.capture.backoff.next = lambda: float("inf")  # type: ignore[method-assign]
    wait_until(lambda: not d.capture.alive, 10)
    code, body, _ = http_get(d.http.url + "/healthz")
    assert code == 503 and b"capture thread is dead" in body and b"OverflowError" in body
    d.capture.backoff.next = lambda: 0.05  # type: ignore[method-assign]
    wait_until(lambda: d.telemetry.get("capture_restarts_total") == 1, 15)
    wait_until(lambda: http_get(d.http.url + "/healthz")[0] == 200, 10)


# -- 4: the dir:// inbox -------------------------------------------------------------------------
def _inbox_daemon(tmp_path: Path, inbox: Path) -> Daemon:
    return Daemon(
        config.from_dict(
            {
                "state_dir": str(tmp_path / "state"),
                "model": {"warmup": 0},
                "http": {"port": 0},
                "source": {"uri": f"dir://{inbox}", "backoff_initial_s": 0.05},
            }
        ),
        classifier_factory=lambda c: FakeClassifier(),
    )


def _decided(d: Daemon) -> list[str]:
    return [e["name"] for e in read_events(d.cfg.events_path) if e["event"] == "decision"]


def test_inbox_screens_each_photo_once_and_never_reads_special_files(
    tmp_path: Path, running: Any
) -> None:
    inbox = tmp_path / "inbox"
    names = make_images(inbox, [30, 200, 120, 60])
    os.mkfifo(inbox / "stall.jpg")  # a read of this used to block the capture thread
    (inbox / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xdb" + os.urandom(2000))
    with open(inbox / "huge.jpg", "wb") as f:  # 200 MB, sparse
        f.truncate(200 * 1024 * 1024)
    old = time.time() - 5
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    threads0 = threading.active_count()
    d = running(_inbox_daemon(tmp_path, inbox))
    wait_until(lambda: d.telemetry.get("photos_unreadable_total") == 3, 20)
    wait_until(lambda: len(_decided(d)) == 4, 20)
    bad = {
        e["name"]: e["reason"] for e in read_events(d.cfg.events_path) if e["event"] == "unreadable"
    }
    assert set(bad) == {"stall.jpg", "corrupt.jpg", "huge.jpg"}
    assert "not a regular file" in bad["stall.jpg"] and "too large" in bad["huge.jpg"]
    # the source goes away and comes back (an unmounted card): reconnect, nothing re-screened
    shutil.move(inbox, tmp_path / "away")
    wait_until(lambda: d.capture.state == "unavailable", 10)
    shutil.move(tmp_path / "away", inbox)
    wait_until(lambda: d.telemetry.get("camera_reconnects_total") == 1, 10)
    make_images(tmp_path / "new", [150])
    shutil.move(tmp_path / "new" / "person000.jpg", inbox / "late.jpg")
    wait_until(lambda: "late.jpg" in _decided(d), 10)
    time.sleep(1.0)
    assert sorted(_decided(d)) == sorted([*names, "late.jpg"])  # each exactly once
    assert d.telemetry.get("photos_unreadable_total") == 3
    assert threading.active_count() <= threads0 + 4  # capture, http, no leaked readers
    d.request_stop()


def test_inbox_record_survives_a_restart(tmp_path: Path, running: Any) -> None:
    inbox = tmp_path / "inbox"
    names = make_images(inbox, [30, 200, 120])
    old = time.time() - 5
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    d1 = _inbox_daemon(tmp_path, inbox)
    d1.start()
    t = threading.Thread(target=d1.run, daemon=True)
    t.start()
    wait_until(lambda: len(_decided(d1)) == 3, 20)
    d1.request_stop()
    t.join(5)
    d1.stop()
    d2 = running(_inbox_daemon(tmp_path, inbox))
    make_images(tmp_path / "new", [150])
    shutil.move(tmp_path / "new" / "person000.jpg", inbox / "after.jpg")
    wait_until(lambda: "after.jpg" in _decided(d2), 20)
    time.sleep(0.8)
    assert sorted(_decided(d2)) == sorted([*names, "after.jpg"])
    assert d2.telemetry.get("frames_processed_total") == 1


def test_inbox_record_keeps_odd_names_and_forgets_vanished_photos(tmp_path: Path) -> None:
    from mpox_edge.edge.kiosk.inbox import InboxRecord, photo_key

    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    state.mkdir()
    keys = []
    for name in ("a.jpg", "evil\nname.jpg", "gone.jpg"):
        (inbox / name).write_bytes(b"x")
        keys.append(photo_key(inbox / name))
    rec = InboxRecord(inbox, state)
    for k in keys:
        rec.done(k)
    rec.close()
    (inbox / "gone.jpg").unlink()
    again = InboxRecord(inbox, state)
    assert again.seen(keys[0]) and again.seen(keys[1]) and not again.seen(keys[2])
    assert len(again.path.read_text().splitlines()) == 2  # compacted, one line per key
    again.close()
