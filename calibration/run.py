"""``calibrate()``: the sets, then each backend's quantizer behind the accuracy guard.

What is the same for every backend lives here (the shared images from ``inputs.py``, fp32 logits,
the guard over each candidate, fp32-vs-int8 latency, install); what differs comes from the
quantizer registry (``quantizers.py``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mpox_edge.edge.errors import CalibrationError
from mpox_edge.edge.model.backends import Backend, backend_class, load_backend
from mpox_edge.edge.model.manifest import ModelDir

from .config import CalibrationConfig
from .guard import GuardResult, measure_latency, open_model, predict, run_guard
from .inputs import RunInputs, Say, calib_summary
from .install import Measured, evaluate_test, install, int8_record
from .quantizers import BackendQuantizer, quantizer_for
from .report import BackendResult, CalibrationReport

RANK_SAMPLES = 8  # calibration images used to rank layers by quantization error


def calibrate(
    model_dir: str | os.PathLike[str],
    config: CalibrationConfig | None = None,
    *,
    show_progress: bool = False,
    log: Say | None = None,
    **options: Any,
) -> CalibrationReport:
    """Quantize a model directory's fp32 artifacts to int8 behind the accuracy guard.

    Pass a ``CalibrationConfig``, or its flat keywords (``data=`` required): ``data`` is a
    root with ``splits.csv`` (calibration on ``calib_folds``, guard on ``val_folds``,
    report-only ``test_folds``) or an image folder with one sub-folder per class (guard on
    ``val_data``, else a stratified 25% hold-out). ``max_drop`` is in accuracy points (fp32
    minus int8). Raises ``UsageError`` for bad settings (all listed), ``CalibrationError``
    when the calibration set is refused.
    """
    say = log or (lambda s: None)
    cfg = config if config is not None else CalibrationConfig.from_options(**options)
    cfg.validate()
    md = ModelDir.load(model_dir)
    run = RunInputs(md, cfg, _progress_wrapper(show_progress), say)
    warnings = run.warnings()
    for w in warnings:
        say(f"warning: {w}")
    report = CalibrationReport(
        model_dir=str(md.path),
        architecture=md.manifest.architecture,
        method=cfg.method,
        max_drop=cfg.guard.max_drop,
        calibration={
            **calib_summary(run),
            "skipped_unreadable": len(run.calib.skipped),
            "synthetic_looking": len(run.check.synthetic),
        },
        validation={
            "n": len(run.val),
            "per_class": run.val.counts(),
            "source": run.sets.val_source,
        },
        warnings=warnings,
        allow_synthetic=cfg.data.allow_synthetic,
    )
    work = Path(tempfile.mkdtemp(prefix=".calibrate-", suffix=".tmp", dir=md.path))
    try:
        for b in cfg.backends:
            report.results.append(_calibrate_backend(run, quantizer_for(b, cfg), work / b))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _calibrate_backend(run: RunInputs, bq: BackendQuantizer, work: Path) -> BackendResult:
    md, cfg, say, backend = run.md, run.cfg, run.say, bq.backend
    pr = backend_class(backend).probe()
    if not pr.available:
        return BackendResult(backend, False, f"backend not available: {pr.reason}")
    fmts = backend_class(backend).formats()
    fp32_art = next((a for a in (md.manifest.artifact(f, "fp32") for f in fmts) if a), None)
    if fp32_art is None:
        return BackendResult(backend, False, "the model has no fp32 artifact this backend runs")
    fp32_path = md.verify(fp32_art)
    work.mkdir(parents=True, exist_ok=True)
    quantizers = bq.variants(fp32_path, work, run.reader, run.val)
    say(f"{backend}: preparing {fp32_art.path}")
    for q in quantizers:
        q.prepare()
    exclude = cfg.guard.exclude
    user_excl = quantizers[0].resolve_exclude(exclude) if exclude else []
    threads = cfg.threads
    fp32_be = load_backend(md, backend, precision="fp32", threads=threads)
    try:
        fp32_logits = predict(fp32_be, run.val, wrap=run.wrap, desc=f"{backend} fp32")
    finally:
        fp32_be.close()
    results: list[GuardResult] = []
    for q in quantizers:
        say(f"{backend} {q.variant}: quantizing ({len(run.reader)} images, {cfg.method})")
        # Once a variant fits, another is only worth it as it is: keeping layers in float
        # to make a second variant fit would only make it slower than the first.
        limit = 0.0 if any(r.accepted for r in results) else cfg.guard.fallback_limit
        try:
            res = run_guard(
                q,
                md,
                validation=run.val,
                fp32_logits=fp32_logits,
                rank_samples=run.calib.arrays[:RANK_SAMPLES],
                max_drop=cfg.guard.max_drop,
                min_agreement=cfg.guard.min_agreement,
                exclude=user_excl,
                fallback_limit=limit,
                max_attempts=cfg.guard.max_attempts,
                threads=threads,
                outputs=fp32_art.outputs,
                wrap=run.wrap,
                say=say,
            )
        except CalibrationError as e:  # one variant failing must not sink the others
            if len(quantizers) == 1:
                raise
            say(f"{backend} {q.variant}: {e}")
            res = GuardResult(q.backend, q.variant, False, str(e), len(run.val), math.nan)
        results.append(res)
    variants = [_variant(r) for r in results]
    accepted = [r for r in results if r.accepted]
    if not accepted:
        old = md.manifest.artifact(bq.fmt, "int8")
        best = min(results, key=lambda r: r.drop if not math.isnan(r.drop) else math.inf)
        say(f"{backend}: no int8 artifact written: {best.reason}")
        return BackendResult(
            backend,
            False,
            best.reason,
            **_measured(best),
            variants=variants,
            previous=f"an older int8 artifact {old.path} (drop "
            f"{old.int8.accuracy_drop if old.int8 else None}) was left in place"
            if old is not None
            else None,
        )
    x = run.val.arrays[0]
    lat = cfg.latency
    say(f"{backend}: timing fp32 vs int8 ({lat.rounds} rounds x {lat.runs} runs)")
    ms, out_names = _time(md, bq, accepted, fp32_art.outputs, x, cfg)
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
    chosen_q = next(q for q in quantizers if q.variant == chosen.variant)
    test_rec = None
    if run.test is not None and len(run.test):  # reporting only: after every choice
        test_rec = evaluate_test(md, bq, chosen.candidate, fp32_art, run.test, threads, run.wrap)
        test_rec["source"] = run.sets.test_source
    m = Measured(chosen, ms, variants, user_excl, test_rec, calib_summary(run))
    rec = int8_record(bq, chosen_q, cfg, m, fp32_art, run.val, run.sets)
    art = install(md, bq, chosen.candidate, fp32_art, rec)
    md.save()
    _check_installed(md, backend, x)
    say(f"{backend}: wrote {bq.int8_path} (drop {chosen.drop:+.2f} points)")
    return BackendResult(
        backend,
        True,
        "drop within the guard",
        artifact=bq.int8_path,
        **_measured(chosen),
        fp32_ms=ms["fp32"],
        int8_ms=ms[chosen.variant],
        fp32_bytes=fp32_art.size_bytes,
        int8_bytes=art.size_bytes,
        variants=variants,
        test=test_rec,
    )


def _measured(r: GuardResult) -> dict[str, Any]:
    """The guard's figures a BackendResult reports for the candidate it names."""
    return {
        "variant": r.variant,
        "fp32_accuracy": r.fp32_accuracy,
        "int8_accuracy": r.int8_accuracy,
        "agreement": r.agreement,
        "drop": r.drop,
        "excluded": r.excluded,
    }


