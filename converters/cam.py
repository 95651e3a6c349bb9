"""Export the weights that turn the feature-map output into a class-activation map.

For a ``GAP -> Linear`` head, Grad-CAM equals CAM: the class's row of the classifier
weights over the feature map. We do not trust attribute names for that: the affine map is
*measured* from ``forward_head`` on 1x1 feature maps and then checked on random full-size
maps, so a head that is not really affine is caught here instead of producing wrong
heatmaps on the device. ``mlp`` heads (pooled features through a small MLP) export each
layer, so the device computes the exact gradient of the class score in numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mpox_edge.edge.model.manifest import sha256_file

CAM_FILE = "cam_head.npz"
_ACTS = {
    "SiLU": "silu",
    "Hardswish": "hardswish",
    "ReLU": "relu",
    "ReLU6": "relu6",
    "GELU": "gelu",
    "Identity": None,
    "Dropout": None,
    "Flatten": None,
}


def export_cam_head(
    model: Any, entry: Any, out_dir: Path, *, input_size: int | None = None
) -> dict[str, Any] | None:
    import torch

    kind = entry.cam
    if kind is None:
        return None
    model.eval()
    size = input_size or entry.preprocess.input_size
    with torch.no_grad():
        feat = model.forward_features(torch.zeros(1, 3, size, size))
        c = feat.shape[1]
        if kind == "linear":
            arrays = _measure_affine(model, c, feat.shape[2:])
        elif kind == "mlp":
            arrays = _mlp_layers(model, c, feat.shape[2:])
        else:
            raise ValueError(f"unknown cam kind {kind!r} for {entry.name}")
    path = out_dir / CAM_FILE
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return {
        "kind": kind,
        "file": CAM_FILE,
        "sha256": sha256_file(path),
        "feature_output": "features",
        "channels": int(c),
        "feature_size": [int(s) for s in feat.shape[2:]],
    }


def _measure_affine(model: Any, c: int, hw: Any) -> dict[str, np.ndarray]:
    import torch

    eye = torch.cat([torch.zeros(1, c), torch.eye(c)]).view(c + 1, c, 1, 1)
    out = model.forward_head(eye).double()
    bias = out[0]
    weight = (out[1:] - bias).T  # (classes, channels)
    f = torch.randn(4, c, *hw)
    pred = f.double().mean((2, 3)) @ weight.T + bias
    err = (model.forward_head(f).double() - pred).abs().max().item()
    if err > 1e-3:
        raise ValueError(f"head registered as GAP->Linear is not affine (error {err:.2e})")
    return {"weight": weight.float().numpy(), "bias": bias.float().numpy()}


def _mlp_layers(model: Any, c: int, hw: Any) -> dict[str, np.ndarray]:
    import torch

    mlp = model.head_mlp
    arrays: dict[str, np.ndarray] = {}
    kinds: list[str] = []
    for layer in mlp:
        name = type(layer).__name__
        if isinstance(layer, torch.nn.Linear):
            i = len(kinds)
            arrays[f"w{i}"] = layer.weight.detach().float().numpy()
            arrays[f"b{i}"] = layer.bias.detach().float().numpy()
            kinds.append("linear")
        elif name in _ACTS:
            act = _ACTS[name]
            if act:
                kinds.append(act)
        else:
            raise ValueError(f"MLP head layer {name} has no numpy twin for CAM")
    arrays["layers"] = np.array(kinds)
    f = torch.randn(2, c, *hw)
    ref = model.forward_head(f).double().numpy()
    from mpox_edge.edge.explain.camhead import mlp_forward

    got = mlp_forward(arrays, f.double().mean((2, 3)).numpy())
    if np.abs(got - ref).max() > 1e-3:
        raise ValueError("head_mlp does not reproduce forward_head; cannot export CAM weights")
    return arrays
