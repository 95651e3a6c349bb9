"""The accepted candidate becomes an artifact: its typed manifest record, then the files.

The record (``Int8Record``) holds everything measured: method and quantizer, calibration
set, nodes kept in float, fp32/int8 accuracy and agreement, the drop, the latency on this
machine, sizes, and the report-only test set.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mpox_edge.edge.model.backends import default_threads, load_backend
from mpox_edge.edge.model.manifest import Artifact, Int8Record, ModelDir

from .config import CalibrationConfig
from .guard import GuardResult, Quantizer, accuracy_report, compare, open_model, predict
from .quantizers import BackendQuantizer, candidate_files
from .reader import ImageSet
from .sets import Sets


@dataclass
class Measured:
    """What the run measured for the chosen candidate of one backend."""

    chosen: GuardResult
    ms: dict[str, float]  # median latency: "fp32" and each accepted variant
    variants: list[dict[str, Any]]
    user_excluded: list[str]
    test: dict[str, Any] | None
    calibration: dict[str, Any]


def int8_record(
    bq: BackendQuantizer,
    q: Quantizer,
    cfg: CalibrationConfig,
    m: Measured,
    fp32_art: Artifact,
    val: ImageSet,
    sets: Sets,
) -> Int8Record:
    c, ms = m.chosen, m.ms
    assert c.candidate is not None
    int8_bytes = sum(p.stat().st_size for p in candidate_files(bq, c.candidate))
    g = cfg.guard
    return Int8Record(
        calibrated_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        measured_backend=bq.backend,
        method=cfg.method,
        quantizer=bq.record(q),
        calibration=m.calibration,
        excluded_nodes=c.excluded,
        excluded_by_user=m.user_excluded,
        excluded_by_guard=[n for n in c.excluded if n not in set(m.user_excluded)],
        validation={
            "n": len(val),
            "source": sets.val_source,
            "fp32_accuracy": c.fp32_accuracy,
            "int8_accuracy": c.int8_accuracy,
            "top1_agreement": c.agreement,
        },
        accuracy_drop=c.drop,
        max_drop=g.max_drop,
        guard={
            "attempts": [asdict(a) for a in c.attempts],
            "most_sensitive": [[n, s] for n, s in c.ranking[:10]],
        },
        latency_ms={
            "fp32": ms["fp32"],
            "int8": ms[c.variant],
            "speedup": ms["fp32"] / ms[c.variant],
            "threads": cfg.threads or default_threads(),
            "rounds": cfg.latency.rounds,
            "runs_per_round": cfg.latency.runs,
            "statistic": "median",
            "machine": _fingerprint(),
        },
        int8_slower=ms[c.variant] >= ms["fp32"],
        variants=m.variants,
        allow_synthetic=True if cfg.data.allow_synthetic else None,
        min_agreement=g.min_agreement,
        test=m.test,
        size_bytes={
            "fp32": fp32_art.size_bytes,
            "int8": int8_bytes,
            "ratio": fp32_art.size_bytes / max(int8_bytes, 1),
        },
    )


def install(
    md: ModelDir, bq: BackendQuantizer, candidate: Path, fp32_art: Artifact, record: Int8Record
) -> Artifact:
    """Move the candidate next to the fp32 artifacts (rename: atomic) and record it.

    An older int8 artifact of this format leaves the manifest first, so a crash between
    the renames and the final save leaves at worst a file the manifest does not name,
    never a manifest entry whose file and measured drop do not belong together.
    """
    if md.manifest.artifact(bq.fmt, "int8") is not None:
        md.manifest.artifacts = [
            a for a in md.manifest.artifacts if not (a.format == bq.fmt and a.precision == "int8")
        ]
        md.save()
    rel = bq.int8_path
    weights_rel = None
    if bq.weights_suffix:
        weights_rel = str(Path(rel).with_suffix(bq.weights_suffix))
        # OpenVINO finds model.int8.bin by the .xml's name; weights first, then the .xml
        os.replace(candidate.with_suffix(bq.weights_suffix), md.file(weights_rel))
    os.replace(candidate, md.file(rel))
    art = md.make_artifact(
        fmt=bq.fmt,
        precision="int8",
        path=rel,
        weights_path=weights_rel,
        outputs=fp32_art.outputs,
        int8=record,
    )
    md.manifest.replace_artifact(art)
    return art


def evaluate_test(
    md: ModelDir,
    bq: BackendQuantizer,
    candidate: Path,
    fp32_art: Artifact,
    test: ImageSet,
    threads: int | None,
    wrap: Any,
) -> dict[str, Any]:
    """fp32 and int8 on the report-only test set, after every choice was made."""
    backend = bq.backend
    be = load_backend(md, backend, precision="fp32", threads=threads)
    try:
        l32 = predict(be, test, wrap=wrap, desc=f"{backend} fp32 test")
    finally:
        be.close()
    be = open_model(
        md, backend, bq.fmt, candidate, precision="int8", threads=threads, outputs=fp32_art.outputs
    )
    try:
        l8 = predict(be, test, wrap=wrap, desc=f"{backend} int8 test")
    finally:
        be.close()
    return {
        "n": len(test),
        **compare(l32, l8, test),
        "int8_macro_f1": accuracy_report(l8, test)["macro_f1"],
        "note": "reporting only: never used for any choice",
    }


def _fingerprint() -> str:
    from mpox_edge.edge.model.selection import hardware_fingerprint

    return hardware_fingerprint()
