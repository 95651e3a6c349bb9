"""Size and cost of zoo models, for ``mpox-edge zoo`` and the papers' comparison tables.

"MFLOPs" follows the convention of the MobileNet / ShuffleNet / EfficientNet papers:
millions of multiply-accumulates (MACs) of one image's inference graph, counted over
convolutions, linear layers and attention matmuls (BN, activations, pooling and additions
are left out, as in those papers). Parameters exclude training-only auxiliary heads.
"""

from __future__ import annotations

from typing import Any


def count_flops(model: Any, input_size: int) -> float:
    """MACs (millions) of ``model``'s eval-mode forward on one ``input_size`` RGB image."""
    import torch
    from torch import nn

    from .agfn import SelfAttention

    total = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out[0].numel() * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * m.in_features

    def attn_hook(_m: nn.Module, inp: Any, _out: torch.Tensor) -> None:
        nonlocal total
        _, length, dim = inp[0].shape
        total += 2 * length * length * dim  # q @ k^T and attn @ v over all heads

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, SelfAttention):
            hooks.append(m.register_forward_hook(attn_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total / 1e6


def count_params(model: Any) -> int:
    """Inference-graph parameters (auxiliary heads excluded when the model declares them)."""
    if hasattr(model, "num_params"):
        return int(model.num_params(inference=True))
    return sum(p.numel() for p in model.parameters())


def model_stats(name: str) -> dict[str, Any]:
    """``{"params": int, "mflops": float, "input_size": int}`` for a registered model,
    built with its default class count at its registered input size."""
    import torch

    from . import create_model, get_entry

    entry = get_entry(name)
    size = entry.preprocess.input_size
    with torch.random.fork_rng():
        model = create_model(name)
    return {"params": count_params(model), "mflops": count_flops(model, size), "input_size": size}
