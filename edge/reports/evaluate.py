"""``mpox-edge eval``: accuracy, screening, calibration and trust figures of exported models
on one or more named collections (held-out image folders or folds of split files).

The same ``evaluate_set`` feeds bench's accuracy section, so the device, the bench and the
README report one set of numbers computed one way. docs/eval.md explains every figure.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..cliopts import REFERENCE_BACKEND, add_backend, add_json, write_json
from ..errors import DataError, UsageError
from ..model.classifier import Classifier, default_data_dir
from ..model.dataset import LabelledSet
from ..progress import progress
from . import collections as colls
from .accuracy import (
    average_fps,
    classification_report,
    practicality_scores,
    softmax,
    threshold_for_sensitivity,
)
from .evalformat import format_collection, format_compare, format_report
from .reliability import calibration_report, manifest_temperature
from .runs import run_collection
from .screening import collection_report

__all__ = ["evaluate_set", "format_report", "add_arguments", "run"]


def evaluate_set(
    clf: Classifier, data: LabelledSet, *, show_progress: bool | None = None, desc: str = "eval"
) -> dict[str, Any]:
    """Predict every readable image; unreadable ones are counted and listed, never fatal."""
    ys: list[int] = []
    probs: list[np.ndarray] = []
    lat: list[float] = []
    paths: list[str] = []
    for path, y, img, _why in progress(
        data.iter_images(), total=len(data.items), desc=desc, enabled=show_progress
    ):
        if img is None:
            continue
        pred = clf.predict(img)
        ys.append(y)
        paths.append(str(path))
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
    report["paths"] = paths
    report["skipped"] = [{"path": p, "reason": r} for p, r in data.skipped]
    report["n_skipped"] = len(data.skipped)
    report["unmatched_folders"] = data.unmatched_folders
    report["average_fps"] = average_fps(lat)
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", help="model directories (default: the shipped model)")
    colls.add_arguments(p)
    p.add_argument(
        "--choose-threshold",
        type=float,
        metavar="SENSITIVITY",
        help="record in the model's manifest the p(positive) threshold reaching this "
        "sensitivity on DATA (validation data only; refused on fold 4 of a split)",
    )
    p.add_argument(
        "--as-kiosk",
        action="store_true",
        help="also run each photo through the daemon's decision path (quality gate, "
        "unsure, refer/clear) and report gated beside ungated figures",
    )
    p.add_argument(
        "--kiosk-config",
        metavar="TOML",
        help="with --as-kiosk: the daemon config whose [decision] and [roi] to use "
        "(default: the built-in defaults)",
    )
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNG plots here (confusion matrix, reliability diagram, ROC, "
        "coverage-risk); needs matplotlib: pip install 'mpox-edge[plots]'",
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


def _check(args: argparse.Namespace, models: list[Any], specs: list[Any]) -> None:
    if args.compare and len(models) < 2:
        raise UsageError("--compare needs at least two model directories")
    if args.kiosk_config and not args.as_kiosk:
        raise UsageError("--kiosk-config needs --as-kiosk")
    if args.choose_threshold is not None:
        if not 0 < args.choose_threshold <= 1 or len(models) != 1 or len(specs) != 1:
            raise UsageError(
                "--choose-threshold takes a sensitivity in (0, 1], one model and one --data"
            )
        sp = specs[0]
        if (sp.splits or sp.folds) and colls.TEST_FOLD in colls.parse_folds(sp.folds):
            raise UsageError("fold 4 is the held-out test set: choose thresholds on another fold")
    if args.plots:
        from . import plots

        plots.require()


def _kiosk_pipeline(args: argparse.Namespace, clf: Classifier) -> Any:
    if not args.as_kiosk:
        return None
    from ..kiosk import config as kconfig
    from ..kiosk.pipeline import Pipeline

    cfg = kconfig.load(args.kiosk_config) if args.kiosk_config else kconfig.Config()
    return Pipeline(clf, cfg.decision, cfg.roi)


def evaluate_collection(
    clf: Classifier, coll: colls.Collection, pipeline: Any = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every figure of one model on one collection, and the per-image arrays behind them."""
    rec = run_collection(clf, coll, pipeline=pipeline)
    arr = rec.arrays()
    man = clf.model.manifest
    thr = (man.screening_threshold or {}).get("value")
    known = arr["y"] >= 0
    rep = classification_report(
        arr["y"][known].tolist(),
        arr["probs"][known],
        clf.classes,
        positive_class=man.positive_class,
        threshold=thr,
    )
    rep.update(collection_report(arr, rec.labels, clf.classes, man.positive_class, thr, rec.kiosk))
    if manifest_temperature(man) and "logits" in arr and known.any():
        # ECE before calibration: the same images through a plain softmax of the raw logits
        rep["calibration_raw"] = calibration_report(softmax(arr["logits"][known]), arr["y"][known])
    unseen = sorted({lab for lab, y in zip(rec.labels, rec.y, strict=True) if y < 0})
    rep.update(
        name=coll.name,
        data=coll.description,
        folds=coll.folds,
        n_images=len(rec.y),
        n_unseen=int((~known).sum()),
        unseen_labels=unseen,
        excluded=coll.excluded,
        skipped=[{"path": p, "reason": r} for p, r in coll.skipped],
        n_skipped=len(coll.skipped),
        average_fps=average_fps(rec.latency_s),
    )
    arr["labels"] = np.asarray(rec.labels)
    # Per image, relative to the collection's root: what the arm64 check compares with x86.
    rep["predictions"] = [
        {"path": _relative(p, coll.root), "label": lab, "probs": [float(v) for v in pr]}
        for p, lab, pr in zip(rec.paths, rec.labels, rec.probs, strict=True)
    ]
    return rep, arr


