"""Training checkpoints: one self-describing file per model, written atomically.

A checkpoint carries what export and eval need to rebuild the model without guessing:
architecture, class names (the output order), preprocessing, the validation figures that
selected it and the full training config. ``torch.load(weights_only=True)`` reads it, so a
checkpoint from elsewhere can never run code. Bare ``state_dict`` files (the zoo's tests,
other tools) are accepted too when the caller names the architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mpox_edge.edge.errors import CheckpointError, MpoxEdgeError, UsageError
from mpox_edge.edge.model.manifest import Preprocess

FORMAT = "mpox-edge-checkpoint"
VERSION = 1


def _plain(obj: Any) -> Any:
    """JSON round trip: tuples -> lists, numpy scalars -> Python, so weights_only loads it."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch: str,
    classes: list[str],
    state_dict: dict[str, Any],
    epoch: int = 0,
    val: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Path:
    """Write through a temp file in the same folder + ``os.replace``: a crash or Ctrl-C
    mid-write leaves the previous best checkpoint intact, never half a file."""
    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "classes": list(classes),
        "num_classes": len(classes),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "epoch": int(epoch),
        "val": _plain(val or {}),
        "train_config": _plain(train_config or {}),
        "preprocess": _plain(preprocess or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is a normal file
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _check_arch(name: str) -> None:
    from .zoo import get_entry

    try:
        get_entry(name)
    except MpoxEdgeError as e:  # UnknownArchitectureError
        raise CheckpointError(str(e)) from None


def load_checkpoint(
    path: str | os.PathLike[str], *, arch: str | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Read a checkpoint -> ``(arch, state_dict, meta)``; meta is everything but the weights.

    ``arch`` is required for a bare state_dict; for a full checkpoint it must agree with
    the recorded one (catches exporting a Fast-MpoxNet file as EfficientNet).
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p} is not a PyTorch checkpoint ({first[:160]})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if int(obj.get("version", 0)) > VERSION:
            raise CheckpointError(
                f"{p}: checkpoint version {obj['version']} is newer than this mpox-edge "
                f"reads ({VERSION}); upgrade mpox-edge"
            )
        stored = str(obj.get("arch", ""))
        if arch is not None and arch != stored:
            raise CheckpointError(f"{p} is a {stored!r} checkpoint, not {arch!r}")
        sd: dict[str, Any] = obj.get("state_dict") or {}
        if not _is_state_dict(sd):
            raise CheckpointError(f"{p}: checkpoint has no usable state_dict")
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        _check_arch(stored)
        return stored, sd, meta
    if isinstance(obj, dict) and _is_state_dict(obj.get("state_dict")):
        obj = obj["state_dict"]  # {"state_dict": ...} written by other training scripts
    if not _is_state_dict(obj):
        raise CheckpointError(f"{p} is neither an mpox-edge checkpoint nor a state_dict")
    if arch is None:
        raise CheckpointError(f"{p} is a bare state_dict: name its architecture with --arch")
    _check_arch(arch)
    return arch, obj, {"arch": arch}


def build_from_checkpoint(
    path: str | os.PathLike[str], *, arch: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """Create the zoo model and load the weights strictly -> ``(model in eval mode, meta)``.

    Aux-head weights stay: the zoo model has the aux heads too (export drops them).
    """
    from .zoo import create_model, get_entry

    name, sd, meta = load_checkpoint(path, arch=arch)
    n = meta.get("num_classes")
    if n is None:  # bare state_dict: the last 2-D weight is the classifier
        heads = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 2]
        n = int(heads[-1].shape[0]) if heads else get_entry(name).default_num_classes
    n = int(n)
    model = create_model(name, num_classes=n, pretrained=False)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        eg = (missing + unexpected + shapes)[:3]
        raise CheckpointError(
            f"state_dict does not fit architecture {name}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, {len(shapes)} shape mismatches "
            f"(e.g. {', '.join(eg)})"
        )
    model.load_state_dict(sd, strict=True)
    meta = {**meta, "arch": name, "num_classes": n}
    return model.eval(), meta


def zoo_preprocess(arch: str, *, input_size: int | None = None) -> Preprocess:
    """The zoo entry's preprocessing as the manifest's ``Preprocess`` (optionally resized)."""
    from .zoo import get_entry

    entry = get_entry(arch)
    spec = entry.preprocess
    if input_size and entry.fixed_input_size and int(input_size) != spec.input_size:
        raise UsageError(
            f"{arch} is built for {spec.input_size} px (its TF 'SAME' pads are fixed to that "
            f"size); --input-size {input_size} would misalign its ImageNet weights"
        )
    return dataclasses.replace(spec, input_size=int(input_size)) if input_size else spec


def preprocess_from_meta(meta: dict[str, Any]) -> Preprocess:
    """A checkpoint's recorded preprocessing, else its architecture's zoo default."""
    pp = meta.get("preprocess")
    if not pp:
        return zoo_preprocess(meta["arch"])
    return Preprocess(**{**pp, "mean": tuple(pp["mean"]), "std": tuple(pp["std"])})
