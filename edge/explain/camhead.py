"""numpy twin of a model's classifier head, for class-activation maps on the device."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _act(kind: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activation value and its derivative."""
    if kind == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if kind == "relu6":
        return np.clip(z, 0, 6), ((z > 0) & (z < 6)).astype(z.dtype)
    if kind == "silu":
        s = 1 / (1 + np.exp(-z))
        return z * s, s * (1 + z * (1 - s))
    if kind == "hardswish":
        r = np.clip(z + 3, 0, 6) / 6
        d = np.where(z < -3, 0.0, np.where(z > 3, 1.0, (2 * z + 3) / 6))
        return z * r, d.astype(z.dtype)
    if kind == "gelu":
        from math import erf, pi, sqrt

        cdf = 0.5 * (1 + np.vectorize(erf)(z / sqrt(2)))
        return z * cdf, cdf + z * np.exp(-0.5 * z * z) / sqrt(2 * pi)
    raise ValueError(f"unknown activation {kind!r}")


def mlp_forward(arrays: Mapping[str, np.ndarray], pooled: np.ndarray) -> np.ndarray:
    return mlp_grad(arrays, pooled, None)[0]


def mlp_grad(
    arrays: Mapping[str, np.ndarray], pooled: np.ndarray, cls: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits of an MLP head and, for class ``cls``, d(logit)/d(pooled) (exact backprop)."""
    x = pooled
    tape: list[tuple[str, np.ndarray]] = []
    for i, kind in enumerate(str(k) for k in arrays["layers"]):
        if kind == "linear":
            w = arrays[f"w{i}"]
            tape.append(("linear", w))
            x = x @ w.T + arrays[f"b{i}"]
        else:
            x, d = _act(kind, x)
            tape.append(("act", d))
    if cls is None:
        return x, None
    g = np.zeros_like(x)
    g[..., cls] = 1.0
    for kind, v in reversed(tape):
        g = g @ v if kind == "linear" else g * v
    return x, g
