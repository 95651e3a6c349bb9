#!/usr/bin/env python3
"""Find msld2-dev images that are originals of MSID photos (MSID crops/re-framings of them).

Perceptual hashes miss crops, so this matches local features: SIFT on every image, one
FLANN (KD-tree) index over all MSID descriptors, Lowe's ratio test per msld2 descriptor,
then for each MSID image that collected enough votes a RANSAC homography; a pair is an
overlap when the homography has >= --min-inliers inliers.

    python3 scripts/find_overlap.py [--msid DIR] [--msld2 DIR] [--out models/msld2-msid-overlap.csv]

Writes ``msld2_path,msld2_fold,msld2_label,msid_path,msid_fold,inliers`` (one row per
overlapping msld2 image, its best MSID match) and prints how many fall in each fold.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent.parent


def _default_shared() -> Path:
    for cand in (HERE.parent / "shared", HERE.parent.parent / "shared"):
        if (cand / "datasets").is_dir():
            return cand / "datasets"
    return HERE.parent / "shared" / "datasets"


def overlap_paths(path: Path) -> set[str]:
    """The msld2-dev images of an overlap file written by this script, as paths relative to
    the datasets folder (``msld2-dev/...``, the form combine_splits.py's rows use)."""
    with path.open(newline="", encoding="utf-8") as f:
        return {f"msld2-dev/{r['msld2_path']}" for r in csv.DictReader(f)}


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "splits.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sift(sift: cv2.SIFT, path: Path, max_side: int) -> tuple[list, np.ndarray | None]:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return [], None
    s = max_side / max(img.shape)
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    kp, des = sift.detectAndCompute(img, None)
    # normalise keypoint coordinates to the original scale (matters only for the homography)
    pts = [k.pt for k in kp]
    return pts, des


def main(argv: list[str] | None = None) -> int:
    shared = _default_shared()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--msid", type=Path, default=shared / "msid")
    ap.add_argument("--msld2", type=Path, default=shared / "msld2-dev")
    ap.add_argument("--out", type=Path, default=HERE / "models" / "msld2-msid-overlap.csv")
    ap.add_argument("--ratio", type=float, default=0.75, help="Lowe ratio (default 0.75)")
    ap.add_argument("--min-inliers", type=int, default=10, help="RANSAC inliers (default 10)")
    ap.add_argument("--max-side", type=int, default=512, help="resize longer side to this")
    ap.add_argument("--nfeatures", type=int, default=2000, help="SIFT keypoints per image")
    ap.add_argument("--candidates", type=int, default=5, help="MSID images verified per query")
    args = ap.parse_args(argv)
    for d in (args.msid, args.msld2):
        if not (d / "splits.csv").is_file():
            print(f"find_overlap: {d}/splits.csv not found", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    cv2.setNumThreads(1)
    sift = cv2.SIFT_create(nfeatures=args.nfeatures)
    msid = _rows(args.msid)
    m_pts, m_des, owner = [], [], []
    for i, r in enumerate(msid):
        pts, des = _sift(sift, args.msid / r["path"], args.max_side)
        m_pts.append(np.float32(pts))
        if des is not None:
            m_des.append(des)
            owner.append(np.full(len(des), i, np.int32))
    all_des = np.concatenate(m_des).astype(np.float32)
    all_owner = np.concatenate(owner)
    offsets = {}
    pos = 0
    for i, p in enumerate(m_pts):
        offsets[i] = pos
        pos += len(p)
    flann = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})
    flann.add([all_des])
    flann.train()
    print(
        f"indexed {len(all_des)} MSID descriptors from {len(msid)} images "
        f"in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    out_rows = []
    msld = _rows(args.msld2)
    for r in msld:
        pts, des = _sift(sift, args.msld2 / r["path"], args.max_side)
        if des is None or len(des) < 2:
            continue
        q_pts = np.float32(pts)
        knn = flann.knnMatch(des.astype(np.float32), k=2)
        good = [
            (m.queryIdx, m.trainIdx)
            for m, n in (p for p in knn if len(p) == 2)
            if m.distance < args.ratio * n.distance
        ]
        if not good:
            continue
        votes: dict[int, list[tuple[int, int]]] = {}
        for q, t in good:
            j = int(all_owner[t])
            votes.setdefault(j, []).append((q, t - offsets[j]))
        best = (0, -1)
        for j in sorted(votes, key=lambda j: -len(votes[j]))[: args.candidates]:
            pairs = votes[j]
            if len(pairs) < max(8, args.min_inliers // 2):
                continue
            src = q_pts[[q for q, _ in pairs]].reshape(-1, 1, 2)
            dst = m_pts[j][[t for _, t in pairs]].reshape(-1, 1, 2)
            _, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
            n_in = int(mask.sum()) if mask is not None else 0
            if n_in > best[0]:
                best = (n_in, j)
        if best[0] >= args.min_inliers:
            m = msid[best[1]]
            out_rows.append(
                {
                    "msld2_path": r["path"],
                    "msld2_fold": r["fold"],
                    "msld2_label": r["label"],
                    "msid_path": m["path"],
                    "msid_fold": m["fold"],
                    "inliers": best[0],
                }
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(
            f,
            fieldnames=[
                "msld2_path",
                "msld2_fold",
                "msld2_label",
                "msid_path",
                "msid_fold",
                "inliers",
            ],
        )
        w.writeheader()
        w.writerows(out_rows)
    by_fold: dict[str, int] = {}
    for o in out_rows:
        by_fold[o["msld2_fold"]] = by_fold.get(o["msld2_fold"], 0) + 1
    m4 = sum(1 for o in out_rows if o["msid_fold"] == "4")
    print(
        f"{len(out_rows)} of {len(msld)} msld2-dev images match an MSID photo "
        f"(>= {args.min_inliers} RANSAC inliers); per msld2 fold {dict(sorted(by_fold.items()))}; "
        f"{m4} match an MSID fold-4 photo; wrote {args.out} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
