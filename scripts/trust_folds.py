#!/usr/bin/env python3
"""Which folds of which collection a checkpoint trained on, in ``predict_model.py`` terms.

    python3 scripts/trust_folds.py CHECKPOINT COMBINED_SPLITS

Prints three lines: the ``--val`` spec (each trained-on collection's validation folds; every
non-test fold of a collection the model never saw), the ``--train`` spec and a description
for the manifest. Read from the checkpoint's own ``train_config`` so the build script never
restates (and never mis-states) what a model was trained on. Fold 4 never appears.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from mpox_edge.converters.checkpoint import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("splits", type=Path, help="combine_splits.py output (both collections)")
    args = ap.parse_args(argv)
    meta = load_checkpoint(args.checkpoint)[2]
    cfg = meta.get("train_config") or {}
    test = int(cfg.get("test_fold", 4))
    with args.splits.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    folds: dict[str, set[int]] = {}
    for r in rows:
        folds.setdefault(r.get("collection") or "msid", set()).add(int(r["fold"]))
    used = Path(cfg.get("splits_used") or cfg.get("splits") or "")
    if not used.is_file():
        print(f"trust_folds: the checkpoint's split file {used} is not here", file=sys.stderr)
        return 2
    with used.open(newline="", encoding="utf-8") as f:
        trained_cols = {r.get("collection") or "msid" for r in csv.DictReader(f)}
    tr, va = list(cfg.get("train_folds", [])), list(cfg.get("val_folds", []))
    val, train, desc = [], [], []
    for c in sorted(folds):
        if c in trained_cols:
            train.append(f"{c}:{','.join(map(str, tr))}")
            if va:
                val.append(f"{c}:{','.join(map(str, va))}")
                desc.append(f"{c} fold{'s' if len(va) > 1 else ''} {','.join(map(str, va))}")
        else:
            rest = sorted(k for k in folds[c] if k != test)
            val.append(f"{c}:{','.join(map(str, rest))}")
            desc.append(f"{c} folds {','.join(map(str, rest))}")
    if not val:
        print("trust_folds: the checkpoint has no validation folds", file=sys.stderr)
        return 2
    print(";".join(val))
    print(";".join(train))
    print(
        " + ".join(desc) + ", 4 classes, msld2 images overlapping MSID removed; "
        "none trained on by this model"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
