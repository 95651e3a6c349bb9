"""``mpox-edge bench``: latency per stage, cold start, memory and held-out accuracy.

Two passes over the held-out sample: an accuracy pass (every image once, at its own size,
through the shared eval code) and a latency pass (``--runs`` camera-sized frames made from
the same images; default 1920x1080, the image centred and edge-padded so the centre crop
sees it). ``end_to_end`` is what a camera pipeline pays per frame: decoded frame in memory
-> preprocess -> inference -> postprocess (softmax + decision). ``decode`` (a JPEG of the
frame, as an MJPG USB camera delivers) is reported on its own. ``inference_back_to_back``
times the runtime alone, preprocessed tensors fed with nothing in between, which is how
OpenVINO's ``benchmark_app`` measures: the gap to in-pipeline ``inference`` is what the
frame work around it costs the runtime (idle threads going to sleep, caches refilled after
a 1080p decode). JSON schema: docs/bench.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import STARTED
from ..cliopts import add_backend, add_json, write_json
from ..errors import DataError, UsageError
from ..model.classifier import Classifier, default_data_dir, default_model_dir
from ..model.dataset import scan_folder
from ..model.manifest import ModelDir
from ..model.preprocess import preprocess
from ..progress import progress
from ..system import release_free_memory, thermal
from .accuracy import average_fps, softmax
from .evaluate import evaluate_set, format_report

SCHEMA = "mpox-edge.bench/1"
DISTINCT_FRAMES = 8
STAGES = ("decode", "preprocess", "inference", "postprocess", "end_to_end")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backend(p, help="auto = the measured fastest here (cached, shared with serve)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, tensorrt (ORT); cpu, gpu, npu (OV)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "int8"],
        help="for a named backend (auto picks its own)",
    )
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--data", help="held-out image folder (default: bundled MSID fold-4 sample)")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--runs", type=int, default=200, help="timed frames in the latency pass")
    p.add_argument("--warmup", type=int, default=20, help="untimed frames first")
    p.add_argument(
        "--frame-size", default="1920x1080", help="WxH of latency-pass frames, or 'native'"
    )
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy pass")
    p.add_argument("--reselect", action="store_true", help="auto: measure again, ignore the cache")
    p.add_argument("--against", choices=["torch"], help="also time PyTorch eager (host only)")
    p.add_argument(
        "--checkpoint",
        help="with --against torch: the checkpoint the model came from (default: the one its "
        "manifest names, in the model directory or ./models/, if its sha256 matches)",
    )
    add_json(p)


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    if not len(a):
        return {}
    q = np.percentile(a, [50, 90, 99])
    return {
        "min": float(a.min()),
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def make_frame(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Scale an image to the frame height and edge-pad it to the frame width (or crop)."""
    if size is None:
        return img
    w, h = size
    s = min(w, h)
    sq = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.copyMakeBorder(
        sq,
        (h - s) // 2,
        h - s - (h - s) // 2,
        (w - s) // 2,
        w - s - (w - s) // 2,
        cv2.BORDER_REPLICATE,
    )
    return canvas


def parse_size(s: str) -> tuple[int, int] | None:
    if s == "native":
        return None
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        if w < 16 or h < 16:
            raise ValueError
        return w, h
    except ValueError:
        raise UsageError(
            f"--frame-size takes WxH (e.g. 1920x1080) or 'native', not {s!r}"
        ) from None


def latency_pass(
    clf: Classifier, jpegs: list[bytes], *, runs: int, warmup: int, torch_model: Any = None
) -> dict[str, list[float]]:
    t: dict[str, list[float]] = {k: [] for k in STAGES}
    for i in progress(range(warmup + runs), desc="latency", total=warmup + runs):
        buf = np.frombuffer(jpegs[i % len(jpegs)], np.uint8)
        t0 = time.perf_counter()
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        dt = (time.perf_counter() - t0) * 1e3
        if torch_model is not None:
            times = _torch_predict(torch_model, clf, frame)
        else:
            times = clf.predict(frame).timings_ms
        if i >= warmup:
            t["decode"].append(dt)
            for k, v in times.items():
                t[k].append(v)
    return t


