"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the zoo."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from mpox_edge.edge.errors import CheckpointError

FORMAT = "mpox-edge-checkpoint"


def save_checkpoint(
    path: str | Path, *, arch: str, state_dict: dict[str, Any], classes: list[str], **meta: Any
) -> None:
    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    obj = {
        "format": FORMAT,
        "version": 1,
        "arch": arch,
        "classes": list(classes),
        "num_classes": len(classes),
        "state_dict": state_dict,
        **meta,
    }
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: str | Path, *, arch: str | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(arch, state_dict, meta) from a full checkpoint or a bare state_dict."""
    import torch

    from .zoo import get_entry

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        raise CheckpointError(
            f"{p} is not a readable PyTorch checkpoint: {str(e).splitlines()[0][:200]}"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        sd = obj["state_dict"]
        if arch and arch != obj["arch"]:
            raise CheckpointError(f"{p} holds a {obj['arch']} checkpoint, not {arch}")
        arch = obj["arch"]
    elif isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        sd, meta = obj, {}
        if not arch:
            raise CheckpointError(f"{p} is a bare state_dict: name its architecture with --arch")
    else:
        raise CheckpointError(f"{p} is neither an mpox-edge checkpoint nor a state_dict")
    get_entry(arch)
    meta["arch"] = arch
    return arch, sd, meta


def build_from_checkpoint(
    path: str | Path, *, arch: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """The zoo model with the checkpoint's weights loaded strictly, in eval mode."""
    from .zoo import create_model

    arch, sd, meta = load_checkpoint(path, arch=arch)
    n = meta.get("num_classes")
    if n is None:
        heads = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 2]
        n = int(heads[-1].shape[0]) if heads else None
    model = create_model(arch, num_classes=n)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CheckpointError(f"state_dict does not fit architecture {arch}: {first}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"state_dict does not fit architecture {arch}: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    meta.setdefault("num_classes", n)
    return model.eval(), meta