def _variant(r: GuardResult) -> dict[str, Any]:
    return {
        "variant": r.variant,
        "accepted": r.accepted,
        "int8_accuracy": r.int8_accuracy,
        "agreement": r.agreement,
        "drop": r.drop,
        "float_layers": len(r.excluded),
        "reason": r.reason,
    }


def _time(
    md: ModelDir,
    bq: BackendQuantizer,
    accepted: list[GuardResult],
    outputs: tuple[str, ...],
    x: np.ndarray,
    cfg: CalibrationConfig,
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Latency of fp32 and every accepted candidate, interleaved, same threads."""
    threads, lat = cfg.threads, cfg.latency
    opened: dict[str, Backend] = {
        "fp32": load_backend(md, bq.backend, precision="fp32", threads=threads)
    }
    try:
        for r in accepted:
            assert r.candidate is not None
            opened[r.variant] = open_model(
                md,
                bq.backend,
                bq.fmt,
                r.candidate,
                precision="int8",
                threads=threads,
                outputs=outputs,
            )
        ms = measure_latency(opened, x, rounds=lat.rounds, runs=lat.runs)
        return ms, {k: list(be.output_names) for k, be in opened.items()}
    finally:
        for be in opened.values():
            be.close()


def _check_installed(md: ModelDir, backend: str, x: np.ndarray) -> None:
    """The written artifact loads through the runtime exactly as a device will load it."""
    be = load_backend(md, backend, precision="int8")
    try:
        out = be.infer(x)
        if "logits" not in out or not np.all(np.isfinite(out["logits"])):
            raise CalibrationError(f"{backend}: the written int8 artifact gives no finite logits")
    finally:
        be.close()


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