def back_to_back(clf: Classifier, tensors: list[np.ndarray], *, runs: int) -> list[float]:
    """Inference only, one call after another (benchmark_app's view of the runtime)."""
    for x in tensors[:5]:
        clf.backend.infer(x)
    out = []
    for i in range(runs):
        x = tensors[i % len(tensors)]
        t0 = time.perf_counter()
        clf.backend.infer(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _torch_predict(model: Any, clf: Classifier, frame: np.ndarray) -> dict[str, float]:
    import torch

    t0 = time.perf_counter()
    x = preprocess(frame, clf.spec)
    t1 = time.perf_counter()
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)).numpy()
    t2 = time.perf_counter()
    p = softmax(logits[0].astype(np.float64))
    int(p.argmax())
    t3 = time.perf_counter()
    return {
        "preprocess": (t1 - t0) * 1e3,
        "inference": (t2 - t1) * 1e3,
        "postprocess": (t3 - t2) * 1e3,
        "end_to_end": (t3 - t0) * 1e3,
    }


def _torch_model(clf: Classifier, checkpoint: str | None, threads: int) -> Any:
    try:
        import torch
        from mpox_edge.converters.checkpoint import build_from_checkpoint
    except ImportError as e:
        raise UsageError(
            "--against torch needs the host extra: from the checkout, "
            f"python3 -m pip install -e '.[convert]' ({e})"
        ) from None
    from ..model.manifest import sha256_file

    tr = clf.model.manifest.training
    want = tr.get("checkpoint_sha256")
    if checkpoint:
        ckpt = checkpoint
        if not Path(ckpt).is_file():
            raise UsageError(f"--checkpoint {ckpt}: no such file")
        if want and sha256_file(ckpt) != want:
            raise UsageError(f"{ckpt} is not the checkpoint this model was exported from (sha256)")
    else:
        # The manifest names the checkpoint; a package ships none, a source checkout keeps it
        # in models/ (scripts/build_default_model.sh). Only the exact file (sha256) counts.
        name = tr.get("checkpoint")
        looked = [clf.model.path / name, Path("models") / name] if name else []
        found = [p for p in looked if p.is_file() and (not want or sha256_file(p) == want)]
        if not found:
            where = ", ".join(str(p) for p in looked) or "the manifest names none"
            raise UsageError(f"--against torch needs --checkpoint (not found: {where})")
        ckpt = str(found[0])
    torch.set_num_threads(threads)
    model, _ = build_from_checkpoint(ckpt, arch=clf.model.manifest.architecture)
    return model.eval()


def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.warmup < 0:
        raise UsageError("--runs must be >= 1 and --warmup >= 0")
    size = parse_size(args.frame_size)
    # Inputs first: a wrong --data must not cost a backend measurement.
    data_dir = Path(args.data) if args.data else default_data_dir()
    data = scan_folder(data_dir, ModelDir.load(args.model or default_model_dir()).manifest.classes)
    t_open = time.perf_counter()
    clf = Classifier.open(
        args.model,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        reselect=args.reselect,
        log=(lambda m: print(m, file=sys.stderr)) if args.backend == "auto" else None,
    )
    # One decoded image at a time (a user's --data may hold 12-megapixel photos), 8 distinct
    # frames (a 1080p JPEG is about 0.7 MB), and the back-to-back tensors only after the
    # latency pass: peak RSS is a reported target and these frames are the harness's own.
    jpegs: list[bytes] = []
    cold: float | None = None
    load_s = 0.0
    for _p, _y, img, _why in data.iter_images():
        if img is None:
            continue
        if not jpegs:
            clf.predict(img)
            cold = time.perf_counter() - STARTED
            load_s = time.perf_counter() - t_open
        frame = make_frame(img, size)
        jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        del img, frame
        if len(jpegs) == DISTINCT_FRAMES:
            break
    if not jpegs:
        raise DataError(f"no readable image in {data_dir}")
    release_free_memory()
    lat = latency_pass(clf, jpegs, runs=args.runs, warmup=args.warmup)
    tensors = [
        preprocess(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), clf.spec)
        for j in jpegs
    ]
    lat["inference_back_to_back"] = back_to_back(clf, tensors, runs=args.runs)
    del tensors
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "model": {
            "path": str(clf.model.path),
            "architecture": clf.model.manifest.architecture,
            "artifact": clf.backend.artifact.path,  # type: ignore[attr-defined]
            "sha256": clf.backend.artifact.sha256,  # type: ignore[attr-defined]
            "size_bytes": clf.backend.artifact.size_bytes,
        },  # type: ignore[attr-defined]
        "backend": {
            "name": clf.backend.name,
            "device": clf.backend.device,
            "precision": clf.backend.artifact.precision,  # type: ignore[attr-defined]
            "threads": clf.backend.threads,
            "requested": args.backend,
            "selection": clf.selection or None,
        },
        "frames": {
            "size": args.frame_size,
            "runs": args.runs,
            "warmup": args.warmup,
            "distinct": len(jpegs),
        },
        "latency_ms": {k: stats(v) for k, v in lat.items()},
        "average_fps": average_fps([v / 1e3 for v in lat["end_to_end"]]),
        "throughput_fps": 1e3 * len(lat["end_to_end"]) / max(sum(lat["end_to_end"]), 1e-9),
        "cold_start_s": cold,
        "cold_start_from": "interpreter",
        "cold_start_includes_selection": bool(clf.selection) and not clf.selection.get("cached"),
        "load_s": load_s,
        "thermal": thermal(),
    }
    if args.against == "torch":
        tm = _torch_model(clf, args.checkpoint, clf.backend.threads)
        tl = latency_pass(clf, jpegs, runs=args.runs, warmup=args.warmup, torch_model=tm)
        report["against_torch"] = {
            "latency_ms": {k: stats(v) for k, v in tl.items()},
            "speedup_end_to_end_p50": stats(tl["end_to_end"])["p50"]
            / report["latency_ms"]["end_to_end"]["p50"],
            "speedup_inference_p50": stats(tl["inference"])["p50"]
            / report["latency_ms"]["inference"]["p50"],
        }
    if not args.no_accuracy:
        acc = evaluate_set(clf, scan_folder(data_dir, clf.classes), desc="accuracy")
        acc["data"] = str(data_dir)
        del acc["probs"], acc["labels"], acc["paths"]
        report["accuracy"] = acc
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    clf.close()
    write_json(args.json, report)
    if args.json != "-":
        print("\n".join(format_bench(report)))
    return 0


