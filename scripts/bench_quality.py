#!/usr/bin/env python3
"""Cost of the quality gate per frame: ``assess_quality`` and, inside it, the learnt scores'
directional features (``blur_features``), on a bundled photo resized to 720p and 1080p.

Interleaved rounds, medians; a ratio within one run is what to quote on a shared host.

    python3 scripts/bench_quality.py [--rounds 7] [--calls 50] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
from mpox_edge.edge.kiosk.config import DecisionConfig
from mpox_edge.edge.kiosk.quality import assess_quality, quality_copy
from mpox_edge.edge.kiosk.qualityscore import blur_features
from mpox_edge.edge.model.dataset import read_image

HELDOUT = Path(__file__).resolve().parents[1] / "edge" / "data" / "heldout"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    photo = read_image(sorted(HELDOUT.rglob("*.webp"))[0])
    cfg = DecisionConfig()
    out: dict[str, dict[str, float]] = {}
    for w, h in ((1280, 720), (1920, 1080)):
        frame = cv2.resize(photo, (w, h))
        grey = cv2.cvtColor(quality_copy(frame), cv2.COLOR_BGR2GRAY)
        var = float(grey.var())
        jobs = {
            "assess_quality": lambda: assess_quality(frame, "BGR", cfg),  # noqa: B023
            "blur_features": lambda: blur_features(grey, 1.0, var),  # noqa: B023
        }
        times: dict[str, list[float]] = {k: [] for k in jobs}
        for f in jobs.values():
            f()
        for _ in range(a.rounds):
            for k, f in jobs.items():
                t = time.perf_counter()
                for _ in range(a.calls):
                    f()
                times[k].append((time.perf_counter() - t) / a.calls * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        out[f"{w}x{h}"] = {f"{k}_ms": round(v, 3) for k, v in med.items()}
        print(
            f"{w}x{h}: assess_quality {med['assess_quality']:.2f} ms, of which the learnt "
            f"scores' directional features {med['blur_features']:.2f} ms "
            f"(median of {a.rounds} rounds x {a.calls} calls)"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
