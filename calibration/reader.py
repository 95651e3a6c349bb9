"""Real images, preprocessed once by the runtime's own ``preprocess``, for int8 calibration.

``CalibrationReader`` is the one iterator both quantizers consume: ONNX Runtime pulls it
through the ``CalibrationDataReader`` protocol (``get_next``/``rewind``) and NNCF iterates it
through ``nncf.Dataset``. Both see the very same arrays, made by
``mpox_edge.edge.model.preprocess.preprocess`` from the manifest's preprocessing spec, so
calibration and on-device inference can never disagree about resize, crop, colour order or
mean/std.

This module also holds the checks that refuse a calibration set which would silently
produce a bad int8 model (empty, too small, a class missing, noise instead of photos).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mpox_edge.edge.errors import CalibrationError
from mpox_edge.edge.model.dataset import LabelledSet
from mpox_edge.edge.model.manifest import Preprocess
from mpox_edge.edge.model.preprocess import preprocess

MIN_IMAGES = 32  # fewer and activation ranges are noise: refuse
WARN_IMAGES = 100  # fewer works but is fragile: warn
UNBALANCED_RATIO = 5.0  # largest / smallest class count above this: warn
# Synthetic-data heuristic (see docs/int8.md): share of spectral energy above a quarter of
# the sampling rate. MSID photos: median 0.01, max 0.32; white noise 0.76-0.83.
NOISE_HF_FRACTION = 0.5
BLANK_STD = 1e-3  # a constant frame (std of the normalised grey image)
SYNTHETIC_SHARE = 0.10  # refuse when more than this share of images looks synthetic


@dataclass
class ImageSet:
    """Preprocessed ``(1, 3, S, S)`` float32 arrays with their labels and source paths."""

    classes: list[str]
    arrays: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable: (path, reason)

    def __len__(self) -> int:
        return len(self.arrays)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for y in self.labels:
            out[self.classes[y]] += 1
        return out

    def subset(self, indices: Sequence[int]) -> ImageSet:
        return ImageSet(
            classes=self.classes,
            arrays=[self.arrays[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            paths=[self.paths[i] for i in indices],
            skipped=list(self.skipped),
        )


def stratified_subset(labels: Sequence[int], n: int, *, seed: int = 0) -> list[int]:
    """Indices of ``n`` items keeping class proportions (every present class kept)."""
    if n >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    for idx in by_class.values():
        rng.shuffle(idx)
    total = len(labels)
    take = {y: max(1, round(n * len(idx) / total)) for y, idx in by_class.items()}
    while sum(take.values()) > n:  # rounding overshoot: trim the largest class
        y = max(take, key=lambda k: take[k])
        take[y] -= 1
    while sum(take.values()) < n:
        y = max(by_class, key=lambda k: len(by_class[k]) - take[k])
        take[y] += 1
    out = [i for y, idx in by_class.items() for i in idx[: take[y]]]
    return sorted(out)


def load_images(
    data: LabelledSet,
    spec: Preprocess,
    *,
    limit: int | None = None,
    seed: int = 0,
    wrap: Callable[..., Any] | None = None,
    desc: str = "images",
) -> ImageSet:
    """Decode and preprocess every readable image of a labelled set (at most ``limit``).

    The subset (when ``limit`` is given) is stratified and chosen before decoding, from a
    fixed seed, so a run is reproducible. Unreadable files are counted, never fatal.
    """
    items = list(data.items)
    if limit is not None and limit < len(items):
        keep = stratified_subset([y for _, y in items], limit, seed=seed)
        items = [items[i] for i in keep]
    sub = LabelledSet(classes=data.classes, items=items)
    out = ImageSet(classes=list(data.classes))
    it = sub.iter_images()
    if wrap is not None:
        it = wrap(it, total=len(items), desc=desc)
    for path, y, img, _why in it:
        if img is None:
            continue
        out.arrays.append(preprocess(img, spec, color_order="BGR"))
        out.labels.append(y)
        out.paths.append(str(path))
    out.skipped = list(data.skipped) + list(sub.skipped)
    return out


class CalibrationReader:
    """One iterator over preprocessed real images for ONNX Runtime and NNCF.

    * ONNX Runtime: ``quantize_static(..., calibration_data_reader=reader)`` calls
      ``get_next()`` until it returns ``None`` (``rewind()`` starts over); the class satisfies
      ``onnxruntime.quantization.CalibrationDataReader`` by its ``get_next`` method.
    * NNCF: ``reader.nncf_dataset()`` wraps the reader in ``nncf.Dataset``; NNCF iterates it
      (a fresh pass each time) and receives the same array objects ORT receives.
    """

    def __init__(self, images: ImageSet | Sequence[np.ndarray], input_name: str = "input") -> None:
        self.arrays: list[np.ndarray] = list(
            images.arrays if isinstance(images, ImageSet) else images
        )
        self.input_name = input_name
        self.progress: Callable[..., Any] | None = None  # e.g. tqdm, for each NNCF pass
        self._pos = 0
        self._end = len(self.arrays)

    # -- shared -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.arrays)

    def __iter__(self) -> Iterator[np.ndarray]:
        """A fresh pass over every array (what ``nncf.Dataset`` iterates)."""
        if self.progress is not None:
            return iter(self.progress(self.arrays, total=len(self.arrays), desc="calibration"))
        return iter(self.arrays)

    # -- ONNX Runtime CalibrationDataReader protocol ----------------------------------------
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        x = self.arrays[self._pos]
        self._pos += 1
        return {self.input_name: x}

    def rewind(self) -> None:
        self._pos, self._end = 0, len(self.arrays)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Used by ORT's strided MinMax calibration."""
        self._pos, self._end = start_index, min(end_index, len(self.arrays))

    # -- NNCF -------------------------------------------------------------------------------
    def nncf_dataset(self) -> Any:
        import nncf

        return nncf.Dataset(self)