def run(args: argparse.Namespace) -> int:
    models = args.models or [None]
    specs = args.collections or [colls.CollectionSpec()]
    _check(args, models, specs)
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
            pipeline = _kiosk_pipeline(args, clf)
            reps = []
            # --choose-threshold pools its one --data: the threshold is for the whole set
            split = args.choose_threshold is None
            loaded = [
                c
                for sp in specs
                for c in colls.load_all(sp, clf.classes, default_data_dir(), split=split)
            ]
            for coll in loaded:
                rep, arr = evaluate_collection(clf, coll, pipeline)
                if args.plots:
                    from . import plots

                    rep["plots"] = plots.write_all(
                        Path(args.plots),
                        f"{Path(str(clf.model.path)).name}-{coll.name}",
                        rep,
                        arr,
                        clf,
                    )
                if args.choose_threshold is not None:
                    # The manifest ships to other machines: name the data set, not a path.
                    on = coll.root.resolve().name + (f" folds {coll.folds}" if coll.folds else "")
                    rep["screening_threshold"] = _record_threshold(
                        clf, arr, args.choose_threshold, on
                    )
                reps.append(rep)
        finally:
            clf.close()
        res = {k: v for k, v in reps[0].items()}  # the first collection at top level, as before
        res.update(
            model=str(clf.model.path),
            architecture=clf.model.manifest.architecture,
            backend=clf.description,
            collections=reps,
        )
        results.append(res)
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
    out = {"schema": "mpox-edge.eval/2", "results": results}
    write_json(args.json, out)
    if args.json == "-":
        return 0
    for r in results:
        print(f"{r.get('architecture', '')} ({r.get('model', '')}) on {r.get('backend', '')}")
        for c in r["collections"]:
            print("\n".join(format_collection(c)))
    if args.compare:
        print("\n".join(format_compare(results)))
    return 0


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _record_threshold(
    clf: Classifier, arr: dict[str, np.ndarray], target: float, chosen_on: str
) -> dict[str, Any]:
    pos_name = clf.model.manifest.positive_class
    if pos_name is None:
        raise UsageError("the model's manifest names no positive (screening) class")
    pos = clf.classes.index(pos_name)
    known = arr["y"] >= 0
    n = int(known.sum())
    y = arr["y"][known] == pos
    p = arr["probs"][known][:, pos]
    try:
        value = threshold_for_sensitivity(y, p, target)
    except ValueError:
        raise DataError(
            f"--choose-threshold: the data ({chosen_on}) holds no readable {pos_name} image, "
            "so no threshold can reach a sensitivity; use validation data with positives"
        ) from None
    rec = {"value": value, "target_sensitivity": target, "chosen_on": chosen_on, "n": n}
    md = clf.model
    old = (md.manifest.screening_threshold or {}).get("value")
    md.manifest.screening_threshold = rec
    md.save()
    was = f" (was {old:.4f})" if isinstance(old, (int, float)) else ""
    print(
        f"screening threshold: refer when p({pos_name}) >= {value:.4f}{was}, the highest "
        f"reaching {target:.1%} sensitivity on {chosen_on} (n={n}); written to "
        f"{md.path / 'manifest.json'} (screening_threshold)",
        file=sys.stderr,
    )
    return rec
