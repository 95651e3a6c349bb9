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

import cv2

from .. import STARTED
from ..cliopts import add_backend, add_json, write_json
from ..errors import DataError, UsageError
from ..model.classifier import Classifier, default_data_dir, default_model_dir
from ..model.dataset import scan_folder
from ..model.manifest import ModelDir
from ..model.preprocess import preprocess
from ..system import release_free_memory, thermal
from .accuracy import average_fps
from .benchreport import SCHEMA, BackendInfo, BenchReport, FramesInfo, ModelInfo, compare_torch
from .evaluate import evaluate_set
from .latency import back_to_back, decode, latency_pass, make_frame, parse_size, stats

DISTINCT_FRAMES = 8
__all__ = ["SCHEMA", "BenchReport", "add_arguments", "make_frame", "run", "stats"]


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
    tensors = [preprocess(decode(j), clf.spec) for j in jpegs]
    lat["inference_back_to_back"] = back_to_back(clf.backend, tensors, runs=args.runs)
    del tensors
    be, art = clf.backend, clf.backend.artifact
    latency_ms = {k: stats(v) for k, v in lat.items()}
    report = BenchReport(
        model=ModelInfo(
            path=str(clf.model.path),
            architecture=clf.model.manifest.architecture,
            artifact=art.path,
            sha256=art.sha256,
            size_bytes=art.size_bytes,
        ),
        backend=BackendInfo(
            name=be.name,
            device=be.device,
            precision=art.precision,
            threads=be.threads,
            requested=args.backend,
            selection=clf.selection or None,
        ),
        frames=FramesInfo(
            size=args.frame_size, runs=args.runs, warmup=args.warmup, distinct=len(jpegs)
        ),
        latency_ms=latency_ms,
        average_fps=average_fps([v / 1e3 for v in lat["end_to_end"]]),
        throughput_fps=1e3 * len(lat["end_to_end"]) / max(sum(lat["end_to_end"]), 1e-9),
        cold_start_s=cold,
        cold_start_includes_selection=bool(clf.selection) and not clf.selection.get("cached"),
        load_s=load_s,
        thermal=thermal(),
    )
    if args.against == "torch":
        ref = _torch_reference(clf, args.checkpoint)
        try:
            tl = latency_pass(ref, jpegs, runs=args.runs, warmup=args.warmup, desc="torch")
        finally:
            ref.close()
        report.against_torch = compare_torch(latency_ms, {k: stats(v) for k, v in tl.items()})
    if not args.no_accuracy:
        acc = evaluate_set(clf, scan_folder(data_dir, clf.classes), desc="accuracy")
        acc["data"] = str(data_dir)
        del acc["probs"], acc["labels"], acc["paths"]
        report.accuracy = acc
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    clf.close()
    write_json(args.json, report.to_dict())
    if args.json != "-":
        print("\n".join(report.format_lines()))
    return 0


def _torch_reference(clf: Classifier, checkpoint: str | None) -> Classifier:
    """PyTorch eager on the same model (host side, ``converters.torchref``)."""
    try:
        from mpox_edge.converters.torchref import TorchBackend, open_reference
    except ImportError as e:
        raise UsageError(f"--against torch needs the host side of mpox-edge ({e})") from None
    pr = TorchBackend.probe()
    if not pr.available:
        raise UsageError(
            "--against torch needs the host extra: from the checkout, "
            f"python3 -m pip install -e '.[convert]' ({pr.reason})"
        )
    return open_reference(clf.model, checkpoint, threads=clf.backend.threads)
