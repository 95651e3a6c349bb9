"""How much to trust one answer: temperature-calibrated probabilities and an "unsure" score.

Both come from what the model already outputs (numpy only, runs on the device):

- ``calibrated_probs``: ``softmax(logits / T)``; ``T`` is fitted on pooled out-of-fold
  validation logits (``scripts/fit_trust.py``) and recorded in the manifest's
  ``temperature``. ``T = 1`` is the raw softmax, so old manifests behave exactly as before.
- ``ood_score``: higher means further from what the model was trained on. Kinds:
  ``energy`` (``-logsumexp(logits)``), ``maxlogit`` (``-max logit``), ``msp`` (``1 - max``
  calibrated probability) and ``mahalanobis`` (squared distance of the pooled CAM
  ``features`` to the nearest training-class mean under one shared precision matrix, the
  statistics shipped as an npz in the model directory with its sha256 in the manifest).
  The manifest's ``ood.threshold`` turns it into the ``unsure`` decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IntegrityError, ManifestError

OOD_KINDS = ("energy", "maxlogit", "msp", "mahalanobis")
NEEDS_FEATURES = ("mahalanobis",)


@dataclass(frozen=True)
class OodSpec:
    """The manifest's ``ood`` section: which score, and above which value it is unsure."""

    kind: str  # one of OOD_KINDS
    threshold: float  # score > threshold -> unsure
    stats_file: str | None = None  # npz in the model dir (mahalanobis)
    sha256: str | None = None  # of stats_file

    def __post_init__(self) -> None:
        if self.kind not in OOD_KINDS:
            raise ManifestError(f"ood.kind {self.kind!r} is not one of {', '.join(OOD_KINDS)}")
        if not math.isfinite(self.threshold):
            raise ManifestError(f"ood.threshold must be a finite number, not {self.threshold}")
        if self.kind in NEEDS_FEATURES and not (self.stats_file and self.sha256):
            raise ManifestError(f"ood.kind {self.kind!r} needs stats_file and sha256")


@dataclass(frozen=True)
class OodStats:
    """Training-feature statistics for the Mahalanobis score.

    ``z = normalise?(pool(features)) [- center] [@ projection]``; the score is
    ``min_k (z - means[k]) @ precision @ (z - means[k])``.
    """

    means: np.ndarray  # (K, d)
    precision: np.ndarray  # (d, d)
    center: np.ndarray | None = None  # (C,)
    projection: np.ndarray | None = None  # (C, d)
    normalize: bool = False

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "means": self.means.astype(np.float32),
            "precision": self.precision.astype(np.float32),
            "normalize": np.asarray(self.normalize),
        }
        if self.center is not None:
            arrays["center"] = self.center.astype(np.float32)
        if self.projection is not None:
            arrays["projection"] = self.projection.astype(np.float32)
        with open(path, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool

    @classmethod
    def load(cls, path: str | Path) -> OodStats:
        try:
            with np.load(path, allow_pickle=False) as z:
                means = np.asarray(z["means"], np.float64)
                prec = np.asarray(z["precision"], np.float64)
                center = np.asarray(z["center"], np.float64) if "center" in z else None
                proj = np.asarray(z["projection"], np.float64) if "projection" in z else None
                norm = bool(z["normalize"]) if "normalize" in z else False
        except (OSError, KeyError, ValueError) as e:
            raise ManifestError(f"{path}: not an OOD statistics file ({e})") from None
        d = means.shape[1] if means.ndim == 2 else -1
        if prec.shape != (d, d) or (proj is not None and proj.shape[1] != d):
            raise ManifestError(f"{path}: OOD statistics have inconsistent shapes")
        return cls(means, prec, center, proj, norm)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        dims: int | None = None,
        shrinkage: float = 0.1,
        normalize: bool = False,
    ) -> OodStats:
        """Class means and one shared, shrunk precision from (N, C) training features.

        With ``dims`` the features are first projected onto their top ``dims`` principal
        components: a 1280-d covariance from a few hundred photos is singular, and the
        projection keeps the shipped file small.
        """
        f = pool_features(features).astype(np.float64)
        if normalize:
            f = _l2(f)
        center, proj = None, None
        if dims is not None and dims < f.shape[1]:
            center = f.mean(axis=0)
            _, _, vt = np.linalg.svd(f - center, full_matrices=False)
            proj = vt[:dims].T
            f = (f - center) @ proj
        classes = np.unique(labels)
        means = np.stack([f[labels == k].mean(axis=0) for k in classes])
        resid = f - means[np.searchsorted(classes, labels)]
        cov = resid.T @ resid / max(len(f) - len(classes), 1)
        d = cov.shape[0]
        cov = (1 - shrinkage) * cov + shrinkage * (np.trace(cov) / d) * np.eye(d)
        return cls(means, np.linalg.inv(cov), center, proj, normalize)


