"""A tampered model directory under ``backend = "auto"`` (issue 13, case 7)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from edge_fakes import make_video
from mpox_edge.edge.errors import IntegrityError
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.model.classifier import Classifier, default_model_dir


@pytest.fixture
def tampered_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(default_model_dir(), d)
    with open(d / "model.int8.onnx", "r+b") as f:  # one flipped byte in the int8 artifact
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 0xFF]))
    return d


def test_auto_refuses_a_directory_with_any_hash_mismatch(
    tampered_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(IntegrityError) as e:
        Classifier.open(tampered_dir, backend="auto", cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "model.int8.onnx does not match the sha256" in msg and "refusing" in msg
    assert "allow_tampered" in msg
    # the command line: one line, exit 2, nothing served
    r = subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", "bench", "--model", str(tampered_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model.int8.onnx does not match the sha256" in r.stderr


def test_opting_in_serves_the_intact_artifacts_loudly(
    tampered_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = make_video(tmp_path / "clip.avi", frames=5)
    cfg = config.from_dict(
        {
            "state_dir": str(tmp_path / "state"),
            "model": {"dir": str(tampered_dir), "allow_tampered": True, "warmup": 0},
            "http": {"port": 0},
            "source": {"uri": f"file://{clip}"},
        }
    )
    d = Daemon(cfg)
    with caplog.at_level("WARNING"):
        d.start()
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        warn = [r.getMessage() for r in caplog.records if "TAMPERED MODEL" in r.getMessage()]
        assert len(warn) == 1 and "model.int8.onnx" in warn[0]
        assert d.classifier.description.endswith("/fp32")  # the intact artifact
        with urllib.request.urlopen(d.http.url + "/status", timeout=10) as r:
            st = json.loads(r.read())
        assert (
            st["integrity"]["ok"] is False and "model.int8.onnx" in st["integrity"]["problems"][0]
        )
        with urllib.request.urlopen(d.http.url + "/metrics", timeout=10) as r:
            assert "mpox_edge_model_integrity_ok 0" in r.read().decode()
    finally:
        d.request_stop()
        t.join(5)
        d.stop()
