"""Building blocks shared by the zoo, and the base class that carries the model contract.

Everything here is plain ``torch.nn`` and traces to ONNX opset 17 without custom ops:
global pooling is ``mean``/``amax`` over H, W (ReduceMean/ReduceMax), channel shuffle never
touches the batch dimension (so the exported batch axis stays dynamic), and the stochastic
regularisers return their input unchanged outside training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Act = Callable[[], nn.Module]


class ZooModel(nn.Module):
    """The contract every zoo model follows (see ``mpox_edge.converters.zoo``).

    Subclasses implement ``forward_features`` and ``forward_head``; ``forward`` is their
    composition, so export (which calls the two halves) and training see the same graph.
    ``train_only`` names submodules used only by ``forward_train`` (auxiliary heads): they
    are left out of the inference parameter count and never reach the exported graph.
    ``head_prefixes`` names the classifier submodules, for freezing the backbone.
    """

    train_only: tuple[str, ...] = ()
    head_prefixes: tuple[str, ...] = ()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.forward(x), []

    def num_params(self, *, inference: bool = True) -> int:
        """Parameter count; ``inference=True`` drops the train-only (auxiliary) heads."""
        skip = self.train_only if inference else ()
        return sum(
            p.numel()
            for n, p in self.named_parameters()
            if not any(n == s or n.startswith(s + ".") for s in skip)
        )

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Everything but the classifier head (what transfer learning freezes)."""
        heads = self.head_prefixes + self.train_only
        return [
            p
            for n, p in self.named_parameters()
            if not any(n == s or n.startswith(s + ".") for s in heads)
        ]


def conv_bn(
    cin: int,
    cout: int,
    k: int = 1,
    s: int = 1,
    *,
    groups: int = 1,
    dilation: int = 1,
    act: Act | None = nn.ReLU,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
) -> nn.Sequential:
    """Conv (no bias) -> BN -> optional activation, 'same' padding for odd kernels."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            cin,
            cout,
            k,
            s,
            padding=dilation * (k - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 -> pointwise 1x1 -> BN -> act (Keras ``SeparableConv2D`` + BN)."""

    def __init__(self, cin: int, cout: int, k: int = 3, act: Act = nn.SiLU) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            act(),
        )


class SqueezeExcite(nn.Module):
    """Channel gate from globally pooled features; ``gate`` is sigmoid or hardsigmoid."""

    def __init__(
        self, channels: int, squeeze: int, act: Act = nn.ReLU, gate: Act = nn.Sigmoid
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle without reshaping the batch axis (keeps it dynamic)."""
    c = x.shape[1]
    return x.unflatten(1, (groups, c // groups)).transpose(1, 2).flatten(1, 2)


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al., 2018): drops contiguous ``block`` x ``block`` regions.

    Identity outside training, so it vanishes from the exported graph.
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 1) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob <= 0:
            return x
        _, _, h, w = x.shape
        b = min(self.block_size, h, w)
        valid = max((h - b + 1) * (w - b + 1), 1)
        gamma = self.drop_prob / (b * b) * (h * w) / valid
        seeds = (torch.rand_like(x) < gamma).to(x.dtype)
        # grow each seed into a b x b block; even b needs a one-pixel crop
        mask = F.max_pool2d(seeds, b, stride=1, padding=b // 2)[:, :, :h, :w]
        keep = 1.0 - mask
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (per sample); identity outside training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p).to(x.dtype)
        return x * keep / (1.0 - self.p)


def no_pretrained(name: str) -> None:
    """Only EfficientNet-Lite0 has offline ImageNet weights; say so instead of ignoring it."""
    from mpox_edge.edge.errors import UsageError

    raise UsageError(
        f"{name} has no offline pretrained weights: train it from scratch or distil it "
        "(only efficientnet-lite0 ships ImageNet weights)"
    )


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def init_weights(model: nn.Module) -> None:
    """He init for convs and unit BN; linears keep PyTorch's default (deep MLP heads would
    vanish under the 0.01-normal init some references use)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
