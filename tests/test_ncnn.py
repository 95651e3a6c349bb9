"""ncnn, the third backend: export through pnnx with parity, CAM features, auto, and absence."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from mpox_edge.edge.errors import IntegrityError
from mpox_edge.edge.model.backends import REGISTRY, probe
from mpox_edge.edge.model.manifest import ModelDir

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_ncnn_never_breaks_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpox_edge.edge.model.classifier import Classifier, default_model_dir
    from mpox_edge.edge.model.selection import candidates

    monkeypatch.setitem(sys.modules, "ncnn", None)  # import fails, as on a device without it
    pr = probe("ncnn")
    assert not pr.available and "pip install ncnn" in pr.reason
    rows = candidates(ModelDir.load(default_model_dir()))
    nc = [r for r in rows if r["backend"] == "ncnn"]
    assert nc and not nc[0]["ok"] and "ncnn is not installed" in nc[0]["reason"]
    assert any(r["ok"] for r in rows if r["backend"] == "onnxruntime")
    clf = Classifier.open(None, backend="onnxruntime")  # the others load as before
    clf.close()


@pytest.fixture(scope="module")
def ncnn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("ncnn", reason="pip install ncnn pnnx (extra [ncnn])")
    pytest.importorskip("pnnx", reason="pip install ncnn pnnx (extra [ncnn])")
    from mpox_edge.converters.export import export_checkpoint
    from mpox_edge.converters.zoo import create_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ncnn")
    ckpt = d / "fast.pt"
    torch.save(create_model("fast-mpoxnet").state_dict(), ckpt)
    out = d / "model"
    export_checkpoint(ckpt, arch="fast-mpoxnet", out=out, to=["onnx", "ncnn"])
    return out


@pytest.mark.slow
def test_export_converts_and_proves_ncnn_against_pytorch(ncnn_model: Path) -> None:
    md = ModelDir.load(ncnn_model)
    art = md.manifest.artifact("ncnn", "fp32")
    assert art is not None and art.weights_path == "model.ncnn.bin"
    assert art.outputs == ("logits", "features") and art.extra["blobs"]["features"] == "out1"
    par = md.manifest.parity["backends"]["ncnn"]
    assert par["max_abs_diff"] <= md.manifest.parity["tolerance"]
    assert par["top1_agree"] == md.manifest.parity["n"]
    assert not list(ncnn_model.glob("*pnnx*")), "pnnx's intermediate files are not shipped"


@pytest.mark.slow
def test_ncnn_predicts_like_onnxruntime_with_cam_features(ncnn_model: Path) -> None:
    from mpox_edge.edge.model.classifier import Classifier
    from mpox_edge.edge.model.dataset import read_image

    imgs = [read_image(p) for p in sorted((ROOT / "edge/data/heldout").rglob("*.webp"))[:4]]
    a = Classifier.open(ncnn_model, backend="ncnn", threads=1)
    b = Classifier.open(ncnn_model, backend="onnxruntime", threads=1)
    try:
        for img in imgs:
            pa, pb = a.predict(img, with_features=True), b.predict(img, with_features=True)
            assert np.abs(pa.probs - pb.probs).max() < 1e-4
            assert pa.features is not None and pa.features.shape == pb.features.shape
            assert np.abs(pa.features - pb.features).max() < 1e-3
        batch = a.backend.infer(np.zeros((2, 3, a.spec.input_size, a.spec.input_size), np.float32))
        assert batch["logits"].shape == (2, len(a.classes))
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_auto_times_ncnn_and_a_tampered_bin_is_refused(ncnn_model: Path, tmp_path: Path) -> None:
    import shutil

    from mpox_edge.edge.model.backends import load_backend
    from mpox_edge.edge.model.selection import select_backend

    assert "ncnn" in REGISTRY
    dec = select_backend(ModelDir.load(ncnn_model), cache_dir=tmp_path / "c", runs=3, warmup=1)
    timed = {c["backend"] for c in dec["candidates"] if "median_ms" in c}
    assert {"ncnn", "onnxruntime"} <= timed, dec["candidates"]
    bad = tmp_path / "bad"
    shutil.copytree(ncnn_model, bad)
    with (bad / "model.ncnn.bin").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(IntegrityError):
        load_backend(ModelDir.load(bad), "ncnn")
