"""The training loop behind ``mpox-edge train``: one model, one train/validation split.

Kept apart from the CLI so tests and scripts call ``fit(TrainConfig(...))`` directly.
torch is imported inside functions: the CLI imports this module for ``--help``.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from mpox_edge.edge.errors import UsageError
from mpox_edge.edge.model.manifest import sha256_file
from mpox_edge.edge.reports.accuracy import classification_report, softmax

from .augment import AugmentConfig
from .checkpoint import (
    build_from_checkpoint,
    preprocess_from_meta,
    save_checkpoint,
    zoo_preprocess,
)
from .trainconfig import POSITIVE_CLASS, TrainConfig
from .traindata import (
    AugmentedDataset,
    fingerprint,
    fold_sets,
    preprocess_all,
    resolve_splits,
)


def _head_params(model: Any, size: int) -> set[int]:
    """Ids of the parameters ``forward_head`` uses: found by one backward through it."""
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        f = model.forward_features(torch.zeros(1, 3, size, size))
    model.zero_grad(set_to_none=True)
    model.forward_head(f.requires_grad_(False)).sum().backward()
    ids = {id(p) for p in model.parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.train(was)
    return ids


def evaluate_logits(model: Any, x: np.ndarray, *, batch: int = 64) -> np.ndarray:
    """Eval-mode logits for preprocessed inputs (no augmentation)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i : i + batch]).contiguous(memory_format=torch.channels_last)
            out.append(model(xb).float().numpy())
    return np.concatenate(out)


