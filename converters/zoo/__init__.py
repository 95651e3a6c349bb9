"""The model zoo: every architecture from the papers, registered by name.

Each entry carries its own preprocessing config (as timm's ``pretrained_cfg`` does), so the
exporter writes it into the manifest and the device never guesses it.

Every model follows one contract so export, training and CAM work on all of them:

* ``forward(x)`` returns logits ``(N, num_classes)`` in eval mode (aux heads never appear);
* ``forward_features(x)`` returns the last convolutional feature map ``(N, C, H, W)``;
* ``forward_head(f)`` maps that feature map to logits, so
  ``forward(x) == forward_head(forward_features(x))``;
* ``forward_train(x)`` returns ``(logits, [aux_logits, ...])`` (empty list without aux heads).

torch is imported lazily: listing the zoo needs only this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the model's input tensor (written into the manifest)."""

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN  # in [0, 1] units, RGB order
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"  # channel order the network expects
    layout: str = "NCHW"
    resize: str = "shorter_side_center_crop"  # or "stretch"
    interpolation: str = "linear"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    module: str  # module under mpox_edge.converters.zoo holding the builder
    builder: str  # function name in that module: builder(num_classes=..., pretrained=...)
    description: str
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    default_num_classes: int = 4
    paper_params: float | None = None  # millions, as reported by the paper
    pretrained_available: bool = False
    # "linear": GAP -> Linear head (Grad-CAM == CAM); "mlp": GAP -> MLP head;
    # None: no exact class-activation map (e.g. attention between features and head).
    cam: str | None = "linear"
    source: str = ""

    def build(self, *, num_classes: int | None = None, pretrained: bool = False) -> Any:
        mod = importlib.import_module(f"{__name__}.{self.module}")
        fn: Callable[..., Any] = getattr(mod, self.builder)
        return fn(num_classes=num_classes or self.default_num_classes, pretrained=pretrained)


_REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_entry(name: str) -> ZooEntry:
    from mpox_edge.edge.errors import UnknownArchitectureError

    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise UnknownArchitectureError(f"unknown architecture {name!r}; known: {known}") from None


def create_model(name: str, *, num_classes: int | None = None, pretrained: bool = False) -> Any:
    """Build a registered model (torch is imported here, not at module import)."""
    return get_entry(name).build(num_classes=num_classes, pretrained=pretrained)


from . import _entries  # noqa: E402,F401  (registers the zoo)
