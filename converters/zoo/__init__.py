"""The model zoo: every architecture from the papers, registered by name.

Each entry carries its own preprocessing (the manifest's ``Preprocess``, as timm's
``pretrained_cfg`` does), so the exporter writes it into the manifest and the device never
guesses it. The registry machinery is ``registry.py``; the entries are ``_entries.py``.

Every model follows one contract so export, training and CAM work on all of them:

* ``forward(x)`` returns logits ``(N, num_classes)`` in eval mode (aux heads never appear);
* ``forward_features(x)`` returns the last convolutional feature map ``(N, C, H, W)``;
* ``forward_head(f)`` maps that feature map to logits, so
  ``forward(x) == forward_head(forward_features(x))``;
* ``forward_train(x)`` returns ``(logits, [aux_logits, ...])`` (empty list without aux heads).

torch is imported lazily: listing the zoo needs only this module.
"""

from __future__ import annotations

from . import _entries  # noqa: F401  (registers the zoo)
from .registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ZooEntry,
    create_model,
    get_entry,
    imagenet_preprocess,
    list_models,
    register,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ZooEntry",
    "create_model",
    "get_entry",
    "imagenet_preprocess",
    "list_models",
    "register",
]
