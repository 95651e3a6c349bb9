#!/usr/bin/env python3
"""4-class accuracy of checkpoints on one validation fold, split by collection (no test fold).

    python3 scripts/compare_val.py models/default.pt runs/full/lite0-shift.pt \
        --splits runs/cv/combined.csv --fold 3

Used to decide whether a candidate replaces the shipped model (docs/clinical.md): each
checkpoint through its own recorded preprocessing and the one ``preprocess``; msld2-dev images
that overlap MSID (models/msld2-msid-overlap.csv) are counted apart. Refuses fold 4.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))
from find_overlap import _default_shared, overlap_paths  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--splits", type=Path, required=True, help="combine_splits.py output")
    ap.add_argument("--fold", type=int, default=3)
    ap.add_argument("--datasets", type=Path, default=_default_shared())
    ap.add_argument("--overlap", type=Path, default=HERE / "models" / "msld2-msid-overlap.csv")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.fold == 4:
        print("compare_val: fold 4 is a test fold", file=sys.stderr)
        return 2
    from mpox_edge.converters.checkpoint import build_from_checkpoint, preprocess_from_meta
    from mpox_edge.converters.traindata import preprocess_all
    from mpox_edge.converters.trainloop import evaluate_logits
    from mpox_edge.edge.model.dataset import read_image

    overlap = overlap_paths(args.overlap)
    with args.splits.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["fold"]) == args.fold]
    images = [read_image(args.datasets / r["path"]) for r in rows]  # decoded once for all
    keys = [
        r.get("collection", "msid") + (" (overlap)" if r["path"] in overlap else "") for r in rows
    ]
    out = {}
    for ck in args.checkpoints:
        model, meta = build_from_checkpoint(ck)
        spec, classes = preprocess_from_meta(meta), list(meta["classes"])
        pred = evaluate_logits(model, preprocess_all(images, spec)).argmax(1)
        hits: dict[str, list[int]] = {}
        for key, r, k in zip(keys, rows, pred, strict=True):
            hits.setdefault(key, []).append(int(k == classes.index(r["label"])))
        hits["all"] = [h for v in list(hits.values()) for h in v]
        out[str(ck)] = {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in hits.items()}
        cells = "  ".join(
            f"{k} {sum(v) / len(v):.1%} ({sum(v)}/{len(v)})" for k, v in sorted(hits.items())
        )
        print(f"{ck}: {cells}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
