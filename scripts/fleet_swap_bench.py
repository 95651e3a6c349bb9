#!/usr/bin/env python3
"""Model hot swap in a running daemon: SIGHUP-to-serving time and frames dropped.

Packs the shipped default model twice (two versions), runs the daemon in-process on a
30 fps synthetic camera, and swaps back and forth; reports the median time from the
request to the new model serving, drops per second during swaps vs before them, and the
excess: drops during a swap beyond what the rate before would give in the same time.
Swaps alternate between paced (the new model's warm-up and health check wait for the
frame loop's idle gap, as shipped) and unpaced (``rollout.PACE`` off), so both see the
same machine; ``--no-pace`` runs only unpaced swaps.

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

from mpox_edge.edge.kiosk import config, rollout  # noqa: E402
from mpox_edge.edge.kiosk.daemon import Daemon  # noqa: E402
from mpox_edge.edge.model.bundle import keygen, pack  # noqa: E402
from mpox_edge.edge.model.classifier import default_data_dir, default_model_dir  # noqa: E402
from mpox_edge.edge.model.store import Store  # noqa: E402
from test_fleet_rollout import Camera  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swaps", type=int, default=3, help="swaps of each kind (default 3)")
    ap.add_argument("--no-pace", action="store_true", help="unpaced swaps only")
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
        modes = ["unpaced"] if a.no_pace else ["paced", "unpaced"]
        res: dict[str, dict[str, list[float]]] = {
            m: {"ms": [], "rate": [], "excess": []} for m in modes
        }
        for i in range(a.swaps * len(modes)):
            mode = modes[i % len(modes)]
            rollout.PACE = mode == "paced"
            target = vs[(i + 1) % 2]
            s.activate(target)
            d0, t0 = tel.get("frames_dropped_total"), time.time()
            d.request_reload()
            while d.rollout.state.get("version") != target or d.rollout.state["state"] != "serving":
                if d.rollout.state.get("state") == "failed":
                    sys.exit(f"swap failed: {d.rollout.state}")
                time.sleep(0.01)
            dt, dropped = time.time() - t0, tel.get("frames_dropped_total") - d0
            res[mode]["rate"].append(dropped / dt)
            res[mode]["excess"].append(dropped - base * dt)
            res[mode]["ms"].append(d.rollout.state["swap_ms"])
            time.sleep(1)
        rollout.PACE = True
        failed = tel.get("frames_failed_total")
        d.request_stop()
        th.join(5)
        d.stop()
    out: dict[str, object] = {
        "drops_per_s_before": round(base, 2),
        "captured_per_s": round(base_cap, 1),
        "frames_failed": failed,
    }
    for mode, r in res.items():
        out[mode] = {
            "swap_ms_median": statistics.median(r["ms"]),
            "swap_ms": r["ms"],
            "drops_per_s_during_swap_median": round(statistics.median(r["rate"]), 2),
            "excess_drops_per_swap": [round(x, 1) for x in r["excess"]],
            "excess_drops_median": round(statistics.median(r["excess"]), 1),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
