"""Fast-MpoxNet (seed 002): ShuffleNetV2 x0.5 with GELU, a 256-channel stage 5, the ABLGFM
fusion of stage-2 and stage-5 features, DropBlock and two training-only auxiliary heads.

Built for 68 FPS on a laptop CPU with 0.27 M parameters (inference graph, 4 classes).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import DropBlock2d, ZooModel, channel_shuffle, conv_bn, init_weights, no_pretrained

STAGE_CHANNELS = (24, 48, 96, 192)  # ShuffleNetV2 x0.5: stem, stages 2-4
STAGE_REPEATS = (4, 8, 4)
STAGE5_CHANNELS = 256  # cut from 1024: the paper's lightweight strategy
# ABLGFM bottleneck ratio of the local/global context branches (channels 256 -> 64 -> 256).
# The spec does not fix it; r=4 (the Attentional-Feature-Fusion default the paper builds on)
# lands the inference graph on 0.273 M parameters, within 1% of the paper's 0.27 M.
ABLGFM_RATIO = 4


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or two-branch downsampling (stride 2), shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                conv_bn(cin, cin, 3, stride, groups=cin, act=None),
                conv_bn(cin, half, 1, act=nn.GELU),
            )
        b2_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            conv_bn(b2_in, half, 1, act=nn.GELU),
            conv_bn(half, half, 3, stride, groups=half, act=None),
            conv_bn(half, half, 1, act=nn.GELU),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def _context(c: int, mid: int) -> nn.Sequential:
    """PWConv -> BN -> GELU -> PWConv -> BN (the bottleneck of both ABLGFM branches)."""
    return nn.Sequential(conv_bn(c, mid, 1, act=nn.GELU), conv_bn(mid, c, 1, act=None))


class ABLGFM(nn.Module):
    """Attention-Based Local and Global Fusion Module (paper eq. in sec. 3.6).

    ``P = AvgPool(GELU(BN(PWConv(F_low))))``, ``Merge = F_high + P``,
    ``w = sigmoid(local(Merge) + global(GAP(Merge)))``,
    ``Out = P * (1 - w) + DropBlock(F_high) * w``.
    """

    def __init__(self, c_low: int, c: int, ratio: int = ABLGFM_RATIO, down: int = 4) -> None:
        super().__init__()
        self.low_proj = conv_bn(c_low, c, 1, act=nn.GELU)
        # ceil_mode matches the ceil(n/4) size of two stride-2 3x3 convs at any input size
        self.pool = nn.AvgPool2d(down, down, ceil_mode=True)
        self.global_ctx = _context(c, c // ratio)
        self.local_ctx = _context(c, c // ratio)

    def forward(
        self, f_low: torch.Tensor, f_high: torch.Tensor, f_high_dropped: torch.Tensor
    ) -> torch.Tensor:
        p = self.pool(self.low_proj(f_low))
        merge = f_high + p
        g = self.global_ctx(merge.mean((2, 3), keepdim=True))
        w = torch.sigmoid(self.local_ctx(merge) + g)
        return p * (1.0 - w) + f_high_dropped * w


class FastMpoxNet(ZooModel):
    """Fast-MpoxNet. ``forward_features`` is the ABLGFM output (N, 256, 7, 7 at 224 px),
    pooled straight into the single Linear of the main head, so CAM is exact.

    The global-context branch applies BatchNorm to 1x1 maps, so training needs batch > 1
    (as in the Attentional Feature Fusion reference).
    """

    train_only = ("aux_heads",)
    head_prefixes = ("fc",)

    def __init__(self, num_classes: int = 4, drop_prob: float = 0.1) -> None:
        super().__init__()
        c0, c2, c3, c4 = STAGE_CHANNELS
        self.stem = nn.Sequential(conv_bn(3, c0, 3, 2, act=nn.GELU), nn.MaxPool2d(3, 2, padding=1))
        stages: list[nn.Sequential] = []
        cin = c0
        for cout, reps in zip((c2, c3, c4), STAGE_REPEATS, strict=True):
            units = [ShuffleUnit(cin, cout, 2)] + [
                ShuffleUnit(cout, cout, 1) for _ in range(reps - 1)
            ]
            stages.append(nn.Sequential(*units))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.stage5 = conv_bn(c4, STAGE5_CHANNELS, 1, act=nn.GELU)
        self.drop_low = DropBlock2d(drop_prob, block_size=4)
        self.drop_high = DropBlock2d(drop_prob, block_size=1)
        self.fusion = ABLGFM(c2, STAGE5_CHANNELS)
        # Cls Head1/2 on stage 2 and 3 (GAP + FC): training signal only, never exported.
        # Registered before ``fc`` so the main classifier stays the state dict's last matrix.
        self.aux_heads = nn.ModuleList([nn.Linear(c2, num_classes), nn.Linear(c3, num_classes)])
        self.fc = nn.Linear(STAGE5_CHANNELS, num_classes)
        init_weights(self)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f2 = self.drop_low(self.stage2(self.stem(x)))
        f3 = self.stage3(f2)
        f5 = self.stage5(self.stage4(f3))
        return self.fusion(f2, f5, self.drop_high(f5)), f2, f3

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)[0]

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean((2, 3)))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        f, f2, f3 = self._features(x)
        aux = [head(t.mean((2, 3))) for head, t in zip(self.aux_heads, (f2, f3), strict=True)]
        return self.forward_head(f), aux


def fast_mpoxnet(*, num_classes: int = 4, pretrained: bool = False) -> FastMpoxNet:
    """Build Fast-MpoxNet; no pretrained weights exist offline (train or distil it)."""
    if pretrained:
        no_pretrained("fast-mpoxnet")
    return FastMpoxNet(num_classes=num_classes)