# -- refusing bad calibration sets ----------------------------------------------------------
def image_looks_synthetic(x: np.ndarray) -> str | None:
    """Why one preprocessed image looks like noise or a blank frame, or None.

    Natural photographs put almost all their spectral energy at low spatial frequencies
    (roughly a 1/f^2 power spectrum); white noise spreads it evenly. We measure the share
    of energy above a quarter of the sampling rate on the grey image the model sees. This
    catches random-noise and constant images only; smooth generated images (blurred
    noise, rendered gradients) pass, which is why ``allow_synthetic`` must be declared.
    """
    g = np.asarray(x, dtype=np.float64).reshape(-1, *x.shape[-2:]).mean(axis=0)
    g = g - g.mean()
    if g.std() < BLANK_STD:
        return "constant (blank) image"
    power = np.abs(np.fft.rfft2(g)) ** 2
    fy = np.fft.fftfreq(g.shape[0])[:, None]
    fx = np.fft.rfftfreq(g.shape[1])[None, :]
    high = power[np.hypot(fy, fx) > 0.25].sum() / max(power.sum(), 1e-30)
    if high > NOISE_HF_FRACTION:
        return f"noise-like ({100 * high:.0f}% of its energy at high spatial frequency)"
    return None


@dataclass
class SetCheck:
    """What ``check_calibration_set`` found (recorded in the report and the manifest)."""

    n: int
    counts: dict[str, int]
    distinct: int
    synthetic: list[tuple[str, str]]  # (path, why) of images that look generated
    warnings: list[str]


def check_calibration_set(
    images: ImageSet, *, allow_synthetic: bool = False, what: str = "calibration set"
) -> SetCheck:
    """Refuse (``CalibrationError``) or warn about a set that would make a bad int8 model."""
    n = len(images)
    unreadable = f" ({len(images.skipped)} unreadable files skipped)" if images.skipped else ""
    if n == 0:
        raise CalibrationError(f"the {what} is empty: no readable images{unreadable}")
    if n < MIN_IMAGES:
        raise CalibrationError(
            f"the {what} has {n} images{unreadable}; int8 calibration needs at least "
            f"{MIN_IMAGES} real images (100+ recommended)"
        )
    counts = images.counts()
    missing = [c for c, k in counts.items() if k == 0]
    if missing:
        raise CalibrationError(
            f"the {what} has no images of class {', '.join(missing)}; every class the model "
            "predicts must be represented (activation ranges differ per class)"
        )
    digests = {hashlib.sha1(a.tobytes()).hexdigest() for a in images.arrays}
    if len(digests) < MIN_IMAGES:
        raise CalibrationError(
            f"the {what} has only {len(digests)} distinct images among {n} (duplicates); "
            f"int8 calibration needs at least {MIN_IMAGES} different real images"
        )
    synthetic = []
    for p, a in zip(images.paths, images.arrays, strict=True):
        why = image_looks_synthetic(a)
        if why:
            synthetic.append((p, why))
    warnings: list[str] = []
    if synthetic and not allow_synthetic:
        share = len(synthetic) / n
        example = f"{synthetic[0][0]}: {synthetic[0][1]}"
        if share > SYNTHETIC_SHARE:
            raise CalibrationError(
                f"{len(synthetic)} of {n} images in the {what} look synthetic or random (e.g. "
                f"{example}); calibrate on real photos, or pass --allow-synthetic to accept "
                "it (recorded in the manifest)"
            )
        warnings.append(f"{len(synthetic)} image(s) in the {what} look synthetic, e.g. {example}")
    if n < WARN_IMAGES:
        warnings.append(
            f"the {what} has only {n} images; {WARN_IMAGES}+ give steadier activation ranges"
        )
    lo, hi = min(counts.values()), max(counts.values())
    if hi / lo > UNBALANCED_RATIO:
        warnings.append(
            f"the {what} is badly unbalanced ({', '.join(f'{c} {k}' for c, k in counts.items())})"
        )
    if len(digests) < n:
        warnings.append(f"the {what} holds {n - len(digests)} duplicate image(s)")
    return SetCheck(
        n=n, counts=counts, distinct=len(digests), synthetic=synthetic, warnings=warnings
    )
