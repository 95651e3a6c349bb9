#!/usr/bin/env python3
"""Run `mpox-edge bench` several times, each in a fresh process, and report the medians.

    python3 scripts/bench_repeat.py [--repeat 5] [--json out.json] -- [bench arguments]
    python3 scripts/bench_repeat.py -- --backend onnxruntime --no-accuracy
    python3 scripts/bench_repeat.py -- --backend onnxruntime --against torch --no-accuracy

The machine this project is developed on is shared and noisy, so the README quotes medians
over separate runs (a fresh process each, so cold start and peak RSS are real). Ratios
(end to end / inference, speed-up over PyTorch) are taken within each run, then the median
of the per-run ratios is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def fields(rep: dict[str, Any]) -> dict[str, float]:
    lat = rep["latency_ms"]
    out = {
        "inference_p50_ms": lat["inference"]["p50"],
        "preprocess_p50_ms": lat["preprocess"]["p50"],
        "end_to_end_p50_ms": lat["end_to_end"]["p50"],
        "end_to_end_over_inference": lat["end_to_end"]["p50"] / lat["inference"]["p50"],
        "average_fps": rep["average_fps"],
        "peak_rss_mb": rep["peak_rss_mb"],
    }
    if rep.get("cold_start_s") is not None:
        out["cold_start_s"] = rep["cold_start_s"]
    if "accuracy" in rep:
        out["accuracy"] = rep["accuracy"]["accuracy"]
    if "against_torch" in rep:
        out["torch_end_to_end_p50_ms"] = rep["against_torch"]["latency_ms"]["end_to_end"]["p50"]
        out["speedup_end_to_end_p50"] = rep["against_torch"]["speedup_end_to_end_p50"]
        out["speedup_inference_p50"] = rep["against_torch"]["speedup_inference_p50"]
    return out


def main() -> int:
    argv = sys.argv[1:]
    bench_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write every run and the medians as JSON")
    args = ap.parse_args(own)
    runs: list[dict[str, Any]] = []
    backend = ""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            out = Path(tmp) / f"run{i}.json"
            cmd = ["mpox-edge", "bench", *bench_args, "--json", str(out)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr.strip() or p.stdout.strip(), file=sys.stderr)
                return p.returncode
            rep = json.loads(out.read_text())
            b = rep["backend"]
            backend = f"{b['name']}/{b['device']}/{b['precision']}, {b['threads']} threads"
            runs.append(fields(rep))
            print(
                f"run {i + 1}/{args.repeat}: "
                + "  ".join(f"{k} {v:.3g}" for k, v in runs[-1].items())
            )
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"\nmpox-edge bench {' '.join(bench_args)}  ({backend}; median of {len(runs)} runs)")
    for k, v in med.items():
        spread = f"[{min(r[k] for r in runs):.3g} .. {max(r[k] for r in runs):.3g}]"
        print(f"  {k:28s} {v:9.3f}  {spread}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"bench_args": bench_args, "backend": backend, "runs": runs, "median": med},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
