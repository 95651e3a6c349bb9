"""MobileNetV3-Small and -Large (Howard et al., 2019), the transfer-learning baselines of
seed 001: the standard backbone (hardswish, SE gated by hardsigmoid) and the dense head the
paper tunes on top of it -- GAP, one hidden dense layer (1024 / 1280 units, hardswish),
dropout, then the classifier.

No ImageNet weights are available offline, so these train from scratch or are distilled
from a pretrained teacher.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._layers import SqueezeExcite, ZooModel, conv_bn, init_weights, make_divisible, no_pretrained

# kernel, expanded, out, SE, activation ("RE" relu / "HS" hardswish), stride
Row = tuple[int, int, int, bool, str, int]
SMALL: tuple[Row, ...] = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)
LARGE: tuple[Row, ...] = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
# last conv channels, hidden dense units
VARIANTS = {"small": (SMALL, 576, 1024), "large": (LARGE, 960, 1280)}
BN: dict[str, Any] = {"bn_eps": 1e-3, "bn_momentum": 0.01}


class InvertedResidualV3(nn.Module):
    """Expand 1x1 -> depthwise kxk -> optional SE -> linear project 1x1 (+ skip)."""

    def __init__(self, cin: int, k: int, mid: int, cout: int, se: bool, act: str, s: int):
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if mid != cin:
            layers.append(conv_bn(cin, mid, 1, act=a, **BN))
        layers.append(conv_bn(mid, mid, k, s, groups=mid, act=a, **BN))
        if se:
            layers.append(SqueezeExcite(mid, make_divisible(mid // 4), gate=nn.Hardsigmoid))
        layers.append(conv_bn(mid, cout, 1, act=None, **BN))
        self.block = nn.Sequential(*layers)
        self.skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.skip else self.block(x)


class MobileNetV3(ZooModel):
    """``forward_features`` is the last 1x1 conv's map (576 / 960 channels, 7x7 at 224 px).

    ``head_mlp`` (Linear -> Hardswish -> Dropout -> Linear) maps the pooled vector to
    logits: ``forward_head(f) == head_mlp(f.mean((2, 3)))``. The head is an MLP, not a
    single Linear, so the zoo registers cam="mlp" and the CAM exporter reads ``head_mlp``.
    """

    head_prefixes = ("head_mlp",)

    def __init__(self, variant: str = "small", num_classes: int = 4, dropout: float = 0.2):
        super().__init__()
        rows, last, hidden = VARIANTS[variant]
        layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=nn.Hardswish, **BN)]
        cin = 16
        for k, mid, cout, se, act, s in rows:
            layers.append(InvertedResidualV3(cin, k, mid, cout, se, act, s))
            cin = cout
        layers.append(conv_bn(cin, last, 1, act=nn.Hardswish, **BN))
        self.features = nn.Sequential(*layers)
        self.head_mlp = nn.Sequential(
            nn.Linear(last, hidden),
            nn.Hardswish(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head_mlp(f.mean((2, 3)))


def mobilenetv3_small(*, num_classes: int = 4, pretrained: bool = False) -> MobileNetV3:
    if pretrained:
        no_pretrained("mobilenetv3-small")
    return MobileNetV3("small", num_classes=num_classes)


def mobilenetv3_large(*, num_classes: int = 4, pretrained: bool = False) -> MobileNetV3:
    if pretrained:
        no_pretrained("mobilenetv3-large")
    return MobileNetV3("large", num_classes=num_classes)
