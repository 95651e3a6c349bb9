"""``mpox-edge export``: a trained PyTorch checkpoint -> ONNX + OpenVINO IR + manifest.json.

The export is proven at export time: ONNX Runtime and OpenVINO (forced to real f32) must
reproduce the PyTorch logits within ``--tolerance`` with identical top-1, on real images when
``--parity-data`` is given, otherwise on images the command makes. Everything is written
into a temporary directory first and moved into ``--out`` only when it all passed, so a
failed export never leaves half a model behind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mpox_edge.edge.cliopts import add_json, comma_list, write_json
from mpox_edge.edge.errors import UsageError
from mpox_edge.edge.model.manifest import Manifest, ModelDir, Preprocess

DEFAULT_CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
OPSET = 17


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="trained checkpoint (.pt) or bare state_dict")
    p.add_argument("--arch", help="zoo architecture (read from the checkpoint when it has one)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument(
        "--to",
        type=comma_list(choices=("onnx", "openvino", "ncnn"), what="targets"),
        default=["onnx", "openvino"],
        help="comma list of: onnx, openvino, ncnn (ncnn: converted by pnnx, pip install pnnx ncnn)",
    )
    p.add_argument(
        "--classes",
        type=comma_list(what="class names"),
        help="comma list of class names in output order "
        "(default: from the checkpoint, else the MSID four)",
    )
    p.add_argument("--positive-class", default="Monkeypox", help="class a screening refers on")
    p.add_argument(
        "--parity-data",
        help="image folder (or MSID root with splits.csv: fold 0 is used) for the parity check",
    )
    p.add_argument("--parity-images", type=int, default=16, help="images for the parity check")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |logit difference|")
    p.add_argument("--force", action="store_true", help="replace an existing model directory")
    add_json(p, "the export summary")


def run(args: argparse.Namespace) -> int:
    targets = list(args.to)
    classes = list(args.classes) if args.classes else None
    summary = export_checkpoint(
        args.checkpoint,
        arch=args.arch,
        out=args.out,
        to=targets,
        classes=classes,
        positive_class=args.positive_class,
        parity_data=args.parity_data,
        parity_images=args.parity_images,
        tolerance=args.tolerance,
        force=args.force,
        progress=sys.stderr.isatty(),
    )
    write_json(args.json, summary)
    if args.json != "-":
        for line in format_summary(summary):
            print(line)
    return 0


def format_summary(s: dict[str, Any]) -> list[str]:
    lines = [f"exported {s['architecture']} -> {s['out']}"]
    for a in s["artifacts"]:
        lines.append(
            f"  {a['format']:<9} {a['precision']}  {a['path']:<12} "
            f"{a['size_bytes'] / 1e6:6.2f} MB  sha256 {a['sha256'][:12]}"
        )
    for name, r in s["parity"]["backends"].items():
        lines.append(
            f"  parity {name:<12} max|dlogit| {r['max_abs_diff']:.2e}  "
            f"top-1 agree {r['top1_agree']}/{s['parity']['n']}  ({s['parity']['inputs']})"
        )
    return lines


def export_checkpoint(
    checkpoint: str | Path,
    *,
    arch: str | None,
    out: str | Path,
    to: list[str] | None = None,
    classes: list[str] | None = None,
    positive_class: str | None = "Monkeypox",
    parity_data: str | None = None,
    parity_images: int = 16,
    tolerance: float = 1e-4,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Export one checkpoint; returns the summary (also recorded in the manifest)."""
    from . import checkpoint as ckpt
    from .zoo import get_entry

    to = to or ["onnx", "openvino"]
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty; pass --force to replace it")
    if arch is not None:
        get_entry(arch)  # unknown architecture: fail before touching anything
    model, meta = ckpt.build_from_checkpoint(checkpoint, arch=arch)
    arch = meta["arch"]
    entry = get_entry(arch)
    classes = classes or meta.get("classes") or DEFAULT_CLASSES[: meta.get("num_classes", 4)]
    # A training checkpoint records the preprocessing it was trained with (input size
    # included); a bare state_dict gets the zoo entry's.
    pp = ckpt.preprocess_from_meta(meta)
    n_out = _num_outputs(model, pp.input_size)
    if len(classes) != n_out:
        raise UsageError(f"{len(classes)} class names given but the model has {n_out} outputs")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        md = _write_artifacts(model, entry, pp, tmp, to)
        md.manifest = Manifest(
            architecture=arch,
            classes=list(classes),
            preprocess=pp,
            artifacts=md.manifest.artifacts,
            positive_class=positive_class if positive_class in classes else None,
            cam=md.manifest.cam,
            training=_training_meta(meta, checkpoint),
            exporter=_versions(),
        )
        from .parity import check_parity

        md.manifest.parity = check_parity(
            model, md, data=parity_data, n=parity_images, tolerance=tolerance
        )
        md.save()
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = ModelDir.load(out)
    return {
        "architecture": arch,
        "out": str(out),
        "artifacts": [
            {k: v for k, v in a.__dict__.items() if k != "extra"} for a in final.manifest.artifacts
        ],
        "parity": final.manifest.parity,
    }


def _num_outputs(model: Any, size: int) -> int:
    import torch

    with torch.no_grad():
        return int(model.eval()(torch.zeros(1, 3, size, size)).shape[1])


def _write_artifacts(model: Any, entry: Any, pp: Preprocess, tmp: Path, to: list[str]) -> ModelDir:
    from .cam import export_cam_head
    from .onnx_io import export_onnx, onnx_to_openvino

    md = ModelDir(tmp, Manifest(architecture=entry.name, classes=[], preprocess=pp, artifacts=[]))
    cam = export_cam_head(model, entry, tmp, input_size=pp.input_size)  # None: no exact CAM
    outputs = ("logits", "features") if cam else ("logits",)
    export_onnx(model, tmp / "model.onnx", input_size=pp.input_size, with_features=bool(cam))
    if "onnx" in to:
        md.manifest.replace_artifact(
            md.make_artifact(fmt="onnx", precision="fp32", path="model.onnx", outputs=outputs)
        )
    if "openvino" in to:
        onnx_to_openvino(tmp / "model.onnx", tmp / "model.xml")
        md.manifest.replace_artifact(
            md.make_artifact(
                fmt="openvino",
                precision="fp32",
                path="model.xml",
                weights_path="model.bin",
                outputs=outputs,
            )
        )
    if "ncnn" in to:
        from .ncnn_export import ncnn_artifact, onnx_to_ncnn

        onnx_to_ncnn(tmp / "model.onnx", tmp, pp.input_size)
        md.manifest.replace_artifact(ncnn_artifact(md, outputs))
    if "onnx" not in to:
        (tmp / "model.onnx").unlink()
    md.manifest.cam = cam
    return md


def _training_meta(meta: dict[str, Any], checkpoint: str | Path) -> dict[str, Any]:
    from mpox_edge.edge.model.manifest import sha256_file

    keep: dict[str, Any] = {k: meta[k] for k in ("epoch", "val", "train_config") if k in meta}
    return {
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": sha256_file(checkpoint),
        **keep,
    }


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("mpox-edge", "torch", "onnx", "onnxsim", "onnxruntime", "openvino"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    out["opset"] = str(OPSET)
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Swap the finished directory in; the previous one is removed only after the swap."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.chmod(0o755)  # mkdtemp makes 0700; a daemon user must read the model
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
