#!/usr/bin/env python3
"""The ensemble of several cross-validated candidates, as one out-of-fold prediction file.

    python3 scripts/ensemble_oof.py runs/cvfull/oof.npz runs/cvfull-lite1/oof.npz \
        --out runs/eval/ensemble-lite0-lite1.npz

Each input is ``cv_oof.py`` output over the same split file, so CV model k of every input
left out the same fold k: a row of the ensemble (the mean of the members' log-softmax, i.e.
the normalised geometric mean of their probabilities) is still predicted only by models
that never saw that image. Rows are matched by (path, CV model). Features are not
ensembled (they differ in meaning between members) and are left out. The output reads
like any ``cv_oof.py`` file in ``compare_oof.py``: this is how one asks whether distilling
an ensemble into one deployable model is worth its training time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_oof import load  # noqa: E402

PARTS = ("val", "unseen", "nonskin")


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _keys(f: dict[str, np.ndarray], part: str) -> list[tuple[str, int]]:
    return list(zip(f[f"{part}_path"].tolist(), f[f"{part}_model"].tolist(), strict=True))


def ensemble(files: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Members' rows aligned on the first file's (path, model) keys; a row that some member
    lacks is an error (the inputs were not made from the same split file)."""
    first = files[0]
    out: dict[str, np.ndarray] = {"classes": first["classes"]}
    for f in files[1:]:
        if list(f["classes"]) != list(first["classes"]):
            raise SystemExit(
                f"class lists differ: {list(f['classes'])} vs {list(first['classes'])}"
            )
    for part in PARTS:
        keys = _keys(first, part)
        acc = np.zeros(first[f"{part}_logits"].shape, np.float64)
        for f in files:
            ix = {k: i for i, k in enumerate(_keys(f, part))}
            missing = [k for k in keys if k not in ix]
            if missing:
                raise SystemExit(
                    f"{part}: {len(missing)} rows missing in a member, e.g. {missing[0]}"
                )
            acc += log_softmax(f[f"{part}_logits"][[ix[k] for k in keys]].astype(np.float64))
        out[f"{part}_logits"] = (acc / len(files)).astype(np.float32)
        for col in ("label", "path", "collection", "model"):
            out[f"{part}_{col}"] = first[f"{part}_{col}"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("members", nargs="+", type=Path, help="cv_oof.py npz files (2 or more)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if len(args.members) < 2:
        ap.error("an ensemble needs at least 2 members")
    for p in args.members:
        if not p.is_file():
            ap.error(f"{p}: no such file")
    out = ensemble([load(p) for p in args.members])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **out)
    print(f"wrote {args.out}: {len(out['val_path'])} validation rows, {len(args.members)} members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
