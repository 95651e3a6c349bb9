#!/usr/bin/env python3
"""Old vs new model directory, end-to-end latency ratio in one process (interleaved rounds).

    python3 scripts/trust_ratio.py OLD_MODEL_DIR NEW_MODEL_DIR [--rounds 5] [--threads 1]

Frames: the first 30 photos of the bundled sample; median end-to-end ms per round, the
reported figure is the median of the per-round new/old ratios (order alternates per round).
"""

import argparse

import numpy as np
from mpox_edge.edge.model.classifier import Classifier, default_data_dir
from mpox_edge.edge.model.dataset import read_image

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("old")
ap.add_argument("new")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
paths = sorted(p for p in default_data_dir().rglob("*.webp"))[:30]
imgs = [read_image(p) for p in paths]
old = Classifier.open(args.old, backend="onnxruntime", threads=args.threads)
new = Classifier.open(args.new, backend="onnxruntime", threads=args.threads)
for c in (old, new):
    for im in imgs[:5]:
        c.predict(im)
ratios = []
for r in range(args.rounds):
    t = {}
    pairs = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
    for name, c in pairs:
        t[name] = float(np.median([c.predict(im).timings_ms["end_to_end"] for im in imgs]))
    ratios.append(t["new"] / t["old"])
    print(r, {k: round(v, 2) for k, v in t.items()})
print("median new/old end-to-end ratio", round(float(np.median(ratios)), 3))
