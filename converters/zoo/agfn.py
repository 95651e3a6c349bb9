"""AGFN, the Attention-Guided Fusion Network (seed 004): a ResNet50 backbone whose 2048x7x7
map is projected to 256-d tokens, passed through multi-head self-attention, pooled and
concatenated with the CNN's global-pooled features before one Linear layer.

About 24.3 M parameters: the zoo's heavy row, there to show what int8 and the runtime do
for a large model. The seed (an abstract) gives no widths: tokens are 256-d with 8 heads,
post-norm residual attention, no positional embedding (keeps any input size valid).
Attention is written with plain matmuls so it exports to ONNX opset 17 as MatMul/Softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ZooModel, conv_bn, init_weights, no_pretrained

RESNET50_LAYERS = (3, 4, 6, 3)
TOKEN_DIM = 256
HEADS = 8


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3), expansion 4."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv = nn.Sequential(
            conv_bn(cin, width, 1),
            conv_bn(width, width, 3, stride),
            conv_bn(width, cout, 1, act=None),
        )
        self.downsample = (
            conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)
        # zero-init the last BN so each block starts as identity (standard ResNet trick)
        nn.init.zeros_(self.last_bn.weight)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The block's final BatchNorm (zero-initialised: the block starts as identity)."""
        last = self.conv[-1]
        assert isinstance(last, nn.Sequential) and isinstance(last[1], nn.BatchNorm2d)
        return last[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x) + self.downsample(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over (N, L, D) tokens, then residual + LayerNorm."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        d = t.shape[-1]
        # (N, L, 3D) -> 3 x (N, H, L, D/H), never reshaping the batch axis
        q, k, v = self.qkv(t).unflatten(-1, (3, self.heads, d // self.heads)).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        y = (self.drop(attn) @ v).transpose(1, 2).flatten(2)
        return self.norm(t + self.drop(self.out(y)))


class AGFN(ZooModel):
    """``forward_features`` is ResNet50's 2048-channel map (N, 2048, 7, 7 at 224 px);
    ``forward_head`` is token projection, attention, pooling, fusion and the classifier.
    The attention sits between features and logits, so there is no exact CAM (cam=None)."""

    head_prefixes = ("tokens", "attn", "fc")

    def __init__(self, num_classes: int = 4, dropout: float = 0.3) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, padding=1))
        layers: list[nn.Module] = []
        cin = 64
        for i, (n, width) in enumerate(zip(RESNET50_LAYERS, (64, 128, 256, 512), strict=True)):
            for j in range(n):
                layers.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * 4
        self.body = nn.Sequential(*layers)
        self.tokens = nn.Conv2d(cin, TOKEN_DIM, 1)
        self.attn = SelfAttention(TOKEN_DIM, HEADS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin + TOKEN_DIM, num_classes)
        init_weights(self)
        for m in self.modules():  # init_weights resets BN; restore the zero-init above
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.last_bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        t = self.attn(self.tokens(f).flatten(2).transpose(1, 2))
        fused = torch.cat((f.mean((2, 3)), t.mean(1)), dim=1)
        return self.fc(self.dropout(fused))


def agfn(*, num_classes: int = 4, pretrained: bool = False) -> AGFN:
    """Build AGFN (the paper has 6 classes; the project's dataset 4; any count works)."""
    if pretrained:
        no_pretrained("agfn")
    return AGFN(num_classes=num_classes)
