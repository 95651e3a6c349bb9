"""One model over one collection: every image's probabilities, OOD score and decisions.

With a kiosk ``Pipeline`` (``eval --as-kiosk``) each photo goes through the daemon's own
``process`` as a still frame: the quality gate, then ``unsure``, then refer/clear at the
threshold in force. A photo the gate sends to retake is still predicted once, so the
ungated figures cover every image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..progress import progress
from .collections import Collection


@dataclass
class Records:
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # true label names (unseen ones too)
    y: list[int] = field(default_factory=list)  # model class index, -1: a class it lacks
    probs: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray | None] = field(default_factory=list)  # raw, before temperature
    ood: list[float] = field(default_factory=list)  # NaN: the model has no OOD score
    unsure: list[bool] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    kiosk: list[str] = field(default_factory=list)  # retake|unsure|refer|clear (as-kiosk)
    kiosk_reason: list[str] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        k = len(self.classes)
        return {
            "y": np.asarray(self.y, np.int64),
            "probs": np.stack(self.probs) if self.probs else np.zeros((0, k)),
            "ood": np.asarray(self.ood, np.float64),
            "unsure": np.asarray(self.unsure, bool),
            **(
                {"logits": np.stack([x for x in self.logits if x is not None])}
                if self.logits and all(x is not None for x in self.logits)
                else {}
            ),
        }


def run_collection(
    clf: Any, coll: Collection, *, pipeline: Any = None, show_progress: bool | None = None
) -> Records:
    """Predict every readable image of ``coll``; unreadable ones are counted in it."""
    from ..kiosk.sources import Frame  # kiosk code only for --as-kiosk users

    rec = Records(list(clf.classes))
    images = coll.iter_images()
    for i, (path, label, y, img) in enumerate(
        progress(images, total=len(coll.items), desc=coll.name, enabled=show_progress)
    ):
        if img is None:
            continue
        pred = None
        if pipeline is not None:
            r = pipeline.process(Frame(img, "BGR", i, time.monotonic(), path.name, True))
            rec.kiosk.append(r.decision.label)
            rec.kiosk_reason.append(r.decision.reason)
            pred = r.prediction
        if pred is None:
            pred = clf.predict(img)
        score = getattr(pred, "ood_score", None)
        rec.paths.append(str(path))
        rec.labels.append(label)
        rec.y.append(y)
        rec.probs.append(np.asarray(pred.probs, np.float64))
        raw = getattr(pred, "logits", None)
        rec.logits.append(None if raw is None else np.asarray(raw, np.float64))
        rec.ood.append(math.nan if score is None else float(score))
        rec.unsure.append(bool(getattr(pred, "unsure", False)))
        rec.latency_s.append(pred.timings_ms.get("end_to_end", 0.0) / 1e3)
    return rec
