"""Prove at export time that the edge artifacts compute what PyTorch computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mpox_edge.edge.errors import DataError, ParityError
from mpox_edge.edge.model.backends import load_backend
from mpox_edge.edge.model.dataset import IMAGE_SUFFIXES, read_image, read_splits
from mpox_edge.edge.model.manifest import ModelDir
from mpox_edge.edge.model.preprocess import preprocess_batch

# which backend proves which artifact format
_PROVER = {"onnx": "onnxruntime", "openvino": "openvino", "ncnn": "ncnn"}


def parity_images(data: str | None, n: int, *, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Real images (fold 0 of a split, or any images under a folder) or made-up ones."""
    if data:
        root = Path(data)
        if (root / "splits.csv").is_file():
            rows = [r for r in read_splits(root / "splits.csv") if r.fold == 0]
            paths = [root / r.path for r in rows]
            src = f"{n} real images, fold 0 of {root.name}"
        elif root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            src = f"{n} real images from {root.name}"
        else:
            raise DataError(f"--parity-data {root} does not exist")
        rng = np.random.default_rng(seed)
        picked = [paths[i] for i in rng.permutation(len(paths))]
        imgs = []
        for p in picked:
            try:
                imgs.append(read_image(p))
            except DataError:
                continue
            if len(imgs) == n:
                break
        if not imgs:
            raise DataError(f"no readable images under {root} for the parity check")
        return imgs, src.replace(str(n), str(len(imgs)), 1)
    return synthetic_images(n, seed=seed), f"{n} synthetic images"


def synthetic_images(
    n: int, *, seed: int = 0, size: tuple[int, int] = (240, 320)
) -> list[np.ndarray]:
    """Smooth coloured blobs: exercise the whole dynamic range like a photo, not white noise."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        noise = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        blurred = cv2.GaussianBlur(noise, (0, 0), 6)
        img = cv2.normalize(blurred, np.empty_like(blurred), 0, 255, cv2.NORM_MINMAX)
        for _ in range(5):
            c = (int(rng.integers(0, size[1])), int(rng.integers(0, size[0])))
            cv2.circle(img, c, int(rng.integers(5, 40)), rng.integers(0, 256, 3).tolist(), -1)
        out.append(img)
    return out


def check_parity(
    model: Any, md: ModelDir, *, data: str | None, n: int, tolerance: float
) -> dict[str, Any]:
    import torch

    imgs, source = parity_images(data, n)
    x = preprocess_batch(imgs, md.manifest.preprocess)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    results: dict[str, Any] = {}
    for art in md.manifest.artifacts:
        name = _PROVER[art.format]
        be = load_backend(md, name, precision=art.precision)
        try:
            got = np.concatenate([be.infer(x[i : i + 1])["logits"] for i in range(len(x))])
        finally:
            be.close()
        diff = float(np.abs(got - ref).max())
        agree = int((got.argmax(1) == ref.argmax(1)).sum())
        results[name] = {"artifact": art.path, "max_abs_diff": diff, "top1_agree": agree}
        if diff > tolerance or agree != len(x):
            raise ParityError(
                f"{name} ({art.path}) does not match PyTorch: max |logit difference| "
                f"{diff:.2e} (limit {tolerance:.0e}), top-1 agreement {agree}/{len(x)}"
            )
    return {"inputs": source, "n": len(x), "tolerance": tolerance, "backends": results}
