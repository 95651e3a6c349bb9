"""Heatmaps on the device: numpy CAM vs PyTorch Grad-CAM, the CLI, and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mpox_edge.edge.explain.cam import CamHead, crop_box, overlay
from mpox_edge.edge.model.classifier import default_data_dir, default_model_dir
from mpox_edge.edge.model.manifest import ModelDir


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", *args], capture_output=True, text=True
    )


def _sample_image() -> Path:
    return sorted(default_data_dir().glob("Monkeypox/*.webp"))[0]


def test_overlay_lands_on_the_cropped_region() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    box = crop_box(frame.shape, 32, "shorter_side_center_crop")
    assert box == (50, 0, 100, 100)
    heat = np.ones((7, 7), np.float32)
    out = overlay(frame, heat, alpha=0.5, box=box)
    assert out[:, :50].max() == 0 and out[:, 150:].max() == 0
    assert out[:, 50:150].max() > 0


def test_explain_cli_writes_overlay(tmp_path: Path) -> None:
    img = tmp_path / "lesion.jpg"
    cv2.imwrite(str(img), cv2.imread(str(_sample_image())))
    out = tmp_path / "cam.png"
    for backend in ("onnxruntime", "openvino"):
        r = _cli("explain", str(img), "--backend", backend, "--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        assert res["overlay"] == str(out) and abs(sum(res["probabilities"].values()) - 1) < 1e-6
        written = cv2.imread(str(out))
        assert written is not None and written.shape == cv2.imread(str(img)).shape
    classes = ModelDir.load(default_model_dir()).manifest.classes
    r = _cli("explain", str(img), "--class", classes[0], "--out", str(out))
    assert r.returncode == 0 and classes[0] in r.stdout


def test_explain_bad_input(tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    r = _cli("explain", str(bad))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "bad.jpg" in r.stderr
    r = _cli(
        "explain", str(_sample_image()), "--class", "Smallpox", "--out", str(tmp_path / "x.png")
    )
    assert r.returncode != 0 and "Smallpox" in r.stderr and "Traceback" not in r.stderr
    # a model whose manifest offers no CAM gets a clear refusal, not a wrong heatmap
    import shutil

    d = tmp_path / "nocam"
    shutil.copytree(tiny_model_dir, d)
    mf = json.loads((d / "manifest.json").read_text())
    mf["cam"] = None
    (d / "manifest.json").write_text(json.dumps(mf))
    r = _cli("explain", str(_sample_image()), "--model", str(d), "--out", str(tmp_path / "y.png"))
    assert r.returncode != 0 and "no exact class-activation map" in r.stderr


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_default_model_cam_agrees_with_torch_gradcam(msid: Path, precision: str) -> None:
    """Issue 6 target: Pearson r >= 0.99 (fp32) / 0.95 (int8) on 20 real fold-4 images."""
    torch = pytest.importorskip("torch")
    from mpox_edge.converters.checkpoint import build_from_checkpoint
    from mpox_edge.converters.gradcam import gradcam
    from mpox_edge.edge.model.backends import load_backend
    from mpox_edge.edge.model.dataset import read_image, read_splits
    from mpox_edge.edge.model.preprocess import preprocess

    md = ModelDir.load(default_model_dir())
    if md.manifest.artifact("onnx", precision) is None:
        pytest.skip(f"the shipped model has no {precision} ONNX artifact")
    ckpt = Path(__file__).resolve().parents[1] / "models" / "default.pt"
    if not ckpt.is_file():
        pytest.skip("the shipped model directory carries no checkpoint for the reference")
    torch.set_num_threads(2)
    model, _ = build_from_checkpoint(ckpt, arch=md.manifest.architecture)
    head = CamHead.load(md)
    be = load_backend(md, "onnxruntime", precision=precision)
    rows = [r for r in read_splits(msid / "splits.csv") if r.fold == 4][:20]
    rs = []
    for r in rows:
        x = preprocess(read_image(msid / r.path), md.manifest.preprocess)
        out = be.infer(x)
        ref, c = gradcam(model, x)
        got = head.heatmap(out["features"][0], c)
        if ref.std() == 0 or got.std() == 0:
            rs.append(1.0 if np.allclose(ref, got, atol=1e-3) else 0.0)
            continue
        rs.append(float(np.corrcoef(ref.ravel(), got.ravel())[0, 1]))
    be.close()
    limit = 0.99 if precision == "fp32" else 0.95
    assert len(rs) == 20 and float(np.mean(rs)) >= limit, rs


def test_daemon_overlay_is_the_real_heatmap() -> None:
    """`explain = true` in the daemon: /latest.jpg carries edge/explain/cam.py's overlay."""
    from types import SimpleNamespace

    from mpox_edge.edge.explain.overlay import Explainer
    from mpox_edge.edge.model.classifier import Classifier

    frame = cv2.resize(cv2.imread(str(_sample_image())), (420, 300))  # wider than tall
    clf = Classifier.open(backend="onnxruntime")
    try:
        apply = Explainer().overlay_fn(SimpleNamespace(explain=True), clf)
        assert apply is not None
        pred = clf.predict(frame, with_features=True)
        out = apply(frame, SimpleNamespace(prediction=pred))
        box = crop_box(frame.shape, clf.spec.input_size, clf.spec.resize)
        heat = CamHead.load(clf.model).heatmap(pred.features, pred.index)
        assert np.array_equal(out, overlay(frame, heat, box=box))
        x, _, w, _ = box
        assert x > 0 and np.array_equal(out[:, :x], frame[:, :x])
        assert not np.array_equal(out[:, x : x + w], frame[:, x : x + w])
        plain = SimpleNamespace(prediction=clf.predict(frame))  # no features kept: no overlay
        assert apply(frame, plain) is frame
    finally:
        clf.close()
