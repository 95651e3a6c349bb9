"""The zoo's registry: ``ZooEntry`` records and the functions that find and build them.

Kept apart from the package's ``__init__`` so ``_entries.py`` (one ``register`` call per
architecture) imports it without a cycle. An entry's preprocessing is the manifest's own
``Preprocess``: the exporter writes it as is, so the device never guesses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mpox_edge.edge.errors import UnknownArchitectureError
from mpox_edge.edge.model.manifest import Preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_preprocess(input_size: int = 224) -> Preprocess:
    """RGB, ImageNet mean/std, shorter side resized then centre-cropped (the papers' input)."""
    return Preprocess(input_size=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    module: str  # module under mpox_edge.converters.zoo holding the builder
    builder: str  # function name in that module: builder(num_classes=..., pretrained=...)
    description: str
    preprocess: Preprocess = field(default_factory=imagenet_preprocess)
    default_num_classes: int = 4
    paper_params: float | None = None  # millions, as reported by the paper
    pretrained_available: bool = False
    # "linear": GAP -> Linear head (Grad-CAM == CAM); "mlp": GAP -> MLP head;
    # None: no exact class-activation map (e.g. attention between features and head).
    cam: str | None = "linear"
    source: str = ""
    # True when the layers are built for preprocess.input_size only (static TF 'SAME' pads):
    # another --input-size would shift every stride-2 conv's window against the weights
    fixed_input_size: bool = False

    def build(self, *, num_classes: int | None = None, pretrained: bool = False) -> Any:
        mod = importlib.import_module(f"{__package__}.{self.module}")
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
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise UnknownArchitectureError(f"unknown architecture {name!r}; known: {known}") from None


def create_model(name: str, *, num_classes: int | None = None, pretrained: bool = False) -> Any:
    """Build a registered model (torch is imported here, not at module import)."""
    return get_entry(name).build(num_classes=num_classes, pretrained=pretrained)
