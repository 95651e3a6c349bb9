#!/usr/bin/env python3
"""Does decoding camera JPEGs at reduced size (DCT domain) change the model's answers?

Each bundled held-out image becomes a camera-sized frame exactly as bench makes its frames
(scaled to the frame height, edge-padded), is JPEG-encoded (quality 90, as bench), then
decoded twice: in full, and at the reduction the daemon would use (edge/kiosk/frames.py:
1/2 for 720p, 1/4 for 1080p with a 224 px model, ROI off). Both go through the same
Classifier. Reported: accuracy both ways, top-1 agreement, the largest probability change,
and the decode time of each (medians, this machine).

    python3 scripts/reduced_decode_check.py                      # 1920x1080 and 1280x720
    python3 scripts/reduced_decode_check.py --sizes 1920x1080 --precision int8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from mpox_edge.edge.kiosk.frames import FrameNeed, decode_jpeg, reduction
from mpox_edge.edge.model.classifier import Classifier, default_data_dir
from mpox_edge.edge.model.dataset import scan_folder
from mpox_edge.edge.reports.bench import make_frame


def check(clf: Classifier, data: Path, size: tuple[int, int], roi: bool) -> dict[str, Any]:
    need = FrameNeed.for_model(clf.spec.input_size, roi=roi)
    factor = reduction(*size, need)
    ys, full_p, red_p, t_full, t_red = [], [], [], [], []
    for _path, y, img, _why in scan_folder(data, clf.classes).iter_images():
        if img is None:
            continue
        buf = cv2.imencode(".jpg", make_frame(img, size), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        t0 = time.perf_counter()
        a = decode_jpeg(buf, 1)
        t1 = time.perf_counter()
        b = decode_jpeg(buf, factor)
        t2 = time.perf_counter()
        assert a is not None and b is not None
        t_full.append((t1 - t0) * 1e3)
        t_red.append((t2 - t1) * 1e3)
        ys.append(y)
        full_p.append(clf.predict(a).probs)
        red_p.append(clf.predict(b).probs)
    y = np.asarray(ys)
    pf, pr = np.stack(full_p), np.stack(red_p)
    return {
        "frame_size": f"{size[0]}x{size[1]}",
        "reduction": factor,
        "decoded_size": f"{size[0] // factor}x{size[1] // factor}",
        "images": len(ys),
        "accuracy_full": float((pf.argmax(1) == y).mean()),
        "accuracy_reduced": float((pr.argmax(1) == y).mean()),
        "correct_full": int((pf.argmax(1) == y).sum()),
        "correct_reduced": int((pr.argmax(1) == y).sum()),
        "top1_agreement": float((pf.argmax(1) == pr.argmax(1)).mean()),
        "max_abs_prob_change": float(np.abs(pf - pr).max()),
        "mean_abs_prob_change": float(np.abs(pf - pr).mean()),
        "decode_ms_full_median": statistics.median(t_full),
        "decode_ms_reduced_median": statistics.median(t_red),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="image folder (default: the bundled held-out sample)")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--sizes", default="1920x1080,1280x720")
    ap.add_argument("--roi", action="store_true", help="the reduction the daemon uses with ROI on")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)
    clf = Classifier.open(args.model, backend=args.backend, precision=args.precision)
    data = Path(args.data) if args.data else default_data_dir()
    try:
        rows = [
            check(clf, data, (int(w), int(h)), args.roi)
            for w, h in (s.lower().split("x") for s in args.sizes.split(","))
        ]
    finally:
        clf.close()
    for r in rows:
        print(
            f"{r['frame_size']} -> 1/{r['reduction']} ({r['decoded_size']}): accuracy "
            f"{r['accuracy_full']:.3f} full vs {r['accuracy_reduced']:.3f} reduced "
            f"({r['correct_full']} vs {r['correct_reduced']} of {r['images']}), top-1 agreement "
            f"{r['top1_agreement']:.3f}, max |dp| {r['max_abs_prob_change']:.3f}; decode "
            f"{r['decode_ms_full_median']:.2f} -> {r['decode_ms_reduced_median']:.2f} ms"
        )
    out = {"backend": clf.description, "precision": args.precision, "roi": args.roi, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