@dataclass(frozen=True)
class Trust:
    """What the manifest says about calibrating and doubting the model's answers."""

    temperature: float = 1.0
    ood: OodSpec | None = None

    @classmethod
    def from_manifest(cls, manifest: Any, model_dir: str | Path | None = None) -> Trust:
        """Read ``temperature`` and ``ood``; absent sections mean T = 1 and no unsure."""
        t_sec = getattr(manifest, "temperature", None) or {}
        o_sec = getattr(manifest, "ood", None) or {}
        try:
            t = float(t_sec.get("value", 1.0))
        except (TypeError, ValueError):
            raise ManifestError(
                f"temperature.value {t_sec.get('value')!r} is not a number"
            ) from None
        if not (math.isfinite(t) and t > 0):
            raise ManifestError(f"temperature.value must be a positive number, not {t}")
        ood = None
        if o_sec:
            try:
                ood = OodSpec(
                    kind=str(o_sec["kind"]),
                    threshold=float(o_sec["threshold"]),
                    stats_file=o_sec.get("stats_file"),
                    sha256=o_sec.get("sha256"),
                )
            except (KeyError, TypeError, ValueError) as e:
                raise ManifestError(f"manifest ood section is incomplete or bad: {e}") from None
        return cls(temperature=t, ood=ood)

    def load_stats(self, model_dir: str | Path) -> OodStats | None:
        """The OOD statistics file, sha256-checked against the manifest (None if unused)."""
        if self.ood is None or not self.ood.stats_file:
            return None
        from .manifest import sha256_file

        root = Path(model_dir).resolve()
        p = (root / self.ood.stats_file).resolve()
        if root not in p.parents:
            raise ManifestError(f"ood.stats_file {self.ood.stats_file!r} escapes the model dir")
        if not p.is_file():
            raise IntegrityError(f"{model_dir}: OOD statistics {self.ood.stats_file} are missing")
        if sha256_file(p) != self.ood.sha256:
            raise IntegrityError(
                f"{model_dir}: {self.ood.stats_file} does not match the sha256 in manifest.json "
                "(modified or corrupted); refit or restore it"
            )
        return OodStats.load(p)


def calibrated_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` over the last axis, in float64 (rows sum to 1)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def pool_features(features: np.ndarray) -> np.ndarray:
    """(C, h, w) -> (C,), (N, C, h, w) -> (N, C): global average pool of the CAM map."""
    f = np.asarray(features, np.float64)
    if f.ndim == 4:
        return f.mean(axis=(2, 3))
    if f.ndim == 3:
        return f.mean(axis=(1, 2))
    return f


def _l2(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


def ood_scores(
    logits: np.ndarray,
    features: np.ndarray | None,
    kind: str,
    *,
    temperature: float = 1.0,
    stats: OodStats | None = None,
) -> np.ndarray:
    """Scores for a batch: logits (N, K), features (N, C[, h, w]); higher = more unsure."""
    z = np.atleast_2d(np.asarray(logits, np.float64))
    if kind == "energy":
        m = z.max(axis=1)
        return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))
    if kind == "maxlogit":
        return -z.max(axis=1)
    if kind == "msp":
        return 1.0 - calibrated_probs(z, temperature).max(axis=1)
    if kind == "mahalanobis":
        if stats is None or features is None:
            raise ValueError("the mahalanobis score needs the features output and its statistics")
        f = pool_features(features)
        f = np.atleast_2d(f)
        if stats.normalize:
            f = _l2(f)
        if stats.projection is not None:
            f = (f - (stats.center if stats.center is not None else 0.0)) @ stats.projection
        dist = [((f - mu) @ stats.precision * (f - mu)).sum(axis=1) for mu in stats.means]
        return np.min(dist, axis=0)
    raise ValueError(f"unknown OOD score kind {kind!r} (one of {', '.join(OOD_KINDS)})")


def ood_score(
    logits: np.ndarray, features: np.ndarray | None, trust: Trust, stats: OodStats | None
) -> float:
    """The manifest's OOD score for one image (higher = more unsure)."""
    if trust.ood is None:
        raise ValueError("this model's manifest has no ood section")
    if features is not None and np.ndim(features) in (1, 3):
        features = np.asarray(features)[None]
    s = ood_scores(
        np.atleast_2d(logits), features, trust.ood.kind, temperature=trust.temperature, stats=stats
    )
    return float(s[0])
