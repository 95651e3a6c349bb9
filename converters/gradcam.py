"""Reference Grad-CAM in PyTorch (autograd), to check the device's numpy CAM against.

The gradient is taken through the real head with autograd, not through the exported
weights, so agreement between the two is evidence and not a tautology.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def gradcam(model: Any, x: np.ndarray, cls_index: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM on the last feature map for one (1, 3, S, S) input; returns ([0,1] map, class)."""
    import torch

    model.eval()
    feats = model.forward_features(torch.from_numpy(x))
    feats.retain_grad()  # the last feature map: what the heatmap is computed over
    logits = model.forward_head(feats)
    c = int(logits.argmax(1)) if cls_index is None else cls_index
    model.zero_grad(set_to_none=True)
    logits[0, c].backward()
    a, g = feats[0].detach().double(), feats.grad[0].double()
    w = g.mean(dim=(1, 2))
    cam = torch.relu((w[:, None, None] * a).sum(0))
    peak = cam.max()
    cam = cam / peak if peak > 0 else cam
    return cam.float().numpy(), c
