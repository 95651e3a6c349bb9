"""A real Prometheus scrapes the daemon's /metrics; its HTTP API returns the frame counter."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edge_fakes import FakeClassifier, make_video
from fleet_servers import Prometheus
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.daemon import Daemon


def test_prometheus_scrapes_the_frame_counter(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.avi", frames=20)
    cfg = config.from_dict(
        {
            "state_dir": str(tmp_path / "state"),
            "model": {"warmup": 0},
            "http": {"port": 0},
            "source": {"uri": f"file://{clip}", "loop": True},
        }
    )
    d = Daemon(cfg, classifier_factory=lambda c: FakeClassifier(delay_s=0.005))
    d.start()
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    prom = None
    try:
        assert d.http is not None
        prom = Prometheus(tmp_path / "prom", f"127.0.0.1:{d.http.port}")
        end, value = time.monotonic() + 60, 0.0
        while time.monotonic() < end:
            res = prom.query("mpox_edge_frames_processed_total")["data"]["result"]
            if res and float(res[0]["value"][1]) > 0:
                value = float(res[0]["value"][1])
                break
            time.sleep(0.3)
        assert value > 0, "Prometheus never stored the frame counter"
        assert value <= d.telemetry.get("frames_processed_total")
        up = prom.query('up{job="mpox-edge"}')["data"]["result"]
        assert up and up[0]["value"][1] == "1"
        hist = prom.query('mpox_edge_stage_latency_seconds_count{stage="inference"}')
        assert hist["data"]["result"], "the stage histogram was not scraped"
    finally:
        if prom:
            prom.stop()
        d.request_stop()
        t.join(5)
        d.stop()
