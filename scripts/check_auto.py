#!/usr/bin/env python3
"""Does ``auto`` pick the fastest backend? Its choice against every candidate timed apart.

    python3 scripts/check_auto.py [--model DIR] [--threads 2] [--trials 5] [--json out.json]

Each trial makes a fresh ``auto`` decision (``--reselect``, a throw-away cache), then times
every runnable candidate again on its own: loaded alone (no other runtime in the process),
warmed, timed on a real preprocessed held-out image, closed; candidates take turns over
``--rounds`` rounds and the median over rounds counts. The trial's ratio is that time of
auto's pick over the best such time (1.00: auto picked the fastest).
Target (issue 4): within 5% (ratio <= 1.05); the verdict uses the median over trials.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile

from mpox_edge.edge.errors import MpoxEdgeError
from mpox_edge.edge.model.classifier import default_data_dir, default_model_dir
from mpox_edge.edge.model.dataset import read_image
from mpox_edge.edge.model.manifest import ModelDir
from mpox_edge.edge.model.preprocess import preprocess
from mpox_edge.edge.model.selection import candidates, select_backend, time_candidates


def name(c: dict) -> str:
    return f"{c['backend']}/{c['device']}/{c['precision']}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per candidate and round")
    ap.add_argument("--rounds", type=int, default=3, help="turns each candidate takes alone")
    ap.add_argument("--json", help="write the result as JSON")
    args = ap.parse_args()
    try:
        md = ModelDir.load(args.model or default_model_dir())
    except MpoxEdgeError as e:
        print(f"check_auto: error: {e}", file=sys.stderr)
        return 2
    img = read_image(sorted(default_data_dir().rglob("*.webp"))[0])
    x = preprocess(img, md.manifest.preprocess, color_order="BGR")
    cands = [c for c in candidates(md) if c["ok"]]
    trials = []
    for t in range(args.trials):
        with tempfile.TemporaryDirectory() as cache:
            pick = select_backend(
                md, threads=args.threads, reselect=True, cache_dir=cache, log=lambda s: None
            )
        alone: dict[str, list[float]] = {name(c): [] for c in cands}
        for _ in range(args.rounds):
            for c in cands:
                ms = time_candidates(md, [c], x, threads=args.threads, warmup=20, runs=args.runs)
                alone[name(c)].append(ms[0])
        times = {k: statistics.median(v) for k, v in alone.items()}
        best = min(times.values())
        ratio = times[name(pick)] / best
        trials.append({"auto": name(pick), "apart_ms": times, "ratio": ratio})
        line = "  ".join(f"{k} {v:.3f}" for k, v in times.items())
        print(f"trial {t + 1}: auto -> {name(pick)}; apart (median ms): {line}; ratio {ratio:.3f}")
    ratios = [tr["ratio"] for tr in trials]
    result = {
        "model": str(md.path),
        "threads": args.threads,
        "trials": trials,
        "median_ratio": statistics.median(ratios),
        "trials_within_5pct": sum(r <= 1.05 for r in ratios),
        "target_ratio": 1.05,
    }
    ok = result["median_ratio"] <= 1.05
    print(
        f"auto vs fastest apart: median ratio {result['median_ratio']:.3f} "
        f"({result['trials_within_5pct']}/{len(ratios)} trials within 5%): "
        f"{'met' if ok else 'MISSED'}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
