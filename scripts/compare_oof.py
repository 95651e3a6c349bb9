#!/usr/bin/env python3
"""Two candidates on the same validation images, none of which either trained on.

    python3 scripts/compare_oof.py runs/eval/shipped.npz runs/cvfull/oof.npz --json out.json

Each input is ``predict_model.py`` (one model) or ``cv_oof.py`` (pooled CV models, each row
from the model that left its fold out) output. Rows are matched by path and only images in
both are compared, per collection: 4-class accuracy, NLL and ECE (15 bins) of the raw
softmax, mpox AUROC and the specificity (and normal skin referred) at the threshold giving
95% mpox sensitivity on these images (the same rule for both, so a like-for-like ROC
point, not a shipped operating point), and the max-softmax AUROC of msld2-dev Cowpox/HFMD
against the in-distribution images. No test fold is in either file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_trust import CLASSES, POS, auroc, ece, nll, screening, softmax_t  # noqa: E402


def load(path: Path) -> dict[str, Any]:
    z = np.load(path)
    return {k: z[k] for k in z.files}


def figures(z: np.ndarray, y: np.ndarray, coll: np.ndarray, uns: np.ndarray) -> dict[str, Any]:
    p = softmax_t(z, 1.0)
    pos = y == POS
    thr = screening(p[:, POS], pos, 0.95)["value"]  # fit_trust's rule: 95% of mpox at or above
    ref = p[:, POS] >= thr
    out: dict[str, Any] = {}
    for name in ["all", *sorted(set(coll.tolist()))]:
        m = np.ones(len(y), bool) if name == "all" else coll == name
        pm, ym = p[m], y[m]
        neg = m & ~pos
        out[name] = {
            "n": int(m.sum()),
            "accuracy": float((pm.argmax(1) == ym).mean()),
            "nll": nll(z[m], ym, 1.0),
            "ece": ece(pm, ym),
            "mpox_auroc": auroc(p[neg, POS], p[m & pos, POS]),
            "specificity_at_95_sensitivity": float((~ref[neg]).mean()),
            "normal_referred_at_95_sensitivity": float(
                ref[m & (y == CLASSES.index("Normal"))].mean()
            ),
        }
    pu = softmax_t(uns, 1.0)
    out["cowpox_hfmd"] = {
        "n": int(len(uns)),
        "referred_at_95_sensitivity": float((pu[:, POS] >= thr).mean()),
        "msp_auroc": auroc(-p.max(1), -pu.max(1)),  # lower confidence = more unusual
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    A, B = load(args.a), load(args.b)
    for name, d in (("a", A), ("b", B)):
        if "val_path" not in d or "unseen_path" not in d:
            ap.error(f"{name}: no val_path/unseen_path (re-run predict_model.py or cv_oof.py)")
    common = sorted(set(A["val_path"].tolist()) & set(B["val_path"].tolist()))
    ucommon = sorted(set(A["unseen_path"].tolist()) & set(B["unseen_path"].tolist()))
    rep: dict[str, Any] = {"n_common": len(common), "n_unseen_common": len(ucommon)}
    for name, d, path in (("a", A, args.a), ("b", B, args.b)):
        ix = {p: i for i, p in enumerate(d["val_path"].tolist())}
        ux = {p: i for i, p in enumerate(d["unseen_path"].tolist())}
        sel = np.asarray([ix[p] for p in common])
        usel = np.asarray([ux[p] for p in ucommon])
        rep[name] = {"file": str(path)} | figures(
            d["val_logits"][sel], d["val_label"][sel], d["val_collection"][sel],
            d["unseen_logits"][usel],
        )  # fmt: skip
    text = json.dumps(rep, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
