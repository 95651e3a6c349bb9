#!/usr/bin/env python3
"""One split file over several collections, so ``mpox-edge train`` trains on all of them.

    python3 scripts/combine_splits.py --out runs/combined.csv \
        [--datasets ROOT] [--overlap models/msld2-msid-overlap.csv]

Paths become relative to the common root (``msid/Monkeypox/x.png``), so the training
command is ``mpox-edge train ROOT --splits runs/combined.csv``. Rules:

- only rows whose label is one of ``--classes`` (aliases via ``match_class``) are kept:
  msld2-dev's Cowpox and HFMD are never trained on (they are the unseen-disease check);
- an msld2-dev image that is the original of an MSID photo (``find_overlap.py``) joins its
  MSID photo's fold, so the pair never straddles two cross-validation folds; if that MSID
  photo is in the test fold (4) the msld2 image is dropped (it would leak the test fold);
- msld2-dev overlap images already in fold 4 are dropped from the file (reports exclude
  them as well);
- each row keeps a ``collection`` column, and groups are prefixed with it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))
from find_overlap import _default_shared  # noqa: E402

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]


def main(argv: list[str] | None = None) -> int:
    from mpox_edge.edge.model.dataset import match_class

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=Path, default=_default_shared())
    ap.add_argument("--collections", default="msid,msld2-dev")
    ap.add_argument("--overlap", type=Path, default=HERE / "models" / "msld2-msid-overlap.csv")
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--test-fold", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    classes = args.classes.split(",")
    overlap: dict[str, int] = {}
    if args.overlap.is_file():
        with args.overlap.open(newline="", encoding="utf-8") as f:
            overlap = {r["msld2_path"]: int(r["msid_fold"]) for r in csv.DictReader(f)}
    else:
        print(f"combine_splits: no overlap file {args.overlap}", file=sys.stderr)
        return 2
    out, dropped, moved = [], {"unseen class": 0, "overlaps test fold": 0}, 0
    for coll in args.collections.split(","):
        sp = args.datasets / coll / "splits.csv"
        if not sp.is_file():
            print(f"combine_splits: {sp} not found", file=sys.stderr)
            return 2
        with sp.open(newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                y = match_class(r["label"], classes)
                if y is None:
                    dropped["unseen class"] += 1
                    continue
                fold = int(r["fold"])
                if coll != "msid" and r["path"] in overlap:
                    mf = overlap[r["path"]]
                    if mf == args.test_fold or fold == args.test_fold:
                        dropped["overlaps test fold"] += 1
                        continue
                    moved += fold != mf
                    fold = mf
                out.append(
                    {
                        "path": f"{coll}/{r['path']}",
                        "label": classes[y],
                        "group": f"{coll}:{r['group']}",
                        "fold": fold,
                        "collection": coll,
                    }
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group", "fold", "collection"])
        w.writeheader()
        w.writerows(out)
    print(
        f"wrote {len(out)} rows to {args.out} (root {args.datasets}); dropped {dropped}; "
        f"{moved} msld2 overlap images moved to their MSID photo's fold"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
