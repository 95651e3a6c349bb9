#!/usr/bin/env python3
"""Model hot swap in a running daemon: SIGHUP-to-serving time and frames dropped.

Packs the shipped default model twice (two versions), runs the daemon in-process on a
30 fps synthetic camera, and swaps back and forth; reports the median time from the
request to the new model serving, drops per second during swaps vs before them, and the
excess: drops during a swap beyond what the rate before would give in the same time.

    python3 scripts/fleet_swap_bench.py --swaps 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mpox_edge.edge.kiosk import config  # noqa: E402
from mpox_edge.edge.kiosk.daemon import Daemon  # noqa: E402
from mpox_edge.edge.model.bundle import keygen, pack  # noqa: E402
from mpox_edge.edge.model.classifier import default_data_dir, default_model_dir  # noqa: E402
from mpox_edge.edge.model.store import Store  # noqa: E402
from test_fleet_rollout import Camera  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swaps", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        pub = keygen(t / "key")
        vs = []
        s = Store(t / "state" / "models", [pub])
        for label in ("a", "b"):
            b = pack(
                default_model_dir(),
                t / "key",
                t / f"{label}.bundle",
                sample=default_data_dir(),
                per_class=4,
                label=label,
            )
            vs.append(s.install(b["bundle"]))
        s.activate(vs[0])
        cfg = config.from_dict(
            {
                "state_dir": str(t / "state"),
                "http": {"enabled": False},
                "model": {"backend": "onnxruntime", "warmup": 3},
                "models": {"trusted_keys": [pub]},
            }
        )
        d = Daemon(cfg, source_factory=lambda sc: Camera(), reload_config=lambda: cfg)
        d.start()
        th = threading.Thread(target=d.run, daemon=True)
        th.start()
        tel = d.telemetry
        time.sleep(3)
        c0, d0, t0 = tel.get("frames_captured_total"), tel.get("frames_dropped_total"), time.time()
        time.sleep(5)
        base = (tel.get("frames_dropped_total") - d0) / (time.time() - t0)
        base_cap = (tel.get("frames_captured_total") - c0) / (time.time() - t0)
        ms, rates, excess = [], [], []
        for i in range(a.swaps):
            target = vs[(i + 1) % 2]
            s.activate(target)
            d0, t0 = tel.get("frames_dropped_total"), time.time()
            d.request_reload()
            while d.rollout.state.get("version") != target or d.rollout.state["state"] != "serving":
                if d.rollout.state.get("state") == "failed":
                    sys.exit(f"swap failed: {d.rollout.state}")
                time.sleep(0.01)
            dt, dropped = time.time() - t0, tel.get("frames_dropped_total") - d0
            rates.append(dropped / dt)
            excess.append(round(dropped - base * dt, 1))
            ms.append(d.rollout.state["swap_ms"])
            time.sleep(1)
        failed = tel.get("frames_failed_total")
        d.request_stop()
        th.join(5)
        d.stop()
    print(
        json.dumps(
            {
                "swap_ms_median": statistics.median(ms),
                "swap_ms": ms,
                "drops_per_s_before": round(base, 2),
                "captured_per_s": round(base_cap, 1),
                "drops_per_s_during_swap_median": round(statistics.median(rates), 2),
                "excess_drops_per_swap": excess,
                "frames_failed": failed,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
