#!/usr/bin/env python3
"""Non-skin frames as the kiosk answers them: retake (quality gate), unsure, refer, clear.

Issue 11's target: non-skin frames -> `unsure` or `retake` >= 99%. The frames are
``converters.nonskin``'s (the sample photos inside installed scikit-image / matplotlib wheels
and synthetic blank, noise, gradient, pattern and document frames); they are validation
data, none of it came from a test split.

    python3 scripts/nonskin_kiosk.py [MODEL_DIR] [--config TOML] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from mpox_edge.converters.nonskin import nonskin_frames
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.pipeline import Pipeline
from mpox_edge.edge.kiosk.sources import Frame
from mpox_edge.edge.model.classifier import Classifier, default_model_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="model directory (default: the shipped one)")
    ap.add_argument("--config", help="a kiosk config whose [decision] gate is used")
    ap.add_argument("--json", help="write per-frame decisions and the summary here")
    a = ap.parse_args(argv)
    cfg = config.load(a.config) if a.config else config.Config()
    clf = Classifier.open(Path(a.model) if a.model else default_model_dir(), backend="onnxruntime")
    pipe = Pipeline(clf, cfg.decision, cfg.roi)
    rows = []
    for i, (name, img) in enumerate(nonskin_frames()):
        r = pipe.process(Frame(img, "BGR", i, time.monotonic(), name, True))
        rows.append({"frame": name, "decision": r.decision.label, "reason": r.decision.reason})
    n = len(rows)
    counts = collections.Counter(r["decision"] for r in rows)
    held = counts["unsure"] + counts["retake"]
    print(f"{n} non-skin frames: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"unsure or retake: {held / n:.1%} ({held}/{n}; target >= 99%)")
    for r in rows:
        if r["decision"] not in ("unsure", "retake"):
            print(f"  {r['decision']:<6} {r['frame']}")
    if a.json:
        summary = {"n": n, "counts": dict(counts), "unsure_or_retake": held / n}
        Path(a.json).write_text(json.dumps({"summary": summary, "frames": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
