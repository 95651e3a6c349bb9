"""Partial fine-tuning on cached views: many models from one frozen backbone pass.

Full fine-tuning of EfficientNet-Lite0 costs about 0.6 CPU-seconds per image and step on
the project's 2 shared cores; cross-validation (4 models), a final model and leave-one-
class-out runs would take many hours. Here the first ``cut`` MBConv blocks stay at their
ImageNet weights (BatchNorm in eval mode), so their output for a given augmented view never
changes: each training image is pushed through them once per view (``cache_views``; view 0
is the plain, un-augmented ``preprocess``), and every model then trains only the last
blocks + head conv + classifier on those cached maps (``fit_top``), ~20x cheaper per step.
Mixup is applied to the cached maps (manifold mixup at the cut). The result is an ordinary
zoo state dict (frozen blocks = ImageNet tensors), exported like any other checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpox_edge.edge.model.manifest import Preprocess
from mpox_edge.edge.model.preprocess import preprocess

from .augment import AugmentConfig, augment

DEFAULT_CUT = 14  # blocks 0-13 frozen; blocks 14-15, head conv + BN and the classifier train


def bottom(model: Any, x: Any, cut: int) -> Any:
    """The frozen part: stem and blocks [0, cut)."""
    x = model.act(model._bn0(model._conv_stem(x)))
    for b in model._blocks[:cut]:
        x = b(x)
    return x


def top_features(model: Any, h: Any, cut: int) -> Any:
    """Blocks [cut, end) and the head conv: the exported ``features`` map."""
    for b in model._blocks[cut:]:
        h = b(h)
    return model.act(model._bn1(model._conv_head(h)))


def cache_views(
    model: Any,
    images: Sequence[np.ndarray],
    spec: Preprocess,
    *,
    views: Sequence[int],
    cut: int = DEFAULT_CUT,
    seed: int = 0,
    config: AugmentConfig | None = None,
    batch: int = 32,
    log: Any = None,
) -> np.ndarray:
    """(N, len(views), C, h, w) float16 maps at the cut; view 0 is un-augmented and view v
    of image i uses ``default_rng([seed, v, i])`` (independent of order and sharding)."""
    import torch

    cfg = config or AugmentConfig()
    model.eval()
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for vi, v in enumerate(views):
            maps = []
            for s in range(0, len(images), batch):
                xs = []
                for i in range(s, min(s + batch, len(images))):
                    im = images[i]
                    if v:
                        rng = np.random.default_rng([seed, v, i])
                        im = augment(im, rng=rng, out_size=spec.input_size, config=cfg)
                    xs.append(preprocess(im, spec))
                h = bottom(model, torch.from_numpy(np.concatenate(xs)), cut)
                maps.append(h.numpy().astype(np.float16))
            out.append(np.concatenate(maps))
            if log:
                log(
                    f"view {v}: {len(images)} images ({vi + 1}/{len(views)}, "
                    f"{time.perf_counter() - t0:.0f} s)"
                )
    return np.stack(out, axis=1)


def _set_trainable(model: Any, cut: int) -> list[Any]:
    train_mods = [*model._blocks[cut:], model._conv_head, model._bn1, model._fc]
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for m in train_mods:
        for p in m.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def predict_top(
    model: Any, maps: np.ndarray, cut: int, batch: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, pooled features) of cached maps (N, C, h, w) in eval mode."""
    import torch

    model.eval()
    lo, fe = [], []
    with torch.no_grad():
        for s in range(0, len(maps), batch):
            f = top_features(model, torch.from_numpy(maps[s : s + batch].astype(np.float32)), cut)
            lo.append(model.forward_head(f).numpy())
            fe.append(f.mean(dim=(2, 3)).numpy())
    return np.concatenate(lo), np.concatenate(fe)


def fit_top(
    model: Any,
    maps: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    cut: int = DEFAULT_CUT,
    lr: float = 1e-4,
    batch_size: int = 32,
    label_smoothing: float = 0.1,
    mixup: float = 0.2,
    seed: int = 0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    log: Any = None,
) -> list[dict[str, float]]:
    """Train the top of ``model`` in place on cached maps (N, V, C, h, w); each epoch uses
    one random augmented view per image (views 1.., or view 0 if that is all there is).
    Returns the per-epoch history (validation accuracy/loss when ``val`` is given)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    params = _set_trainable(model, cut)
    opt = torch.optim.Adam(params, lr=lr)
    n, nv = maps.shape[:2]
    y_all = torch.from_numpy(labels.astype(np.int64))
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        view = np.asarray(rng.integers(1, nv, n)) if nv > 1 else np.zeros(n, np.int64)
        model.train()
        for m in model.modules():  # frozen BatchNorms keep ImageNet statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not m.weight.requires_grad:
                m.eval()
        total = 0.0
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            if len(idx) < 2:
                continue
            x = torch.from_numpy(maps[idx, view[idx]].astype(np.float32))
            y = y_all[idx]
            lam, y2 = 1.0, None
            if mixup > 0:
                lam = float(rng.beta(mixup, mixup))
                perm = torch.from_numpy(rng.permutation(len(idx)))
                x, y2 = lam * x + (1 - lam) * x[perm], y[perm]
            logits = model.forward_head(top_features(model, x, cut))
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if y2 is not None:
                loss = lam * loss + (1 - lam) * F.cross_entropy(
                    logits, y2, label_smoothing=label_smoothing
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        row = {"epoch": epoch, "train_loss": total / n, "seconds": time.perf_counter() - t0}
        if val is not None:
            lo, _ = predict_top(model, val[0], cut)
            row["val_loss"] = float(F.cross_entropy(torch.from_numpy(lo), torch.from_numpy(val[1])))
            row["val_accuracy"] = float((lo.argmax(1) == val[1]).mean())
        history.append(row)
        if log:
            log(
                "  ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                )
            )
    return history
