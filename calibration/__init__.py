"""int8 static calibration for ONNX Runtime and OpenVINO that cannot silently lose accuracy.

    from mpox_edge.calibration import calibrate
    report = calibrate("runs/fast", data="../shared/datasets/msid")  # folds 0-2 / fold 3
    print("\\n".join(report.format_table()))

* Calibration images are real photos read by ``edge.dataset`` and turned into tensors by
  ``edge.preprocess.preprocess`` with the manifest's spec (``reader.py``); a set that is
  empty, under 32 images, missing a class or made of noise is refused.
* ONNX Runtime: ``quant_pre_process`` + ``quantize_static`` QDQ (``ort_int8.py``); OpenVINO:
  ``nncf.quantize`` or ``nncf.quantize_with_accuracy_control`` (``ov_int8.py``).
* Every candidate passes the accuracy guard (``guard.py``) on a validation set disjoint
  from the calibration set; a model that cannot fit ``max_drop`` is not written.
* Accepted int8 artifacts are written next to the fp32 ones (temp file + rename, sha256 in
  the manifest) with everything measured in ``artifact.extra``: method, calibration set,
  excluded nodes, fp32/int8 accuracy and agreement, ``accuracy_drop``, sizes and the
  int8-vs-fp32 latency on this machine.

* Which images calibrate, validate and only report is decided in ``sets.py``; the report
  (table and JSON) is ``report.py``.

Heavy imports (onnx, onnxruntime.quantization, nncf, openvino) happen inside functions.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from mpox_edge.edge.errors import CalibrationError, UsageError
from mpox_edge.edge.model.backends import REGISTRY, backend_class, load_backend
from mpox_edge.edge.model.manifest import Artifact, ModelDir

from .guard import (
    GuardResult,
    accuracy_report,
    compare,
    measure_latency,
    open_model,
    predict,
    run_guard,
)
from .ort_int8 import METHODS, OP_SCOPES, OrtOptions, OrtQuantizer
from .ov_int8 import PRESETS, OvOptions, OvQuantizer
from .reader import CalibrationReader, ImageSet, SetCheck, check_calibration_set, load_images
from .report import BackendResult, CalibrationReport
from .sets import Sets, parse_folds, resolve_sets

__all__ = [
    "BackendResult",
    "CalibrationReport",
    "CalibrationReader",
    "calibrate",
    "METHODS",
    "PRESETS",
    "OP_SCOPES",
]

INT8_PATHS = {"onnxruntime": ("model.int8.onnx", None), "openvino": ("model.int8.xml", ".bin")}
RANK_SAMPLES = 8  # calibration images used to rank layers by quantization error


# -- the command ----------------------------------------------------------------------------
def calibrate(
    model_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str],
    splits: str | os.PathLike[str] | None = None,
    calib_folds: Sequence[int] | str = (0, 1, 2),
    val_folds: Sequence[int] | str = (3,),
    val_data: str | os.PathLike[str] | None = None,
    test_folds: Sequence[int] | str = (),
    test_data: str | os.PathLike[str] | None = None,
    backends: Sequence[str] = ("onnxruntime", "openvino"),
    method: str = "minmax",
    exclude: Sequence[str] = (),
    max_drop: float = 1.0,
    min_agreement: float | None = None,
    subset_size: int = 300,
    preset: str = "performance",
    fast_bias_correction: bool = True,
    accuracy_control: bool = False,
    op_types: str = "auto",
    per_channel: bool = True,
    activation_type: str = "uint8",
    reduce_range: bool = False,
    allow_synthetic: bool = False,
    fallback_limit: float = 0.5,
    max_attempts: int = 8,
    threads: int | None = None,
    latency_rounds: int = 5,
    latency_runs: int = 20,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> CalibrationReport:
    """Quantize a model directory's fp32 artifacts to int8 behind the accuracy guard.

    ``data`` is either a root with ``splits.csv`` (or ``splits=``; calibration on
    ``calib_folds``, guard on ``val_folds``, optional report-only ``test_folds``) or an
    image folder with one sub-folder per class (guard on ``val_data``, else on a stratified
    25% hold-out). ``max_drop`` is in accuracy points (fp32 minus int8). Returns the report;
    raises ``CalibrationError`` when the calibration set is refused.
    """
    say = log or (lambda s: None)
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if not math.isfinite(max_drop):
        raise UsageError("--max-drop must be a finite number of accuracy points")
    if subset_size < 1:
        raise UsageError("--subset-size must be positive")
    backends = list(dict.fromkeys(backends))
    for b in backends:
        if b not in REGISTRY:
            raise UsageError(f"unknown backend {b!r}; known: {', '.join(REGISTRY)}")
    ort_opts = OrtOptions(
        method=method,
        op_types=op_types,
        per_channel=per_channel,
        activation_type=activation_type,
        reduce_range=reduce_range,
    )
    ov_opts = OvOptions(
        method=method,
        preset=preset,
        subset_size=subset_size,
        fast_bias_correction=fast_bias_correction,
        accuracy_control=accuracy_control,
        max_drop=max_drop,
    )
    md = ModelDir.load(model_dir)
    man = md.manifest
    wrap = _progress_wrapper(show_progress)
    sets = resolve_sets(
        man.classes,
        data,
        splits=splits,
        calib_folds=parse_folds(calib_folds),
        val_folds=parse_folds(val_folds),
        val_data=val_data,
        test_folds=parse_folds(test_folds),
        test_data=test_data,
    )
    calib = load_images(
        sets.calib, man.preprocess, limit=subset_size, wrap=wrap, desc="calibration images"
    )
    check = check_calibration_set(calib, allow_synthetic=allow_synthetic)
    warnings = sets.warnings + check.warnings
    if allow_synthetic and check.synthetic:
        warnings.append(
            f"{len(check.synthetic)} synthetic-looking calibration images accepted "
            "(--allow-synthetic, recorded in the manifest)"
        )
    val = load_images(sets.val, man.preprocess, wrap=wrap, desc="validation images")
    if not len(val):
        raise CalibrationError("the validation set has no readable images")
    vcounts = val.counts()
    if any(k == 0 for k in vcounts.values()):
        warnings.append(
            "the validation set lacks class(es) "
            + ", ".join(c for c, k in vcounts.items() if k == 0)
            + "; the drop is measured on the others only"
        )
    if len(val) < 100:
        warnings.append(
            f"the validation set has {len(val)} images: one flipped prediction moves the "
            f"accuracy by {100 / len(val):.2f} points"
        )
    test = (
        load_images(sets.test, man.preprocess, wrap=wrap, desc="test images")
        if sets.test is not None
        else None
    )
    for w in warnings:
        say(f"warning: {w}")
    report = CalibrationReport(
        model_dir=str(md.path),
        architecture=man.architecture,
        method=method,
        max_drop=max_drop,
        calibration={
            "n": len(calib),
            "per_class": check.counts,
            "source": sets.calib_source,
            "distinct": check.distinct,
            "skipped_unreadable": len(calib.skipped),
            "synthetic_looking": len(check.synthetic),
        },
        validation={"n": len(val), "per_class": vcounts, "source": sets.val_source},
        warnings=warnings,
        allow_synthetic=allow_synthetic,
    )
    work = Path(tempfile.mkdtemp(prefix=".calibrate-", suffix=".tmp", dir=md.path))
    try:
        reader = CalibrationReader(calib)
        reader.progress = wrap
        for b in backends:
            res = _calibrate_backend(
                md,
                b,
                work=work / b,
                reader=reader,
                calib=calib,
                check=check,
                val=val,
                test=test,
                sets=sets,
                ort_opts=ort_opts,
                ov_opts=ov_opts,
                exclude=list(exclude),
                max_drop=max_drop,
                min_agreement=min_agreement,
                fallback_limit=fallback_limit,
                max_attempts=max_attempts,
                threads=threads,
                latency=(latency_rounds, latency_runs),
                allow_synthetic=allow_synthetic,
                wrap=wrap,
                say=say,
            )
            report.results.append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _calibrate_backend(
    md: ModelDir,
    backend: str,
    *,
    work: Path,
    reader: CalibrationReader,
    calib: ImageSet,
    check: SetCheck,
    val: ImageSet,
    test: ImageSet | None,
    sets: Sets,
    ort_opts: OrtOptions,
    ov_opts: OvOptions,
    exclude: list[str],
    max_drop: float,
    min_agreement: float | None,
    fallback_limit: float,
    max_attempts: int,
    threads: int | None,
    latency: tuple[int, int],
    allow_synthetic: bool,
    wrap: Any,
    say: Callable[[str], None],
) -> BackendResult:
    man = md.manifest
    pr = backend_class(backend).probe()
    if not pr.available:
        return BackendResult(backend, False, f"backend not available: {pr.reason}")
    fmts = backend_class(backend).formats()
    fp32_art = next((a for a in (man.artifact(f, "fp32") for f in fmts) if a is not None), None)
    if fp32_art is None:
        return BackendResult(backend, False, "the model has no fp32 artifact this backend runs")
    fp32_path = md.verify(fp32_art)
    work.mkdir(parents=True, exist_ok=True)
    if backend == "onnxruntime":
        quantizers: list[Any] = [
            OrtQuantizer(fp32_path, work, reader, ort_opts, scope) for scope in ort_opts.scopes()
        ]
    else:
        quantizers = [
            OvQuantizer(fp32_path, work, reader, ov_opts, validation=val, threads=threads)
        ]
    say(f"{backend}: preparing {fp32_art.path}")
    for q in quantizers:  # ORT scopes share the pre-processed model and calibration cache
        q.prepare()
    user_excl = quantizers[0].resolve_exclude(exclude) if exclude else []

    fp32_be = load_backend(md, backend, precision="fp32", threads=threads)
    try:
        fp32_logits = predict(fp32_be, val, wrap=wrap, desc=f"{backend} fp32")
    finally:
        fp32_be.close()
    rank_samples = calib.arrays[:RANK_SAMPLES]
    results: list[GuardResult] = []
    for q in quantizers:
        say(f"{backend} {q.variant}: quantizing ({len(reader)} images, {ort_opts.method})")
        # Once a variant fits, another is only worth it as it is: keeping layers in float
        # to make a second variant fit would only make it slower than the first.
        limit = 0.0 if any(r.accepted for r in results) else fallback_limit
        try:
            res = run_guard(
                q,
                md,
                validation=val,
                fp32_logits=fp32_logits,
                rank_samples=rank_samples,
                max_drop=max_drop,
                min_agreement=min_agreement,
                exclude=user_excl,
                fallback_limit=limit,
                max_attempts=max_attempts,
                threads=threads,
                outputs=fp32_art.outputs,
                wrap=wrap,
                say=say,
            )
        except CalibrationError as e:  # one variant failing must not sink the others
            if len(quantizers) == 1:
                raise
            say(f"{backend} {q.variant}: {e}")
            res = GuardResult(q.backend, q.variant, False, str(e), len(val), math.nan, excluded=[])
        results.append(res)
    accepted = [r for r in results if r.accepted]
    variants = [
        {
            "variant": r.variant,
            "accepted": r.accepted,
            "int8_accuracy": r.int8_accuracy,
            "agreement": r.agreement,
            "drop": r.drop,
            "float_layers": len(r.excluded),
            "reason": r.reason,
        }
        for r in results
    ]
    old = man.artifact(quantizers[0].fmt, "int8")
    previous = (
        f"an older int8 artifact {old.path} (drop {old.extra.get('accuracy_drop')}) was left "
        "in place"
        if old is not None
        else None
    )
    if not accepted:
        best = min(results, key=lambda r: r.drop if not math.isnan(r.drop) else math.inf)
        say(f"{backend}: no int8 artifact written: {best.reason}")
        return BackendResult(
            backend,
            False,
            best.reason,
            variant=best.variant,
            fp32_accuracy=best.fp32_accuracy,
            int8_accuracy=best.int8_accuracy,
            agreement=best.agreement,
            drop=best.drop,
            excluded=best.excluded,
            variants=variants,
            previous=previous,
        )
    # latency of fp32 and every accepted candidate, interleaved, same threads
    x = val.arrays[0]
    opened: dict[str, Any] = {"fp32": load_backend(md, backend, precision="fp32", threads=threads)}
    try:
        for r in accepted:
            assert r.candidate is not None
            opened[r.variant] = open_model(
                md,
                backend,
                quantizers[0].fmt,
                r.candidate,
                precision="int8",
                threads=threads,
                outputs=fp32_art.outputs,
            )
        say(f"{backend}: timing fp32 vs int8 ({latency[0]} rounds x {latency[1]} runs)")
        ms = measure_latency(opened, x, rounds=latency[0], runs=latency[1])
        out_names = {k: list(getattr(be, "output_names", [])) for k, be in opened.items()}
    finally:
        for be in opened.values():
            be.close()
    for v in variants:
        v["int8_ms"] = ms.get(v["variant"])
    chosen = min(accepted, key=lambda r: ms[r.variant])
    for r in results:
        if r is not chosen and r.candidate is not None:
            quantizers[0].discard(r.candidate)
    assert chosen.candidate is not None
    if sorted(out_names[chosen.variant]) != sorted(out_names["fp32"]):
        raise CalibrationError(
            f"the int8 model's outputs {out_names[chosen.variant]} differ from fp32's "
            f"{out_names['fp32']}"
        )
    rel, wsuffix = INT8_PATHS[backend]
    extra: dict[str, Any] = {
        "calibrated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "measured_backend": backend,
        "method": ort_opts.method,
        "quantizer": _quantizer_record(backend, chosen.variant, ort_opts, ov_opts)
        | ({"gelu_fused": quantizers[0].gelu_fused} if backend == "onnxruntime" else {}),
        "calibration": {
            "n": len(calib),
            "per_class": check.counts,
            "source": sets.calib_source,
            "distinct": check.distinct,
        },
        "excluded_nodes": chosen.excluded,
        "excluded_by_user": user_excl,
        "excluded_by_guard": [n for n in chosen.excluded if n not in set(user_excl)],
        "validation": {
            "n": len(val),
            "source": sets.val_source,
            "fp32_accuracy": chosen.fp32_accuracy,
            "int8_accuracy": chosen.int8_accuracy,
            "top1_agreement": chosen.agreement,
        },
        "accuracy_drop": chosen.drop,
        "max_drop": max_drop,
        "guard": {
            "attempts": [asdict(a) for a in chosen.attempts],
            "most_sensitive": [[n, s] for n, s in chosen.ranking[:10]],
        },
        "latency_ms": {
            "fp32": ms["fp32"],
            "int8": ms[chosen.variant],
            "speedup": ms["fp32"] / ms[chosen.variant],
            "threads": threads or _default_threads(),
            "rounds": latency[0],
            "runs_per_round": latency[1],
            "statistic": "median",
            "machine": _fingerprint(),
        },
        "int8_slower": ms[chosen.variant] >= ms["fp32"],
        "variants": variants,
    }
    if allow_synthetic:
        extra["allow_synthetic"] = True
    if min_agreement is not None:
        extra["min_agreement"] = min_agreement
    # reporting-only test set: evaluated after every choice was made
    test_rec = None
    if test is not None and len(test):
        test_rec = _evaluate_test(
            md, backend, quantizers[0].fmt, chosen.candidate, fp32_art, test, threads, wrap
        )
        test_rec["source"] = sets.test_source
        extra["test"] = test_rec
    fp32_bytes = fp32_art.size_bytes
    int8_bytes = chosen.candidate.stat().st_size
    if wsuffix:
        int8_bytes += chosen.candidate.with_suffix(wsuffix).stat().st_size
    extra["size_bytes"] = {
        "fp32": fp32_bytes,
        "int8": int8_bytes,
        "ratio": fp32_bytes / max(int8_bytes, 1),
    }
    art = _install(md, backend, chosen.candidate, rel, wsuffix, fp32_art, extra)
    md.save()
    _check_installed(md, backend, x)
    say(f"{backend}: wrote {rel} (drop {chosen.drop:+.2f} points)")
    return BackendResult(
        backend,
        True,
        "drop within the guard",
        artifact=rel,
        variant=chosen.variant,
        fp32_accuracy=chosen.fp32_accuracy,
        int8_accuracy=chosen.int8_accuracy,
        agreement=chosen.agreement,
        drop=chosen.drop,
        excluded=chosen.excluded,
        fp32_ms=ms["fp32"],
        int8_ms=ms[chosen.variant],
        fp32_bytes=fp32_bytes,
        int8_bytes=art.size_bytes,
        variants=variants,
        test=test_rec,
    )


def _quantizer_record(
    backend: str, variant: str, ort_opts: OrtOptions, ov_opts: OvOptions
) -> dict[str, Any]:
    if backend == "onnxruntime":
        d = asdict(ort_opts)
        d.update(
            tool="onnxruntime.quantization.quantize_static",
            format="QDQ",
            variant=variant,
            op_types="Conv/MatMul/Gemm" if variant.endswith("conv") else "all",
            weight_type="int8",
        )
        return d
    d = asdict(ov_opts)
    d.update(
        tool="nncf.quantize_with_accuracy_control" if ov_opts.accuracy_control else "nncf.quantize",
        variant=variant,
    )
    d.pop("max_drop")
    return d


def _evaluate_test(
    md: ModelDir,
    backend: str,
    fmt: str,
    candidate: Path,
    fp32_art: Artifact,
    test: ImageSet,
    threads: int | None,
    wrap: Any,
) -> dict[str, Any]:
    be = load_backend(md, backend, precision="fp32", threads=threads)
    try:
        l32 = predict(be, test, wrap=wrap, desc=f"{backend} fp32 test")
    finally:
        be.close()
    be = open_model(
        md, backend, fmt, candidate, precision="int8", threads=threads, outputs=fp32_art.outputs
    )
    try:
        l8 = predict(be, test, wrap=wrap, desc=f"{backend} int8 test")
    finally:
        be.close()
    m = compare(l32, l8, test)
    return {
        "n": len(test),
        **m,
        "int8_macro_f1": accuracy_report(l8, test)["macro_f1"],
        "note": "reporting only: never used for any choice",
    }


def _install(
    md: ModelDir,
    backend: str,
    candidate: Path,
    rel: str,
    wsuffix: str | None,
    fp32_art: Artifact,
    extra: dict[str, Any],
) -> Artifact:
    """Move the candidate next to the fp32 artifacts (rename: atomic) and record it.

    An older int8 artifact of this format leaves the manifest first, so a crash between
    the renames and the final save leaves at worst a file the manifest does not name,
    never a manifest entry whose file and measured drop do not belong together.
    """
    fmt = "onnx" if backend == "onnxruntime" else "openvino"
    if md.manifest.artifact(fmt, "int8") is not None:
        md.manifest.artifacts = [
            a for a in md.manifest.artifacts if not (a.format == fmt and a.precision == "int8")
        ]
        md.save()
    dest = md.file(rel)
    weights_rel = None
    if wsuffix:
        weights_rel = str(Path(rel).with_suffix(wsuffix))
        # OpenVINO finds model.int8.bin by the .xml's name; weights first, then the .xml
        os.replace(candidate.with_suffix(wsuffix), md.file(weights_rel))
    os.replace(candidate, dest)
    art = md.make_artifact(
        fmt=fmt,
        precision="int8",
        path=rel,
        weights_path=weights_rel,
        outputs=fp32_art.outputs,
        extra=extra,
    )
    md.manifest.replace_artifact(art)
    return art


def _check_installed(md: ModelDir, backend: str, x: np.ndarray) -> None:
    """The written artifact loads through the runtime exactly as a device will load it."""
    be = load_backend(md, backend, precision="int8")
    try:
        out = be.infer(x)
        if "logits" not in out or not np.all(np.isfinite(out["logits"])):
            raise CalibrationError(f"{backend}: the written int8 artifact gives no finite logits")
    finally:
        be.close()


def _default_threads() -> int:
    from mpox_edge.edge.model.backends import default_threads

    return default_threads()


def _fingerprint() -> str:
    from mpox_edge.edge.model.selection import hardware_fingerprint

    return hardware_fingerprint()


def _progress_wrapper(enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the [convert] extra
        from mpox_edge.edge.progress import progress

        return lambda it, total=None, desc="": progress(it, total=total, desc=desc, enabled=True)

    return lambda it, total=None, desc="": tqdm(
        it, total=total, desc=desc, leave=False, dynamic_ncols=True
    )
