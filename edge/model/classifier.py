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

from ..reports.accuracy import softmax
from .backends import Backend, check_options, load_backend
from .manifest import ModelDir
from .preprocess import preprocess


def default_model_dir() -> Path:
    """The model shipped inside the package."""
    return Path(str(resources.files("mpox_edge.edge") / "data" / "default_model"))


def default_data_dir() -> Path:
    """The small held-out sample shipped inside the package (MSID fold 4, re-encoded)."""
    return Path(str(resources.files("mpox_edge.edge") / "data" / "heldout"))


@dataclass
class Prediction:
    probs: np.ndarray  # (num_classes,)
    index: int
    label: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    features: np.ndarray | None = None  # (C, h, w) when the model exports a CAM map

    @property
    def confidence(self) -> float:
        return float(self.probs[self.index])


class Classifier:
    """One model on one backend/device/precision."""

    def __init__(
        self, model: ModelDir, backend: Backend, *, selection: dict[str, Any] | None = None
    ) -> None:
        self.model = model
        self.backend = backend
        self.classes = model.manifest.classes
        self.spec = model.manifest.preprocess
        self.selection = selection or {}

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
        **backend_options: Any,
    ) -> Classifier:
        """Open a model; ``backend='auto'`` measures the candidates (or reuses the cached pick).

        ``backend_options`` may name any registered backend's options (e.g. ``spin=False``,
        ``trt_cache_dir=...`` for ONNX Runtime); the chosen backend takes its own, and a key
        that no backend declares is a ``UsageError`` with a did-you-mean.
        """
        check_options(backend_options)  # a typo fails before auto measures anything
        md = ModelDir.load(model_dir or default_model_dir())
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
            return cls(md, be, selection=choice)
        be = load_backend(
            md,
            backend,
            device=device,
            precision=precision,
            threads=threads,
            options=backend_options,
        )
        return cls(md, be)

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
        p = softmax(outs["logits"][0].astype(np.float64))
        i = int(p.argmax())
        t3 = time.perf_counter()
        feats = outs.get("features")
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
        )

    def close(self) -> None:
        self.backend.close()
