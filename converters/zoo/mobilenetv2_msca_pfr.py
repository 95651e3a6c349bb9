"""MobileNetV2-MSCA-PFR (seed 003): a MobileNetV2 truncated after its 96-channel stage
(stride 16, 14x14 at 224 px), a multi-scale context aggregator (MSCA) and a
pooling-feature refinement block (PFR), then GAP, dropout and a Linear classifier.

Truncating before the 160/320-channel stages and the 1280-channel head conv removes about
85% of MobileNetV2's weights; MSCA and PFR buy back context at 14x14 for little cost.
The seed (a README) gives the components but no widths: MSCA fuses to 256 channels, the
channel bottleneck of PFR is 1/16 and the refinement conv is depthwise-separable.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ZooModel, conv_bn, init_weights, no_pretrained

# (expand t, channels c, repeats n, stride s): MobileNetV2 up to and including the 96 stage
MBV2_TRUNCATED = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
MSCA_DILATIONS = (1, 2, 3)
FEATURE_CHANNELS = 256


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> linear 1x1 project (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, mid, 1, act=nn.ReLU6))
        layers += [
            conv_bn(mid, mid, 3, stride, groups=mid, act=nn.ReLU6),
            conv_bn(mid, cout, 1, act=None),
        ]
        self.conv = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.skip else self.conv(x)


class MSCA(nn.Module):
    """Multi-scale context aggregation: depthwise 3x3 at dilations 1, 2, 3 plus an
    image-level (global pooling) branch, concatenated and fused by a 1x1 conv."""

    def __init__(self, cin: int, cout: int, dilations: tuple[int, ...] = MSCA_DILATIONS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            conv_bn(cin, cin, 3, groups=cin, dilation=d, act=nn.ReLU6) for d in dilations
        )
        # no BN on the 1x1 pooled map: it would need batch > 1 in training
        self.image_pool = nn.Sequential(nn.Conv2d(cin, cin, 1), nn.ReLU6())
        self.fuse = conv_bn(cin * (len(dilations) + 1), cout, 1, act=nn.ReLU6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.image_pool(x.mean((2, 3), keepdim=True)).expand_as(x))
        return self.fuse(torch.cat(outs, dim=1))


class PFR(nn.Module):
    """Pooling-feature refinement: CBAM-style attention (avg- and max-pooled descriptors
    through a shared bottleneck -> channel weights; channel-mean/max -> 7x7 conv -> spatial
    weights), then a depthwise-separable refinement conv. Its output is the Grad-CAM layer."""

    def __init__(self, c: int, ratio: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(c, c // ratio, 1), nn.ReLU(inplace=True), nn.Conv2d(c // ratio, c, 1)
        )
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)
        self.refine = nn.Sequential(
            conv_bn(c, c, 3, groups=c, act=nn.ReLU6), conv_bn(c, c, 1, act=nn.ReLU6)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        mx = self.mlp(x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(avg + mx)
        s = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), dim=1)
        x = x * torch.sigmoid(self.spatial(s))
        return self.refine(x)


class MobileNetV2MSCAPFR(ZooModel):
    """``forward_features`` is the PFR refinement output (N, 256, 14, 14 at 224 px);
    the head is GAP -> dropout -> Linear, so CAM is exact."""

    head_prefixes = ("fc",)

    def __init__(self, num_classes: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in MBV2_TRUNCATED:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.backbone = nn.Sequential(*layers)
        self.msca = MSCA(cin, FEATURE_CHANNELS)
        self.pfr = PFR(FEATURE_CHANNELS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(FEATURE_CHANNELS, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pfr(self.msca(self.backbone(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(f.mean((2, 3))))


def mobilenetv2_msca_pfr(*, num_classes: int = 4, pretrained: bool = False) -> MobileNetV2MSCAPFR:
    """Build MobileNetV2-MSCA-PFR; trained from scratch here (no offline MobileNetV2 weights)."""
    if pretrained:
        no_pretrained("mobilenetv2-msca-pfr")
    return MobileNetV2MSCAPFR(num_classes=num_classes)
