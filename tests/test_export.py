"""Converters: every zoo model exports to ONNX + OpenVINO with parity; bad input fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from mpox_edge.converters.export import export_checkpoint  # noqa: E402
from mpox_edge.converters.zoo import create_model, get_entry, list_models  # noqa: E402
from mpox_edge.edge.errors import ParityError  # noqa: E402
from mpox_edge.edge.model.backends import load_backend  # noqa: E402
from mpox_edge.edge.model.manifest import ModelDir  # noqa: E402


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", *args], capture_output=True, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_models())
def test_every_zoo_model_exports_with_parity(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(arch)
    ckpt = tmp_path / "m.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "out"
    summary = export_checkpoint(ckpt, arch=arch, out=out, parity_images=4)
    md = ModelDir.load(out)
    m = md.manifest
    assert m.architecture == arch and len(m.classes) == 4
    assert {a.key for a in m.artifacts} == {"onnx-fp32", "openvino-fp32"}
    for name, r in summary["parity"]["backends"].items():
        assert r["max_abs_diff"] <= 1e-4 and r["top1_agree"] == 4, name
    proto = onnx.load(str(out / "model.onnx"))
    assert proto.opset_import[0].version == 17
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output][0] == "logits"
    # auxiliary heads never reach the device graph
    n_onnx = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    n_aux = sum(p.numel() for n, p in model.named_parameters() if "aux" in n)
    n_model = sum(p.numel() for p in model.parameters())
    assert n_onnx <= n_model - n_aux + 1024  # BN folding only shrinks
    # OpenVINO IR keeps fp32 weights (no silent fp16 compression)
    assert (out / "model.bin").stat().st_size >= 4 * (n_onnx - 4096) * 0.9
    # dynamic batch works on both backends
    x = (
        np.random.default_rng(0)
        .standard_normal((3, 3, m.preprocess.input_size, m.preprocess.input_size))
        .astype(np.float32)
    )
    outs = []
    for backend in ("onnxruntime", "openvino"):
        be = load_backend(md, backend)
        outs.append(be.infer(x)["logits"])
        be.close()
    assert outs[0].shape == (3, 4)
    assert np.abs(outs[0] - outs[1]).max() < 1e-4
    cam = get_entry(arch).cam
    assert (m.cam is not None) == (cam is not None)
    if cam is not None:
        _check_cam_matches_torch_gradcam(model, md)


def _check_cam_matches_torch_gradcam(model: object, md: ModelDir) -> None:
    """The device's numpy CAM equals autograd Grad-CAM through the real head."""
    from mpox_edge.converters.gradcam import gradcam
    from mpox_edge.converters.parity import synthetic_images
    from mpox_edge.edge.explain.cam import CamHead
    from mpox_edge.edge.model.preprocess import preprocess

    head = CamHead.load(md)
    be = load_backend(md, "onnxruntime")
    for img in synthetic_images(2, seed=5):
        x = preprocess(img, md.manifest.preprocess)
        out = be.infer(x)
        for c in range(len(md.manifest.classes)):
            ref, _ = gradcam(model, x, c)
            got = head.heatmap(out["features"][0], c)
            assert got.shape == ref.shape
            assert np.abs(got - ref).max() < 2e-3, (c, np.abs(got - ref).max())
    be.close()


def test_parity_on_real_images(msid: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    ckpt = tmp_path / "m.pt"
    torch.save(create_model("fast-mpoxnet").state_dict(), ckpt)
    s = export_checkpoint(
        ckpt, arch="fast-mpoxnet", out=tmp_path / "o", parity_data=str(msid), parity_images=8
    )
    assert "fold 0" in s["parity"]["inputs"] and s["parity"]["n"] == 8


def test_parity_failure_leaves_nothing(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    torch.save(create_model("fast-mpoxnet").state_dict(), ckpt)
    with pytest.raises(ParityError, match="does not match PyTorch"):
        export_checkpoint(
            ckpt, arch="fast-mpoxnet", out=tmp_path / "o", tolerance=-1.0, parity_images=2
        )
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _cli("export", str(tmp_path / "missing.pt"), "--arch", "fast-mpoxnet", "--out", str(out))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "missing.pt" in r.stderr
    ckpt = tmp_path / "m.pt"
    torch.save(create_model("micro-mpoxnet").state_dict(), ckpt)
    r = _cli("export", str(ckpt), "--arch", "no-such-net", "--out", str(out))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "no-such-net" in r.stderr
    r = _cli("export", str(ckpt), "--arch", "fast-mpoxnet", "--out", str(out))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "fast-mpoxnet" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    r = _cli("export", str(tmp_path / "junk.pt"), "--arch", "fast-mpoxnet", "--out", str(out))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "junk.pt" in r.stderr
    assert not out.exists()


def test_cli_export_refuses_to_clobber_and_writes_json(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    torch.save(create_model("fast-mpoxnet").state_dict(), ckpt)
    out = tmp_path / "out"
    r = _cli(
        "export",
        str(ckpt),
        "--arch",
        "fast-mpoxnet",
        "--out",
        str(out),
        "--to",
        "onnx",
        "--parity-images",
        "2",
        "--json",
        str(tmp_path / "s.json"),
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert [a["format"] for a in s["artifacts"]] == ["onnx"]
    before = (out / "manifest.json").read_text()
    r = _cli("export", str(ckpt), "--arch", "fast-mpoxnet", "--out", str(out))
    assert r.returncode != 0 and "--force" in r.stderr
    assert (out / "manifest.json").read_text() == before


def test_export_uses_the_input_size_the_checkpoint_was_trained_at(tmp_path: Path) -> None:
    """A checkpoint trained at 160 px exports at 160 px (graph, CAM head and manifest),
    not at the zoo entry's default: the device must preprocess as training did."""
    from dataclasses import asdict

    from mpox_edge.converters.checkpoint import save_checkpoint, zoo_preprocess
    from mpox_edge.edge.explain.cam import CamHead

    torch.manual_seed(0)
    arch = "fast-mpoxnet"
    assert get_entry(arch).preprocess.input_size != 160
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        arch=arch,
        classes=["Chickenpox", "Measles", "Monkeypox", "Normal"],
        state_dict=create_model(arch).state_dict(),
        preprocess=asdict(zoo_preprocess(arch, input_size=160)),
    )
    out = tmp_path / "out"
    export_checkpoint(ckpt, arch=None, out=out, to=["onnx"], parity_images=2)
    md = ModelDir.load(out)
    assert md.manifest.preprocess.input_size == 160
    proto = onnx.load(str(out / "model.onnx"))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [3, 160, 160]
    be = load_backend(md, "onnxruntime")
    feats = be.infer(np.zeros((1, 3, 160, 160), np.float32))["features"]
    assert list(feats.shape[2:]) == md.manifest.cam["feature_size"]
    assert CamHead.load(md).heatmap(feats[0], 2).shape == tuple(feats.shape[2:])
