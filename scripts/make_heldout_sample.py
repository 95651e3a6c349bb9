#!/usr/bin/env python3
"""Re-encode MSID fold 4 (the held-out test set) as the small sample shipped in the package.

    python3 scripts/make_heldout_sample.py [--msid ../shared/datasets/msid]

Writes edge/data/heldout/<Class>/<name>.webp and ATTRIBUTION.md. Lossless WebP keeps every
pixel of the original PNGs (so figures on the sample equal figures on fold 4) in about
6.5 MB; JPEG was tried first and cost the default model 2 points of accuracy.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
from mpox_edge.edge.model.dataset import read_image, read_splits

REPO = Path(__file__).resolve().parents[1]
ATTRIBUTION = """# Bundled held-out sample: MSID fold 4

These {n} images are fold 4 (the held-out test fold of the project's leakage-free 5-fold
split) of the Monkeypox Skin Images Dataset (MSID): D. Bala and M. S. Hossain, "Monkeypox
Skin Images Dataset (MSID)", Mendeley Data, dataset r9bfpnvyxr. They are re-encoded from
the original 224x224 PNGs as lossless WebP (identical pixels) by
`scripts/make_heldout_sample.py` to keep the package small. Credit the authors wherever
these images or numbers derived from them are shown, and check the source's licence before
any commercial use.

Counts: {counts}.
No model shipped with mpox-edge was trained, selected, tuned or calibrated on these images.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--msid", default=str(REPO.parent / "shared" / "datasets" / "msid"))
    ap.add_argument("--out", default=str(REPO / "edge" / "data" / "heldout"))
    a = ap.parse_args()
    root, out = Path(a.msid), Path(a.out)
    rows = [r for r in read_splits(root / "splits.csv") if r.fold == 4]
    shutil.rmtree(out, ignore_errors=True)
    counts: dict[str, int] = {}
    for r in rows:
        img = read_image(root / r.path)
        dst = out / r.label / (Path(r.path).stem + ".webp")
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
        if not np.array_equal(read_image(dst), img):
            raise SystemExit(f"{dst}: lossless WebP did not round-trip")
        counts[r.label] = counts.get(r.label, 0) + 1
    text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(n=len(rows), counts=text))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {len(rows)} images ({text}) to {out}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
