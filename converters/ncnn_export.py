"""ONNX -> ncnn with ``pnnx`` (host side), and adding an ncnn artifact to a model directory.

pnnx reads the exported ONNX graph (the same one ONNX Runtime runs, ``features`` output
included, so CAM works) and writes ``model.ncnn.param`` / ``model.ncnn.bin`` with blobs
``in0`` -> ``out0, out1...`` in the ONNX output order. Weights stay fp32 (``fp16=0``): the
parity check against PyTorch uses the same 1e-4 tolerance and top-1 rule as the other
backends. Its intermediate files (pnnx IR, a re-simplified ONNX, Python stubs) are dropped.

int8: ncnn quantizes with its C++ tools ``ncnn2table`` (calibration) and ``ncnn2int8``,
which the ``ncnn`` and ``pnnx`` wheels do not ship (docs/devices.md).

    python3 -m mpox_edge.converters.ncnn_export MODEL_DIR --checkpoint CKPT   # add to a model
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mpox_edge.edge.errors import MissingDependencyError, ModelError
from mpox_edge.edge.model.manifest import Artifact, ModelDir

PARAM, BIN = "model.ncnn.param", "model.ncnn.bin"


def pnnx_binary() -> Path:
    """The ``pnnx`` converter that the pnnx wheel ships beside its Python module."""
    try:
        import pnnx
    except ImportError as e:
        raise MissingDependencyError(
            f"ncnn export needs pnnx ({e}): pip install pnnx ncnn, or from the checkout "
            "python3 -m pip install -e '.[convert,ncnn]'"
        ) from None
    exe = Path(pnnx.__file__).parent / "pnnx"
    if not exe.is_file() or not os.access(exe, os.X_OK):
        found = shutil.which("pnnx")
        if not found:
            raise MissingDependencyError(f"the pnnx wheel has no converter binary at {exe}")
        exe = Path(found)
    return exe


def onnx_to_ncnn(onnx_path: Path, out_dir: Path, input_size: int) -> tuple[Path, Path]:
    """Convert; returns (param, bin) in ``out_dir``. Raises ModelError with pnnx's last line."""
    with tempfile.TemporaryDirectory(prefix="pnnx-") as tmp:
        src = Path(tmp) / "model.onnx"
        shutil.copyfile(onnx_path, src)
        cmd = [
            str(pnnx_binary()),
            src.name,
            f"inputshape=[1,3,{input_size},{input_size}]",
            "fp16=0",
        ]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        param, weights = Path(tmp) / PARAM, Path(tmp) / BIN
        if r.returncode != 0 or not param.is_file() or not weights.is_file():
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelError(f"pnnx could not convert {onnx_path.name}: {tail[0]}")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(param), out_dir / PARAM)
        shutil.move(str(weights), out_dir / BIN)
    return out_dir / PARAM, out_dir / BIN


def ncnn_artifact(md: ModelDir, outputs: tuple[str, ...]) -> Artifact:
    blobs = {"input": "in0", **{name: f"out{i}" for i, name in enumerate(outputs)}}
    return md.make_artifact(
        fmt="ncnn",
        precision="fp32",
        path=PARAM,
        weights_path=BIN,
        outputs=outputs,
        extra={"blobs": blobs, "converter": f"pnnx {_version('pnnx')}"},
    )


def add_ncnn(
    model_dir: str | Path,
    checkpoint: str | Path,
    *,
    tolerance: float = 1e-4,
    parity_data: str | None = None,
    parity_images: int = 16,
) -> dict[str, Any]:
    """Convert a model directory's ONNX fp32 graph to ncnn, prove it against the PyTorch
    checkpoint it came from, and record the artifact (nothing is kept if parity fails)."""
    from .checkpoint import build_from_checkpoint
    from .parity import check_parity

    md = ModelDir.load(model_dir)
    onnx = md.manifest.artifact("onnx", "fp32")
    if onnx is None:
        raise ModelError(f"{md.path} has no ONNX fp32 artifact to convert")
    model, _meta = build_from_checkpoint(checkpoint, arch=md.manifest.architecture)
    onnx_to_ncnn(md.verify(onnx), md.path, md.manifest.preprocess.input_size)
    try:
        art = ncnn_artifact(md, tuple(onnx.outputs))
        probe = ModelDir(md.path, md.manifest)
        saved = list(md.manifest.artifacts)
        probe.manifest.artifacts = [art]
        parity = check_parity(model, probe, data=parity_data, n=parity_images, tolerance=tolerance)
        md.manifest.artifacts = saved
    except BaseException:
        for f in (PARAM, BIN):
            (md.path / f).unlink(missing_ok=True)
        raise
    art.extra["parity"] = parity["backends"]["ncnn"] | {"inputs": parity["inputs"]}
    md.manifest.replace_artifact(art)
    if isinstance(md.manifest.parity, dict) and "backends" in md.manifest.parity:
        md.manifest.parity["backends"]["ncnn"] = parity["backends"]["ncnn"]
    md.manifest.exporter = {
        **(md.manifest.exporter or {}),
        "pnnx": _version("pnnx"),
        "ncnn": _version("ncnn"),
    }
    md.save()
    return {"artifact": art.path, "size_bytes": art.size_bytes, "parity": parity}


def _version(pkg: str) -> str:
    import importlib.metadata as im

    try:
        return im.version(pkg)
    except im.PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="add a parity-checked ncnn artifact to a model")
    ap.add_argument("model_dir")
    ap.add_argument("--checkpoint", required=True, help="the PyTorch checkpoint it came from")
    ap.add_argument("--parity-data", help="image folder for the parity check (else synthetic)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args(argv)
    from mpox_edge.edge.errors import MpoxEdgeError

    try:
        r = add_ncnn(
            args.model_dir, args.checkpoint, tolerance=args.tolerance, parity_data=args.parity_data
        )
    except MpoxEdgeError as e:
        print(f"ncnn_export: error: {e}", file=sys.stderr)
        return 2
    p = r["parity"]["backends"]["ncnn"]
    print(
        f"ncnn {r['artifact']} ({r['size_bytes'] / 1e6:.2f} MB): max|dlogit| "
        f"{p['max_abs_diff']:.2e}, top-1 {p['top1_agree']}/{r['parity']['n']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
