"""The device-side core: manifest, preprocessing, image decoding, metrics, import hygiene."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mpox_edge.edge.errors import DataError, IntegrityError, ManifestError
from mpox_edge.edge.model import dataset
from mpox_edge.edge.model.manifest import Manifest, ModelDir, Preprocess
from mpox_edge.edge.model.preprocess import preprocess, preprocess_batch, preprocess_reference
from mpox_edge.edge.reports import accuracy as metrics

REPO = Path(__file__).resolve().parents[1]
SPEC = Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# -- architecture rules ------------------------------------------------------------------------
def test_edge_modules_leave_torch_unloaded() -> None:
    mods = sorted(
        "mpox_edge.edge." + ".".join(p.relative_to(REPO / "edge").with_suffix("").parts)
        for p in (REPO / "edge").rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "from mpox_edge.edge.cli import build_parser; build_parser()\n"
        "bad = [m for m in ('torch', 'nncf', 'onnx', 'onnxsim') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(mods) >= 10


def test_wheel_package_list_is_complete() -> None:
    """Every folder with an __init__.py under edge/converters/calibration is packaged."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = cfg["package-dir"]
    declared = set(cfg["packages"])
    found = set()
    for pkg, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((pkg, *rel)))
    assert found == declared
    assert set(dirs) == {"mpox_edge.edge", "mpox_edge.converters", "mpox_edge.calibration"}
    assert cfg.get("package-data")


def test_console_script_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    for cmd in ("zoo", "export", "bench", "eval"):
        assert cmd in r.stdout


# -- preprocessing ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(224, 224), (300, 200), (480, 640), (1080, 1920)])
@pytest.mark.parametrize("order", ["BGR", "RGB"])
def test_preprocess_matches_numpy_reference(shape: tuple[int, int], order: str) -> None:
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (0, 0), 2)
    a = preprocess(img, SPEC, color_order=order)
    b = preprocess_reference(img, SPEC, color_order=order)
    assert a.shape == (1, 3, 224, 224) and a.dtype == np.float32
    # identical arithmetic; big downscales may differ by one uint8 rounding step (1/255/std)
    assert np.abs(a - b).max() <= 1.01 / (255 * min(SPEC.std))


def test_preprocess_colour_order_is_honoured() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 2] = 255  # pure red in BGR memory order
    x = preprocess(img, Preprocess(32, (0, 0, 0), (1, 1, 1)), color_order="BGR")
    assert x[0, 0].mean() == pytest.approx(1.0) and x[0, 2].mean() == pytest.approx(0.0)
    x2 = preprocess(img[..., ::-1].copy(), Preprocess(32, (0, 0, 0), (1, 1, 1)), color_order="RGB")
    assert np.array_equal(x, x2)


def test_preprocess_rejects_bad_frames() -> None:
    with pytest.raises(DataError, match=r"HxWx3 uint8.*\(10, 10\)"):
        preprocess(np.zeros((10, 10), np.uint8), SPEC)
    with pytest.raises(DataError, match="float32"):
        preprocess(np.zeros((10, 10, 3), np.float32), SPEC)
    with pytest.raises(DataError, match="no frames"):
        preprocess_batch([], SPEC)


# -- manifest -----------------------------------------------------------------------------------
def _model_dir(tmp_path: Path) -> ModelDir:
    (tmp_path / "model.onnx").write_bytes(b"not really onnx")
    md = ModelDir(tmp_path, Manifest("x", ["a", "b"], SPEC, []))
    md.manifest.replace_artifact(md.make_artifact(fmt="onnx", precision="fp32", path="model.onnx"))
    md.save()
    return md


def test_manifest_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    _model_dir(tmp_path)
    md = ModelDir.load(tmp_path)
    art = md.manifest.artifact("onnx")
    assert art is not None and md.manifest.preprocess == SPEC
    assert md.verify(art) == (tmp_path / "model.onnx").resolve()
    (tmp_path / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="sha256"):
        ModelDir.load(tmp_path).verify(art)
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        ModelDir.load(tmp_path).verify(art)


