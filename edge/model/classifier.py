"""A loaded model ready for frames: preprocess -> backend -> softmax, with per-stage timing.

bench, eval, explain and the daemon all go through ``Classifier`` so they measure and
predict exactly the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ManifestError
from .backends import Backend, check_options, load_backend
from .manifest import ModelDir
from .preprocess import preprocess
from .trust import NEEDS_FEATURES, Trust, calibrated_probs, ood_score


def default_model_dir() -> Path:
    """The model shipped inside the package."""
    return Path(str(resources.files("mpox_edge.edge") / "data" / "default_model"))


def default_data_dir() -> Path:
    """The small held-out sample shipped inside the package (MSID fold 4, re-encoded)."""
    return Path(str(resources.files("mpox_edge.edge") / "data" / "heldout"))


@dataclass
class Prediction:
    probs: np.ndarray  # (num_classes,), temperature-calibrated when the manifest has one
    index: int
    label: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    features: np.ndarray | None = None  # (C, h, w) when the model exports a CAM map
    logits: np.ndarray | None = None  # (num_classes,) raw model output
    ood_score: float | None = None  # the manifest's "unsure" score (higher = more unsure)
    unsure: bool = False  # ood_score above the manifest's ood.threshold

    @property
    def confidence(self) -> float:
        return float(self.probs[self.index])


class Classifier:
    """One model on one backend/device/precision."""

    def __init__(
        self,
        model: ModelDir,
        backend: Backend,
        *,
        selection: dict[str, Any] | None = None,
        tampered: list[str] | None = None,
    ) -> None:
        self.model = model
        self.tampered = tampered or []  # sha256 problems served anyway (allow_tampered)
        self.backend = backend
        self.classes = model.manifest.classes
        self.spec = model.manifest.preprocess
        self.selection = selection or {}
        self.trust = Trust.from_manifest(model.manifest, model.path)
        self.ood_stats = self.trust.load_stats(model.path)
        ood = self.trust.ood
        if ood is not None and ood.kind in NEEDS_FEATURES:
            outs = tuple(backend.artifact.outputs)
            if "features" not in outs:
                raise ManifestError(
                    f"{model.path}: ood.kind {ood.kind!r} needs the 'features' output, which "
                    f"{backend.artifact.path} does not have"
                )

    @classmethod
    def open(
        cls,
        model_dir: str | Path | None = None,
        *,
        backend: str = "auto",
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        reselect: bool = False,
        cache_dir: str | Path | None = None,
        log: object = None,
        allow_tampered: bool = False,
        **backend_options: Any,
    ) -> Classifier:
        """Open a model; ``backend='auto'`` measures the candidates (or reuses the cached pick).

        ``backend_options`` may name any registered backend's options (e.g. ``spin=False``,
        ``trt_cache_dir=...`` for ONNX Runtime); the chosen backend takes its own, and a key
        that no backend declares is a ``UsageError`` with a did-you-mean.
        """
        check_options(backend_options)  # a typo fails before auto measures anything
        from .selection import verify_all

        md = ModelDir.load(model_dir or default_model_dir())
        # a sha256 mismatch anywhere in the directory refuses it (or, opted in, is reported)
        tampered = verify_all(md, allow_tampered=allow_tampered, log=log)
        if backend == "auto":
            from .selection import select_backend

            choice = select_backend(
                md,
                threads=threads,
                reselect=reselect,
                cache_dir=cache_dir,
                log=log,
                backend_options=backend_options,
            )
            be = load_backend(
                md,
                choice["backend"],
                device=choice["device"],
                precision=choice["precision"],
                threads=threads,
                options=backend_options,
            )
            return cls(md, be, selection=choice, tampered=tampered)
        be = load_backend(
            md,
            backend,
            device=device,
            precision=precision,
            threads=threads,
            options=backend_options,
        )
        return cls(md, be, tampered=tampered)

    @property
    def description(self) -> str:
        b = self.backend
        return f"{b.name}/{b.device}/{b.artifact.precision}"

    def predict(
        self, frame: np.ndarray, *, color_order: str = "BGR", with_features: bool = False
    ) -> Prediction:
        t0 = time.perf_counter()
        x = preprocess(frame, self.spec, color_order=color_order)
        t1 = time.perf_counter()
        outs = self.backend.infer(x)
        t2 = time.perf_counter()
        logits = np.asarray(outs["logits"][0], np.float64)
        p = calibrated_probs(logits, self.trust.temperature)
        i = int(p.argmax())
        feats = outs.get("features")
        score = None
        if self.trust.ood is not None:
            f0 = feats[0] if feats is not None else None
            score = ood_score(logits, f0, self.trust, self.ood_stats)
        t3 = time.perf_counter()
        return Prediction(
            probs=p,
            index=i,
            label=self.classes[i],
            timings_ms={
                "preprocess": (t1 - t0) * 1e3,
                "inference": (t2 - t1) * 1e3,
                "postprocess": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3,
            },
            features=feats[0] if (with_features and feats is not None) else None,
            logits=logits,
            ood_score=score,
            unsure=bool(score is not None and score > self.trust.ood.threshold),  # type: ignore[union-attr]
        )

    def close(self) -> None:
        self.backend.close()