def format_bench(r: dict[str, Any]) -> list[str]:
    b, m = r["backend"], r["model"]
    sel = b.get("selection") or {}
    lines = [
        f"model     {m['architecture']}  {m['artifact']} ({m['size_bytes'] / 1e6:.2f} MB)",
        f"backend   {b['name']} / {b['device']} / {b['precision']}  threads {b['threads']}"
        + (f"  (auto{', cached' if sel.get('cached') else ''})" if sel else ""),
        f"frames    {r['frames']['runs']} x {r['frames']['size']} "
        f"(+{r['frames']['warmup']} warm-up)",
    ]
    qs = ("min", "p50", "p90", "p99", "max")
    rows = [
        ("back-to-back" if k == "inference_back_to_back" else k, r["latency_ms"][k])
        for k in (*STAGES, "inference_back_to_back")
        if r["latency_ms"].get(k)
    ]
    # Columns widen with the largest figure (1000 ms and up under emulation or on a slow
    # device) and always keep a space between them.
    w = max([8] + [len(f"{s[q]:.3f}") + 1 for _, s in rows for q in qs])
    lines.append(f"{'stage':<13}" + "".join(f"{q:>{w}}" for q in qs) + "  ms")
    for name, s in rows:
        lines.append(f"{name:<13}" + "".join(f"{s[q]:>{w}.3f}" for q in qs))
    cold = r["cold_start_s"]
    how = ""
    if sel:
        how = (
            "; auto's choice read from its cache"
            if sel.get("cached")
            else ("; includes auto measuring every candidate")
        )
    lines += [
        "  back-to-back = inference alone, tensors fed one after another (benchmark_app's "
        "method); the in-pipeline inference row pays for the frame work around it",
        f"average FPS {r['average_fps']:.1f} (mean of 1/end-to-end per frame)  throughput "
        f"{r['throughput_fps']:.1f} fps (frames / total end-to-end time)",
        f"cold start {f'{cold:.2f} s' if cold else 'n/a'} (interpreter start -> first "
        f"prediction{how})  peak RSS {r['peak_rss_mb']:.0f} MB",
    ]
    if sel.get("cache_file"):
        lines.append(f"auto cache {sel['cache_file']}")
    th = r["thermal"]
    if th.get("cpu_temp_c") or th.get("throttled"):
        lines.append(f"thermal   {th.get('cpu_temp_c')} {th.get('throttled', '')}".rstrip())
    if "against_torch" in r:
        a = r["against_torch"]
        lines.append(
            f"vs PyTorch eager: end-to-end p50 {a['latency_ms']['end_to_end']['p50']:.3f}"
            f" ms -> {a['speedup_end_to_end_p50']:.1f}x faster (inference "
            f"{a['speedup_inference_p50']:.1f}x)"
        )
    if "accuracy" in r:
        lines += format_report(r["accuracy"])[1:]
    return lines