@pytest.mark.parametrize("text", ["{not json", "[]", json.dumps({"classes": ["a", "b"]})])
def test_bad_manifest_is_one_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match="manifest.json"):
        ModelDir.load(tmp_path)


def test_artifact_path_cannot_escape(tmp_path: Path) -> None:
    md = _model_dir(tmp_path)
    with pytest.raises(ManifestError, match="passwd"):
        md.file("../../etc/passwd")


# -- image decoding -----------------------------------------------------------------------------
def test_decode_handles_odd_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = {
        "gray.png": rng.integers(0, 256, (40, 60), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (40, 60, 4), dtype=np.uint8),
        "deep.png": rng.integers(0, 65535, (40, 60, 3), dtype=np.uint16),
        "ok.jpg": rng.integers(0, 256, (40, 60, 3), dtype=np.uint8),
    }
    for name, arr in cases.items():
        cv2.imwrite(str(tmp_path / name), arr)
        img = dataset.read_image(tmp_path / name)
        assert img.shape == (40, 60, 3) and img.dtype == np.uint8, name
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG garbage")
    for bad in ("empty.png", "junk.png", "absent.png"):
        with pytest.raises(DataError, match=bad):  # the message names the file
            dataset.read_image(tmp_path / bad)


def test_scan_folder_counts_what_it_skips(tmp_path: Path) -> None:
    classes = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
    for folder in ("MPOX", "healthy", "Measles", "Tattoo"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "MPOX" / "broken.jpg").write_bytes(b"")
    (tmp_path / "MPOX" / "notes.txt").write_text("x")
    s = dataset.scan_folder(tmp_path, classes)
    assert s.counts() == {"Chickenpox": 0, "Measles": 1, "Monkeypox": 2, "Normal": 1}
    assert s.unmatched_folders == ["Tattoo"]
    got = [(p.name, img is None) for p, _, img, _ in s.iter_images()]
    assert ("broken.jpg", True) in got
    assert len(s.skipped) == 2  # notes.txt (suffix) + broken.jpg (decode)
    with pytest.raises(DataError, match="Tattoo holds no images"):
        dataset.scan_folder(tmp_path / "Tattoo", classes)


# -- metrics ------------------------------------------------------------------------------------
def test_wilson_interval_known_values() -> None:
    lo, hi = metrics.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = metrics.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-3)


def test_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200).astype(bool)
    s = np.round(rng.random(200) + 0.5 * y, 1)  # ties on purpose
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    assert metrics.roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_classification_report_figures() -> None:
    classes = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
    y = [0, 1, 2, 2, 3, 3]
    p = np.eye(4)[[0, 1, 2, 3, 3, 3]] * 0.7 + 0.075
    r = metrics.classification_report(y, p, classes, positive_class="Monkeypox")
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["confusion_matrix"][2] == [0, 0, 1, 1]
    s = r["screening"]
    assert (s["tp"], s["fn"], s["tn"], s["fp"]) == (1, 1, 4, 0)
    assert s["sensitivity"] == 0.5 and s["specificity"] == 1.0
    assert r["per_class"]["Normal"]["precision"] == pytest.approx(2 / 3)


def test_practicality_score() -> None:
    rows = [
        {"accuracy": 0.9, "fps": 10, "recall": 0.9, "specificity": 0.9},
        {"accuracy": 0.8, "fps": 100, "recall": 0.95, "specificity": 0.8},
    ]
    a, b = metrics.practicality_scores(rows)
    assert a == pytest.approx(0.15 + 0.15) and b == pytest.approx(0.40 + 0.35)
    assert math.isclose(metrics.average_fps([0.01, 0.02]), 75.0)


def test_threshold_for_sensitivity_reaches_target() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300).astype(bool)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    for target in (0.8, 0.9, 0.95, 1.0):
        t = metrics.threshold_for_sensitivity(y, p, target)
        assert (p[y] >= t).mean() >= target
        # the highest such threshold: any higher one misses the target
        higher = np.sort(p[y][p[y] > t])
        if len(higher):
            assert (p[y] >= higher[0]).mean() < target
