"""``mpox-edge eval``: accuracy of one or more exported models on a held-out image folder.

The same ``evaluate_set`` feeds bench's accuracy section, so the device, the bench and the
README report one set of numbers computed one way.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..cliopts import REFERENCE_BACKEND, add_backend, add_json, ints, write_json
from ..errors import DataError, UsageError
from ..model.classifier import Classifier, default_data_dir
from ..model.dataset import LabelledSet, read_splits, scan_folder, split_set
from ..progress import progress
from .accuracy import (
    average_fps,
    classification_report,
    practicality_scores,
    threshold_for_sensitivity,
)


def evaluate_set(
    clf: Classifier, data: LabelledSet, *, show_progress: bool | None = None, desc: str = "eval"
) -> dict[str, Any]:
    """Predict every readable image; unreadable ones are counted and listed, never fatal."""
    ys: list[int] = []
    probs: list[np.ndarray] = []
    lat: list[float] = []
    for _path, y, img, _why in progress(
        data.iter_images(), total=len(data.items), desc=desc, enabled=show_progress
    ):
        if img is None:
            continue
        pred = clf.predict(img)
        ys.append(y)
        probs.append(pred.probs)
        lat.append(pred.timings_ms["end_to_end"] / 1e3)
    report = classification_report(
        ys,
        np.stack(probs) if probs else np.zeros((0, len(clf.classes))),
        clf.classes,
        positive_class=clf.model.manifest.positive_class,
        threshold=(clf.model.manifest.screening_threshold or {}).get("value"),
    )
    report["probs"] = [[float(v) for v in p] for p in probs]
    report["labels"] = ys
    report["skipped"] = [{"path": p, "reason": r} for p, r in data.skipped]
    report["n_skipped"] = len(data.skipped)
    report["unmatched_folders"] = data.unmatched_folders
    report["average_fps"] = average_fps(lat)
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", help="model directories (default: the shipped model)")
    p.add_argument(
        "--data",
        help="held-out image folder, one sub-folder per class "
        "(default: the bundled MSID fold-4 sample)",
    )
    p.add_argument(
        "--splits", help="split file (path,label,group,fold); DATA is then its image root"
    )
    p.add_argument(
        "--folds", type=ints, help="with --splits: comma list of folds to evaluate (default 4)"
    )
    p.add_argument(
        "--choose-threshold",
        type=float,
        metavar="SENSITIVITY",
        help="record in the model's manifest the p(positive) threshold reaching this "
        "sensitivity on DATA (validation data only; refused on fold 4 of a split)",
    )
    add_backend(
        p,
        default=REFERENCE_BACKEND,
        help="the fp32 reference by default; auto = what bench and the kiosk run (it picks "
        "the precision itself)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, tensorrt (ORT); cpu, gpu, npu (OV)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "int8"],
        help="for a named backend (auto picks its own)",
    )
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="table of all models with a Practicality Score (0.15 accuracy + 0.40 FPS + "
        "0.35 sensitivity + 0.15 specificity, each min-max normalised across the models)",
    )
    add_json(p, "the full report")


def run(args: argparse.Namespace) -> int:
    models = args.models or [None]
    if args.compare and len(models) < 2:
        raise UsageError("--compare needs at least two model directories")
    data_dir = Path(args.data) if args.data else default_data_dir()
    folds = _folds(args)
    if args.choose_threshold is not None:
        if not 0 < args.choose_threshold <= 1 or len(models) != 1:
            raise UsageError("--choose-threshold takes a sensitivity in (0, 1] and one model")
        if args.splits and 4 in folds:
            raise UsageError("fold 4 is the held-out test set: choose thresholds on another fold")
    results = []
    for m in models:
        clf = Classifier.open(
            m,
            backend=args.backend,
            device=args.device,
            precision=args.precision,
            threads=args.threads,
        )
        try:
            if args.splits:
                data = split_set(data_dir, read_splits(args.splits), clf.classes, folds)
            else:
                data = scan_folder(data_dir, clf.classes)
            rep = evaluate_set(clf, data, desc=Path(str(clf.model.path)).name)
        finally:
            clf.close()
        rep["model"] = str(clf.model.path)
        rep["architecture"] = clf.model.manifest.architecture
        rep["backend"] = clf.description
        where = f" folds {sorted(folds)}" if args.splits else ""
        rep["data"] = str(data_dir) + where
        if args.choose_threshold is not None:
            # The manifest ships to other machines: name the data set, not this host's path.
            on = Path(data_dir).resolve().name + where
            rep["screening_threshold"] = _record_threshold(clf, rep, args.choose_threshold, on)
        del rep["probs"], rep["labels"]
        results.append(rep)
    if args.compare:
        rows = [
            {
                "accuracy": r["accuracy"],
                "fps": r["average_fps"],
                "recall": r.get("screening", {}).get("sensitivity", math.nan),
                "specificity": r.get("screening", {}).get("specificity", math.nan),
            }
            for r in results
        ]
        for r, s in zip(results, practicality_scores(rows), strict=True):
            r["practicality_score"] = s
    out = {"schema": "mpox-edge.eval/1", "results": results}
    write_json(args.json, out)
    if args.json == "-":
        return 0
    for r in results:
        print("\n".join(format_report(r)))
    if args.compare:
        print("\n".join(format_compare(results)))
    return 0


def _folds(args: argparse.Namespace) -> set[int]:
    if not args.splits:
        if args.folds:
            raise UsageError("--folds needs --splits")
        return set()
    return set(args.folds or ()) or {4}


def _record_threshold(
    clf: Classifier, rep: dict[str, Any], target: float, chosen_on: str
) -> dict[str, Any]:
    pos_name = clf.model.manifest.positive_class
    if pos_name is None:
        raise UsageError("the model's manifest names no positive (screening) class")
    pos = clf.classes.index(pos_name)
    y = np.asarray(rep["labels"]) == pos
    p = np.asarray(rep["probs"])[:, pos]
    try:
        value = threshold_for_sensitivity(y, p, target)
    except ValueError:
        raise DataError(
            f"--choose-threshold: the data ({chosen_on}) holds no readable {pos_name} image, "
            "so no threshold can reach a sensitivity; use validation data with positives"
        ) from None
    rec = {"value": value, "target_sensitivity": target, "chosen_on": chosen_on, "n": rep["n"]}
    md = clf.model
    old = (md.manifest.screening_threshold or {}).get("value")
    md.manifest.screening_threshold = rec
    md.save()
    was = f" (was {old:.4f})" if isinstance(old, (int, float)) else ""
    print(
        f"screening threshold: refer when p({pos_name}) >= {value:.4f}{was}, the highest "
        f"reaching {target:.1%} sensitivity on {chosen_on} (n={rep['n']}); written to "
        f"{md.path / 'manifest.json'} (screening_threshold)",
        file=sys.stderr,
    )
    return rec


def _pct(v: float) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.1f}%"


def format_report(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r.get('architecture', '')} ({r.get('model', '')}) on {r.get('backend', '')}",
        f"  images {r['n']}  skipped {r['n_skipped']}  accuracy {_pct(r['accuracy'])}  "
        f"macro F1 {_pct(r['macro_f1'])}  macro AUC {r['macro_auc']:.3f}  "
        f"micro AUC {r['micro_auc']:.3f}",
        f"  {'class':<12}{'n':>5}{'prec':>8}{'recall':>8}{'spec':>8}{'F1':>8}{'AUC':>7}",
    ]
    for c, m in r["per_class"].items():
        lines.append(
            f"  {c:<12}{m['support']:>5}{_pct(m['precision']):>8}{_pct(m['recall']):>8}"
            f"{_pct(m['specificity']):>8}{_pct(m['f1']):>8}{m['auc']:>7.3f}"
        )
    names = list(r["per_class"])
    w = max(5, *(len(c) + 1 for c in names))
    lines.append("  confusion matrix: rows are the true class, columns the predicted class")
    lines.append(f"  {'':<12}" + "".join(f"{c:>{w}}" for c in names))
    for c, row in zip(names, r["confusion_matrix"], strict=False):
        lines.append(f"  {c:<12}" + "".join(f"{v:>{w}d}" for v in row))
    s = r.get("screening")
    if s:
        lo, hi = s["sensitivity_ci95"]
        slo, shi = s["specificity_ci95"]
        how = "argmax" if s.get("threshold") is None else f"p >= {s['threshold']:.3f}"
        lines.append(
            f"  screening {s['positive_class']} vs rest ({how}): sensitivity "
            f"{_pct(s['sensitivity'])} (95% CI {_pct(lo)}-{_pct(hi)}), specificity "
            f"{_pct(s['specificity'])} (95% CI {_pct(slo)}-{_pct(shi)})"
        )
    if r.get("unmatched_folders"):
        lines.append(f"  folders matching no class (ignored): {', '.join(r['unmatched_folders'])}")
    for sk in r["skipped"][:10]:
        lines.append(f"  skipped {sk['path']}: {sk['reason']}")
    if r["n_skipped"] > 10:
        lines.append(f"  ... and {r['n_skipped'] - 10} more skipped")
    return lines


def format_compare(results: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"{'model':<28}{'acc':>8}{'FPS':>8}{'recall':>8}{'spec':>8}{'practicality':>14}"]
    for r in results:
        s = r.get("screening", {})
        lines.append(
            f"{Path(r['model']).name[:27]:<28}{_pct(r['accuracy']):>8}"
            f"{r['average_fps']:>8.1f}{_pct(s.get('sensitivity', math.nan)):>8}"
            f"{_pct(s.get('specificity', math.nan)):>8}{r['practicality_score']:>14.3f}"
        )
    return lines
