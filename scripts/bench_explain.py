#!/usr/bin/env python3
"""What a class-activation heatmap costs on the device, heatmap off vs on, in one run.

    python3 scripts/bench_explain.py [--model DIR] [--backend onnxruntime] [--rounds 7]

Frames are the bundled held-out sample scaled into 1920x1080 frames (as `mpox-edge bench`
makes them). Three variants alternate in blocks of ``--frames`` for ``--rounds`` rounds, so
machine noise hits all of them alike:

* ``off``: preprocess + inference + softmax, the feature output dropped;
* ``heatmap``: the same, keeping the feature map, plus the CAM of the predicted class
  (what the daemon adds per frame with ``explain = true``);
* ``overlay``: heatmap plus the colour-mapped blend onto the 1080p frame (what
  ``mpox-edge explain`` and ``/latest.jpg`` add when an image is actually drawn).

Target (issue 6): end-to-end p50 with the heatmap on <= 1.15x the p50 with it off.
The ratio is the median over rounds of the per-round ratios of p50s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import cv2
import numpy as np
from mpox_edge.edge.errors import MpoxEdgeError
from mpox_edge.edge.explain.cam import CamHead, crop_box, overlay
from mpox_edge.edge.model.classifier import Classifier, default_data_dir
from mpox_edge.edge.model.dataset import read_image
from mpox_edge.edge.reports.bench import make_frame

VARIANTS = ("off", "heatmap", "overlay")


def frames(n: int) -> list[np.ndarray]:
    paths = sorted(p for p in default_data_dir().rglob("*") if p.suffix == ".webp")[:n]
    return [make_frame(read_image(p), (1920, 1080)) for p in paths]


def one(clf: Classifier, head: CamHead, frame: np.ndarray, variant: str) -> float:
    t0 = time.perf_counter()
    pred = clf.predict(frame, with_features=variant != "off")
    if variant != "off":
        heat = head.heatmap(pred.features, pred.index)
        if variant == "overlay":
            box = crop_box(frame.shape, clf.spec.input_size, clf.spec.resize)
            overlay(frame, heat, box=box)
    return (time.perf_counter() - t0) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--backend", default="onnxruntime", help="onnxruntime or openvino")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--frames", type=int, default=40, help="frames per variant per round")
    ap.add_argument("--json", help="write the result as JSON")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        clf = Classifier.open(
            args.model, backend=args.backend, precision=args.precision, threads=args.threads
        )
        head = CamHead.load(clf.model)
    except MpoxEdgeError as e:
        print(f"bench_explain: error: {e}", file=sys.stderr)
        return 2
    imgs = frames(args.frames)
    for f in imgs[:10]:  # warm-up, every variant
        for v in VARIANTS:
            one(clf, head, f, v)
    p50s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for v in order:
            p50s[v].append(statistics.median(one(clf, head, f, v) for f in imgs))
    clf.close()
    result = {
        "model": str(clf.model.path),
        "backend": clf.description,
        "frame": "1920x1080",
        "rounds": args.rounds,
        "frames_per_round": len(imgs),
        "end_to_end_p50_ms": {v: statistics.median(p50s[v]) for v in VARIANTS},
        "ratio_heatmap_vs_off": statistics.median(
            h / o for h, o in zip(p50s["heatmap"], p50s["off"], strict=True)
        ),
        "ratio_overlay_vs_off": statistics.median(
            h / o for h, o in zip(p50s["overlay"], p50s["off"], strict=True)
        ),
        "target_ratio": 1.15,
    }
    e = result["end_to_end_p50_ms"]
    print(f"{clf.description}, 1920x1080 frames, {args.rounds} rounds x {len(imgs)} frames")
    r = result
    print(f"  heatmap off           p50 {e['off']:.2f} ms")
    print(f"  heatmap on            p50 {e['heatmap']:.2f} ms  ({r['ratio_heatmap_vs_off']:.3f}x)")
    print(f"  heatmap + 1080p blend p50 {e['overlay']:.2f} ms  ({r['ratio_overlay_vs_off']:.3f}x)")
    ok = result["ratio_heatmap_vs_off"] <= 1.15
    print(f"  target heatmap on <= 1.15x off: {'met' if ok else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
