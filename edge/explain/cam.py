"""Class-activation heatmaps on the device, with numpy and OpenCV only.

The exporter gives every model with an exact CAM a second graph output, the last feature
map, and stores the head weights in the model directory (``manifest.cam``). For a
``GAP -> Linear`` head Grad-CAM *is* CAM: the class's classifier row weights the feature
channels. For an MLP head the weights are the exact gradient of the class score with
respect to the pooled features, back-propagated in numpy. Either way the cost on top of
inference is one small matrix product and a resize.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import cv2
import numpy as np

from ..cliopts import REFERENCE_BACKEND, add_backend, add_json, write_json
from ..errors import IntegrityError, ModelError, UsageError
from ..model.dataset import read_image
from ..model.manifest import ModelDir, sha256_file
from .camhead import mlp_grad


@dataclass
class CamHead:
    """The weights that turn a feature map into a class heatmap."""

    kind: str  # "linear" | "mlp"
    arrays: dict[str, np.ndarray]

    @classmethod
    def load(cls, md: ModelDir) -> CamHead:
        cam = md.manifest.cam
        if not cam:
            raise ModelError(
                f"{md.manifest.architecture} has no exact class-activation map "
                "(its head is not pooling + linear/MLP); no heatmap is offered"
            )
        path = md.file(cam["file"])
        if not path.is_file() or sha256_file(path) != cam["sha256"]:
            raise IntegrityError(
                f"{md.path}: {cam['file']} is missing or does not match the sha256 in manifest.json"
            )
        with np.load(path, allow_pickle=False) as z:
            return cls(cam["kind"], {k: z[k] for k in z.files})

    def channel_weights(self, features: np.ndarray, cls_index: int) -> np.ndarray:
        """Per-channel Grad-CAM weights for one class, for a (C, h, w) feature map."""
        if self.kind == "linear":
            return self.arrays["weight"][cls_index].astype(np.float64)
        pooled = features.reshape(features.shape[0], -1).mean(axis=1).astype(np.float64)
        _, grad = mlp_grad(self.arrays, pooled[None], cls_index)
        assert grad is not None
        return grad[0]

    def heatmap(self, features: np.ndarray, cls_index: int) -> np.ndarray:
        """Raw (h, w) map: ReLU(sum_k w_k A_k), normalised to [0, 1]."""
        w = self.channel_weights(features, cls_index)
        cam = np.tensordot(w, features.astype(np.float64), axes=(0, 0))
        cam = np.maximum(cam, 0.0)
        peak = cam.max()
        return (cam / peak if peak > 0 else cam).astype(np.float32)


def crop_box(shape: tuple[int, ...], size: int, resize: str) -> tuple[int, int, int, int]:
    """The part of the frame the model saw (x, y, w, h), so the heatmap lands on it."""
    h, w = shape[:2]
    if resize != "shorter_side_center_crop":
        return 0, 0, w, h
    s = min(h, w)
    return (w - s) // 2, (h - s) // 2, s, s


def overlay(
    frame: np.ndarray,
    heat: np.ndarray,
    *,
    alpha: float = 0.45,
    box: tuple[int, int, int, int] | None = None,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """Blend a [0, 1] heatmap onto a BGR frame (inside ``box`` when the model saw a crop)."""
    out = frame.copy()
    x, y, w, h = box or (0, 0, frame.shape[1], frame.shape[0])
    # quantise at the feature map's size and resize uint8 (2-3x faster at 1080p than a float
    # resize; at most 3 levels of 255 away from it), then blend in place
    small = np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), colormap)
    roi = out[y : y + h, x : x + w]
    cv2.addWeighted(colour, alpha, roi, 1 - alpha, 0, dst=roi)
    return out


_HEADS: WeakKeyDictionary[Any, CamHead | None] = WeakKeyDictionary()


def annotate(classifier: Any, prediction: Any, image: np.ndarray, *, alpha: float = 0.45) -> Any:
    """The daemon's hook (edge/explain/overlay.py): ``image`` (what the model saw, BGR) with the
    heatmap of the predicted class over the crop the model looked at, or None when the model
    offers no exact heatmap. The head is loaded once per classifier; a frame only pays for
    one matrix product, a resize and a blend, and only when an image is asked for."""
    if classifier not in _HEADS:
        try:
            _HEADS[classifier] = CamHead.load(classifier.model)
        except ModelError:
            _HEADS[classifier] = None
    head = _HEADS[classifier]
    if head is None or prediction.features is None:
        return None
    heat = head.heatmap(prediction.features, prediction.index)
    box = crop_box(image.shape, classifier.spec.input_size, classifier.spec.resize)
    return overlay(image, heat, alpha=alpha, box=box)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file to explain")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    add_backend(p, default=REFERENCE_BACKEND)
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "int8"], help="with a named backend"
    )
    p.add_argument("--class", dest="cls", help="explain this class (default: the predicted one)")
    p.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity, 0..1")
    p.add_argument(
        "--out",
        help="overlay PNG to write (default: NAME.cam.png in the current directory, never "
        "beside the image: a data set stays as it was)",
    )
    add_json(p, "the prediction")


def run(args: argparse.Namespace) -> int:
    from ..model.classifier import Classifier

    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError("--alpha must be between 0 and 1")
    out = Path(args.out) if args.out else Path(Path(args.image).stem + ".cam.png")
    if args.out and not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    frame = read_image(args.image)
    clf = Classifier.open(args.model, backend=args.backend, precision=args.precision)
    try:
        head = CamHead.load(clf.model)
        if args.cls is not None and args.cls not in clf.classes:
            raise UsageError(f"class {args.cls!r} is not one of {', '.join(clf.classes)}")
        pred = clf.predict(frame, with_features=True)
    finally:
        clf.close()
    if pred.features is None:
        raise ModelError("the model's graph has no feature output; re-export it")
    target = clf.classes.index(args.cls) if args.cls else pred.index
    heat = head.heatmap(pred.features, target)
    box = crop_box(frame.shape, clf.spec.input_size, clf.spec.resize)
    img = overlay(frame, heat, alpha=args.alpha, box=box)
    if not cv2.imwrite(str(out), img):
        raise UsageError(f"could not write {out}")
    result = {
        "image": args.image,
        "prediction": pred.label,
        "explained_class": clf.classes[target],
        "probabilities": dict(zip(clf.classes, map(float, pred.probs), strict=True)),
        "overlay": str(out),
    }
    write_json(args.json, result)
    if args.json != "-":
        probs = "  ".join(f"{c} {p:.3f}" for c, p in result["probabilities"].items())
        print(f"{pred.label} ({pred.confidence:.1%})  {probs}", file=sys.stdout)
        print(f"heatmap for {clf.classes[target]} -> {out}")
    return 0
