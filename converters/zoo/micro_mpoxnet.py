"""MicroMPoxNet (seed 000): a separable-convolution residual attention network (SCRAN) with
squeeze-excitation, Swish everywhere and a dense 512/128/64/32 head; 0.63 M parameters.

Reading of the spec's block table used here (the only reading consistent for all six
blocks): each block's shortcut is the previous block's output -- already max-pooled at the
end of that block -- 1x1-projected where channels change; it is added after the block's
convolutions and the sum is then max-pooled (blocks 1-5; block 6 keeps its resolution).
Every conv is followed by BatchNorm. The paper's input is 128 px (4x4 final map);
parameters do not depend on the input size.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import SeparableConv, SqueezeExcite, ZooModel, conv_bn, init_weights, no_pretrained

HEAD_UNITS = (512, 128, 64, 32)
SE_RATIO = 16
BLOCK_DROPOUT = 0.3


class ResidualBlock(nn.Module):
    """``pool(body(x) + shortcut(x))``; the shortcut is identity or a 1x1 conv + BN."""

    def __init__(self, body: nn.Module, cin: int, cout: int, pool: bool = True) -> None:
        super().__init__()
        self.body = body
        self.shortcut = nn.Identity() if cin == cout else conv_bn(cin, cout, 1, act=None)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x) + self.shortcut(x))


def _attention_body(c: int) -> nn.Sequential:
    """sep -> SE (r=16) -> sep -> dropout: the attention blocks 4 and 6."""
    return nn.Sequential(
        SeparableConv(c, c),
        SqueezeExcite(c, c // SE_RATIO, act=nn.SiLU),
        SeparableConv(c, c),
        nn.Dropout(BLOCK_DROPOUT),
    )


class MicroMPoxNet(ZooModel):
    """MicroMPoxNet.

    ``forward_features`` is block 6's output (N, 256, H/32, W/32), ``forward_head`` is GAP
    followed by ``head_mlp``. ``head_mlp`` is an ``nn.Sequential`` of Linear/SiLU layers
    ending in the classifier Linear; it maps the pooled (N, 256) vector to logits, so
    ``forward_head(f) == head_mlp(f.mean((2, 3)))`` -- the CAM exporter reads it layer by
    layer to compute exact Grad-CAM on the device.
    """

    head_prefixes = ("head_mlp",)

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        act = nn.SiLU
        self.block1 = nn.Sequential(
            conv_bn(3, 32, 3, act=act), conv_bn(32, 32, 3, act=act), nn.MaxPool2d(2)
        )
        self.block2 = ResidualBlock(
            nn.Sequential(conv_bn(32, 64, 3, act=act), conv_bn(64, 64, 3, act=act)), 32, 64
        )
        self.block3 = ResidualBlock(
            nn.Sequential(SeparableConv(64, 128), SeparableConv(128, 128)), 64, 128
        )
        self.block4 = ResidualBlock(_attention_body(128), 128, 128)
        self.block5 = ResidualBlock(
            nn.Sequential(SeparableConv(128, 256), SeparableConv(256, 256)), 128, 256
        )
        self.block6 = ResidualBlock(_attention_body(256), 256, 256, pool=False)
        layers: list[nn.Module] = []
        cin = 256
        for units in HEAD_UNITS:
            layers += [nn.Linear(cin, units), nn.SiLU()]
            cin = units
        layers.append(nn.Linear(cin, num_classes))
        self.head_mlp = nn.Sequential(*layers)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.block6(self.block5(self.block4(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head_mlp(f.mean((2, 3)))


def micro_mpoxnet(*, num_classes: int = 4, pretrained: bool = False) -> MicroMPoxNet:
    """Build MicroMPoxNet; trained from scratch (no offline weights)."""
    if pretrained:
        no_pretrained("micro-mpoxnet")
    return MicroMPoxNet(num_classes=num_classes)
