#!/usr/bin/env python3
"""`mpox-edge bench --backend openvino` against OpenVINO's own `benchmark_app`, side by side.

    python3 scripts/compare_benchmark_app.py [--model DIR] [--threads 2] [--rounds 5]

Same IR, device (CPU), thread count and precision (f32: INFERENCE_PRECISION_HINT is set
for both), batch 1, latency hint, synchronous requests. The two tools alternate for
``--rounds`` rounds so machine noise hits both alike; the medians over rounds are compared.
Target (issue 4): mpox-edge's inference p50 within 10% of benchmark_app's median.
The like-for-like figure is bench's ``inference_back_to_back`` (runtime calls one after
another, as benchmark_app runs them); bench's in-pipeline ``inference`` (a 1080p frame
decoded and preprocessed between calls) is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mpox_edge.edge.model.classifier import default_model_dir
from mpox_edge.edge.model.manifest import ModelDir


def benchmark_app(xml: Path, size: int, threads: int, niter: int) -> float:
    cfg = {
        "CPU": {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(threads),
            "INFERENCE_PRECISION_HINT": "f32",
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    out = subprocess.run(
        [
            "benchmark_app",
            "-m",
            str(xml),
            "-d",
            "CPU",
            "-load_config",
            f.name,
            "-api",
            "sync",
            "-niter",
            str(niter),
            "-shape",
            f"[1,3,{size},{size}]",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(f.name).unlink()
    m = re.search(r"Median:\s+([\d.]+) ms", out)
    if not m:
        sys.exit(f"could not parse benchmark_app output:\n{out[-2000:]}")
    return float(m.group(1))


def mpox_bench(model: Path, threads: int, runs: int) -> tuple[float, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mpox_edge.edge.cli",
            "bench",
            "--model",
            str(model),
            "--backend",
            "openvino",
            "--threads",
            str(threads),
            "--runs",
            str(runs),
            "--warmup",
            "30",
            "--no-accuracy",
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lat = json.loads(out)["latency_ms"]
    return lat["inference_back_to_back"]["p50"], lat["inference"]["p50"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--json", help="write every round and the verdict as JSON")
    a = ap.parse_args()
    md = ModelDir.load(a.model)
    art = md.manifest.artifact("openvino", "fp32")
    if art is None:
        # the model ships ONNX only: make the IR benchmark_app needs, in a temp dir
        import openvino as ov

        tmp = Path(tempfile.mkdtemp())
        onnx = md.verify(md.manifest.artifact("onnx", "fp32"))
        ov.save_model(ov.convert_model(str(onnx)), str(tmp / "model.xml"), compress_to_fp16=False)
        xml = tmp / "model.xml"
    else:
        xml = md.verify(art)
    size = md.manifest.preprocess.input_size
    ba, mb, mp = [], [], []
    for r in range(a.rounds):
        ba.append(benchmark_app(xml, size, a.threads, a.runs))
        back, pipe = mpox_bench(Path(a.model), a.threads, a.runs)
        mb.append(back)
        mp.append(pipe)
        print(
            f"round {r + 1}: benchmark_app median {ba[-1]:.3f} ms   mpox-edge bench inference "
            f"p50 back-to-back {mb[-1]:.3f} ms, in the 1080p pipeline {mp[-1]:.3f} ms",
            flush=True,
        )
    b, m, pipe = statistics.median(ba), statistics.median(mb), statistics.median(mp)
    ratio = m / b
    per_round = statistics.median(y / x for x, y in zip(ba, mb, strict=True))
    print(
        f"median over {a.rounds} rounds: benchmark_app {b:.3f} ms, mpox-edge back-to-back "
        f"{m:.3f} ms: ratio {ratio:.3f} (median of per-round ratios {per_round:.3f}; "
        f"{'within' if ratio <= 1.10 else 'OUTSIDE'} the 10% target); in the pipeline "
        f"{pipe:.3f} ms ({pipe / b:.3f}x)"
    )
    if a.json:
        result = {"threads": a.threads, "runs": a.runs, "benchmark_app_ms": ba}
        result |= {"mpox_edge_back_to_back_ms": mb, "mpox_edge_in_pipeline_ms": mp}
        result |= {"ratio": ratio, "per_round_ratio": per_round, "pipeline_ratio": pipe / b}
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