def _train_epoch(
    model: Any,
    loader: Any,
    opt: Any,
    cfg: TrainConfig,
    *,
    epoch: int,
    teacher: Any,
    two_views: bool,
) -> float:
    """One pass over the augmented training set; returns the mean training loss.

    Loss: CE (label smoothing, mixup) on the main logits; with a teacher,
    ``alpha * KL(student/T || teacher/T) * T^2 + (1 - alpha) * CE``; plus ``aux_weight`` x
    CE of each auxiliary head (seed 002 adds them unweighted). A frozen backbone keeps its
    BatchNorm statistics and skips the aux heads, which only train the backbone.
    """
    import torch
    import torch.nn.functional as F

    T, alpha, ls = cfg.distill_temp, cfg.distill_alpha, cfg.label_smoothing

    def ce(logits: Any, y: Any, y2: Any, lam: float) -> Any:
        loss = F.cross_entropy(logits, y, label_smoothing=ls)
        if y2 is None:
            return loss
        return lam * loss + (1 - lam) * F.cross_entropy(logits, y2, label_smoothing=ls)

    model.train()
    if cfg.freeze_backbone:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if not any(p.requires_grad for p in m.parameters()):
                    m.eval()
    total, seen = 0.0, 0
    for batch in loader:
        x, y = batch[0], batch[-1]
        x = x.contiguous(memory_format=torch.channels_last)
        xt = batch[1].contiguous(memory_format=torch.channels_last) if two_views else x
        y2, lam = None, 1.0
        if cfg.mixup > 0:
            perm_rng = np.random.default_rng([cfg.seed, epoch, seen])
            lam = float(perm_rng.beta(cfg.mixup, cfg.mixup))
            perm = torch.from_numpy(perm_rng.permutation(len(x)))
            x, y2 = lam * x + (1 - lam) * x[perm], y[perm]
            xt = x if not two_views else lam * xt + (1 - lam) * xt[perm]
        logits, aux = model.forward_train(x)
        loss = ce(logits, y, y2, lam)
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(xt)
            kd = F.kl_div(
                F.log_softmax(logits / T, dim=1),
                F.log_softmax(t_logits / T, dim=1),
                reduction="batchmean",
                log_target=True,
            )
            loss = alpha * kd * T * T + (1 - alpha) * loss
        if not cfg.freeze_backbone:
            for a in aux:
                loss = loss + cfg.aux_weight * ce(a, y, y2, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(y)
        seen += len(y)
    return total / max(seen, 1)


def fit(cfg: TrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train, validate every epoch, keep the best epoch's checkpoint at ``cfg.out``.

    Ctrl-C stops training, prints where the best checkpoint is and re-raises.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from .zoo import create_model

    cfg.validate()
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    spec = zoo_preprocess(cfg.arch, input_size=cfg.input_size)
    splits = resolve_splits(cfg.data, cfg.classes, out=cfg.out, splits=cfg.splits, seed=cfg.seed)
    tr, va = fold_sets(
        cfg.data, splits, cfg.classes, train_folds=cfg.train_folds, val_folds=cfg.val_folds
    )
    model = create_model(cfg.arch, num_classes=len(cfg.classes), pretrained=cfg.pretrained)
    head = _head_params(model, spec.input_size) if cfg.freeze_backbone else None
    for p in model.parameters():
        p.requires_grad_(head is None or id(p) in head)
    teacher, t_spec = None, None
    if cfg.teacher:
        teacher, t_meta = build_from_checkpoint(cfg.teacher)
        if list(t_meta.get("classes") or cfg.classes) != list(cfg.classes):
            raise UsageError(f"teacher classes {t_meta['classes']} differ from {cfg.classes}")
        t_spec = preprocess_from_meta(t_meta)
        teacher = teacher.to(memory_format=torch.channels_last).eval()
    extra = [t_spec] if t_spec is not None and t_spec != spec else []
    aug = AugmentConfig.preset(cfg.augment)
    # a map-style dataset by duck typing (__len__/__getitem__), not a torch Dataset subclass
    ds: Any = AugmentedDataset(tr, spec, seed=cfg.seed, config=aug, extra_specs=extra)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=cfg.workers,
        drop_last=len(ds) % cfg.batch_size == 1,  # a batch of one breaks BatchNorm
    )
    model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        if cfg.lr_schedule == "cosine"
        else None
    )
    size = spec.input_size
    x_val = (
        preprocess_all(va.images, spec) if va.images else np.zeros((0, 3, size, size), np.float32)
    )
    y_val = va.labels
    config = {
        **asdict(cfg),
        "splits_used": splits,
        "splits_sha256": sha256_file(splits),
        "data_fingerprint": fingerprint(tr, va),
        "n_train": len(tr.images),
        "n_val": len(va.images),
        "skipped": tr.skipped + va.skipped,
        "augment": aug.to_dict(),
        "augment_preset": cfg.augment,
        "torch": torch.__version__,
        # the architecture's source: a zoo edit (e.g. added drop-connect) changes training
        "arch_source_sha256": sha256_file(inspect.getsourcefile(type(model)) or ""),
        "threads": torch.get_num_threads(),
    }
    best: dict[str, Any] = {"acc": -1.0, "loss": float("inf"), "epoch": 0, "val": None}
    history: list[dict[str, Any]] = []
    bad = 0
    bar = tqdm(
        range(1, cfg.epochs + 1), desc=cfg.arch, unit="ep", disable=None if progress else True
    )
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            ds.set_epoch(epoch)
            train_loss = _train_epoch(
                model, loader, opt, cfg, epoch=epoch, teacher=teacher, two_views=bool(extra)
            )
            lr_used = opt.param_groups[0]["lr"]
            if sched is not None:
                sched.step()
            if len(y_val):
                logits = evaluate_logits(model, x_val)
                val_loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_val)))
                rep = classification_report(
                    y_val, softmax(logits), cfg.classes, positive_class=POSITIVE_CLASS
                )
                rep["loss"] = val_loss
            else:  # no validation fold: every epoch "improves", so the last one is kept
                val_loss, rep = float("nan"), {"accuracy": float("nan"), "n": 0}
            secs = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": rep["accuracy"],
                "lr": lr_used,
                "seconds": secs,
            }
            history.append(row)
            improved = not len(y_val) or (
                rep["accuracy"] > best["acc"]
                or (rep["accuracy"] == best["acc"] and val_loss < best["loss"])
            )
            if improved:
                best = {"acc": rep["accuracy"], "loss": val_loss, "epoch": epoch, "val": rep}
                if not len(y_val):
                    best["val"] = None
                save_checkpoint(
                    cfg.out,
                    arch=cfg.arch,
                    classes=cfg.classes,
                    state_dict=model.state_dict(),
                    epoch=epoch,
                    val=best["val"],
                    train_config=config,
                    preprocess={**asdict(spec)},
                )
                bad = 0
            else:
                bad += 1
            bar.set_postfix(
                loss=f"{row['train_loss']:.3f}",
                val_acc=f"{rep['accuracy']:.3f}",
                best=f"{best['acc']:.3f}@{best['epoch']}",
            )
            tqdm.write(
                f"epoch {epoch:3d}  train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}  "
                f"val acc {rep['accuracy']:.4f}  {'*' if improved else ' '}  {secs:.1f} s",
                file=sys.stdout,
            )
            sys.stdout.flush()
            if bad >= cfg.patience:
                break
    except KeyboardInterrupt:
        where = (
            f"best checkpoint (epoch {best['epoch']}, val acc {best['acc']:.4f}) is {cfg.out}"
            if best["epoch"]
            else "no checkpoint was written yet"
        )
        print(f"\ninterrupted; {where}", file=sys.stderr)
        raise
    finally:
        bar.close()
    return {
        "arch": cfg.arch,
        "out": os.fspath(cfg.out),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "train_folds": cfg.train_folds,
        "val_folds": cfg.val_folds,
        "val": best["val"],
        "history": history,
        "train_config": config,
    }
