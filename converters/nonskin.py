"""Frames that are not skin at all, for checking the "unsure" answer (host side, no torch).

Two sources, both available offline: the sample photographs that ship inside installed
wheels (scikit-image's ``skimage/data``, matplotlib's ``sample_data``; found on disk by
``importlib``, never downloaded), and synthetic frames a kiosk camera really produces:
blank/covered lenses, sensor noise, gradients, patterns, and documents held up to it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_PACKAGE_DIRS = (("skimage", "data"), ("matplotlib", "mpl-data/sample_data"))


def wheel_sample_paths() -> list[Path]:
    """Sample photos inside installed packages (an empty list if none is installed)."""
    out: list[Path] = []
    for pkg, sub in _PACKAGE_DIRS:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            d = Path(root) / sub
            if d.is_dir():
                out += sorted(p for p in d.rglob("*") if p.suffix.lower() in _SUFFIXES)
    return out


def _document(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size, 3), int(rng.integers(200, 256)), np.uint8)
    y = int(rng.integers(10, 30))
    while y < size - 10:
        words = " ".join(
            "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(2, 9))))
            for _ in range(int(rng.integers(3, 8)))
        )
        cv2.putText(img, words, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1)
        y += int(rng.integers(14, 24))
    return img


def synthetic_frames(
    n: int = 60, *, size: int = 320, seed: int = 0
) -> Iterator[tuple[str, np.ndarray]]:
    """``n`` synthetic non-skin BGR frames, cycling through the kinds, seeded."""
    rng = np.random.default_rng(seed)
    kinds = ("blank", "noise", "gradient", "checker", "document", "stripes")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "blank":
            img = np.empty((size, size, 3), np.uint8)
            img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
        elif kind == "noise":
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            if i % 4 == 1:
                img = np.asarray(cv2.GaussianBlur(img, (0, 0), 3), np.uint8)
        elif kind == "gradient":
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            t = np.linspace(0, 1, size)[:, None, None]
            img = np.broadcast_to(a + (b - a) * t, (size, size, 3)).astype(np.uint8)
            img = np.ascontiguousarray(img if i % 2 else img.transpose(1, 0, 2))
        elif kind == "checker":
            k = int(rng.integers(8, 64))
            yy, xx = np.mgrid[0:size, 0:size]
            m = (((yy // k) + (xx // k)) % 2).astype(np.uint8)
            img = np.stack([m * int(c) for c in rng.integers(60, 256, 3)], axis=2).astype(np.uint8)
        elif kind == "document":
            img = _document(rng, size)
        else:
            k = int(rng.integers(4, 40))
            m = ((np.arange(size) // k) % 2).astype(np.uint8)[None, :] * 255
            img = np.repeat(np.repeat(m[..., None], size, axis=0), 3, axis=2)
        yield f"synthetic/{kind}_{i:03d}", img


def nonskin_frames(n_synthetic: int = 60, *, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Wheel samples (decoded, unreadable ones skipped) followed by synthetic frames."""
    from mpox_edge.edge.errors import DataError
    from mpox_edge.edge.model.dataset import read_image

    out: list[tuple[str, np.ndarray]] = []
    for p in wheel_sample_paths():
        try:
            img = read_image(p)
        except DataError:
            continue
        if min(img.shape[:2]) >= 16:
            out.append((f"{p.parent.name}/{p.name}", img))
    out += list(synthetic_frames(n_synthetic, seed=seed))
    return out
