"""Which images calibrate, which validate (the guard) and which only report: never the same.

Split-file mode (``splits.csv``: folds) or image-folder mode (``--val-data``, else a
deterministic stratified hold-out by file-name hash).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mpox_edge.edge.errors import CalibrationError, DataError, UsageError
from mpox_edge.edge.model.dataset import LabelledSet, read_splits, scan_folder, split_set

VALIDATION_SHARE = 0.25  # image-folder mode without --val-data: stratified hold-out


@dataclass
class Sets:
    calib: LabelledSet
    val: LabelledSet
    test: LabelledSet | None
    calib_source: str
    val_source: str
    test_source: str
    warnings: list[str]


def parse_folds(v: Sequence[int] | str | None) -> list[int]:
    if v is None:
        return []
    if isinstance(v, str):
        try:
            return [int(x) for x in v.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"folds must be a comma list of integers, not {v!r}") from None
    return [int(x) for x in v]


def resolve_sets(
    classes: list[str],
    data: str | os.PathLike[str],
    *,
    splits: str | os.PathLike[str] | None,
    calib_folds: Sequence[int],
    val_folds: Sequence[int],
    val_data: str | os.PathLike[str] | None,
    test_folds: Sequence[int],
    test_data: str | os.PathLike[str] | None,
) -> Sets:
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"calibration data directory {root} does not exist")
    split_file = Path(splits) if splits else root / "splits.csv"
    warnings: list[str] = []
    if splits or split_file.is_file():
        if val_data:
            raise UsageError("--val-data is for image folders; with a split file use --val-folds")
        if test_data:
            raise UsageError("--test-data is for image folders; use --test-folds")
        rows = read_splits(split_file)
        cf, vf, tf = set(calib_folds), set(val_folds), set(test_folds)
        if not cf or not vf:
            raise UsageError("with a split file, give both calibration and validation folds")
        if cf & vf:
            raise UsageError(
                f"calibration folds {sorted(cf)} and validation folds {sorted(vf)} overlap; "
                "the guard must validate on images calibration never saw"
            )
        if tf & (cf | vf):
            raise UsageError("test folds are for reporting only and may not be calibrated on")
        last = max(r.fold for r in rows)
        if last in cf | vf:
            warnings.append(
                f"fold {last} is by convention the held-out test fold of {split_file.name}; "
                "calibrating or validating on it makes any test figure optimistic"
            )
        try:
            calib = split_set(root, rows, classes, cf)
        except DataError as e:
            raise CalibrationError(f"the calibration set is empty: {e}") from None
        val = split_set(root, rows, classes, vf)
        test = split_set(root, rows, classes, tf) if tf else None

        def fl(f: set[int]) -> str:
            return f"{split_file.name} fold{'s' if len(f) > 1 else ''} {_fold_str(f)}"

        return Sets(calib, val, test, fl(cf), fl(vf), fl(tf) if tf else "", warnings)
    if test_folds:
        raise UsageError(f"--test-folds needs a split file ({split_file} does not exist)")
    try:
        full = scan_folder(root, classes)
    except DataError as e:
        raise CalibrationError(f"the calibration set is empty: {e}") from None
    if full.unmatched_folders:
        warnings.append(
            f"folders in {root} that match no class were ignored: "
            + ", ".join(full.unmatched_folders)
        )
    if val_data:
        val = scan_folder(val_data, classes)
        seen = {p.resolve() for p, _ in full.items}
        overlap = [p for p, _ in val.items if p.resolve() in seen]
        if overlap:
            raise UsageError(
                f"{len(overlap)} validation images are also calibration images (e.g. "
                f"{overlap[0]}); the guard must validate on images calibration never saw"
            )
        calib, vsrc = full, str(val_data)
    else:
        calib, val = _holdout(full, root)
        vsrc = f"{int(100 * VALIDATION_SHARE)}% of {root} held out by file-name hash"
    test = scan_folder(test_data, classes) if test_data else None
    return Sets(calib, val, test, str(root), vsrc, str(test_data or ""), warnings)


def _fold_str(f: set[int]) -> str:
    return ",".join(str(x) for x in sorted(f))


def _holdout(full: LabelledSet, root: Path) -> tuple[LabelledSet, LabelledSet]:
    """Deterministic stratified hold-out: the lowest hashes of each class go to validation."""
    by: dict[int, list[tuple[str, Path, int]]] = {}
    for p, y in full.items:
        rel = os.path.relpath(p, root)
        h = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()
        by.setdefault(y, []).append((h, p, y))
    calib = LabelledSet(classes=full.classes, skipped=list(full.skipped))
    val = LabelledSet(classes=full.classes)
    for items in by.values():
        items.sort()
        k = max(1, round(VALIDATION_SHARE * len(items))) if len(items) > 1 else 0
        val.items += [(p, y) for _, p, y in items[:k]]
        calib.items += [(p, y) for _, p, y in items[k:]]
    return calib, val
