"""Backends, measured selection, bench and eval on a small exported model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mpox_edge.edge.errors import BackendUnavailableError, UsageError
from mpox_edge.edge.model import selection as select
from mpox_edge.edge.model.backends import load_backend, probe_all
from mpox_edge.edge.model.classifier import Classifier
from mpox_edge.edge.model.manifest import ModelDir

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]


def _cli(
    *args: str, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled folder of photo-like images, with one corrupt file to be counted."""
    from mpox_edge.converters.parity import synthetic_images

    d = tmp_path_factory.mktemp("imgs")
    imgs = synthetic_images(8, seed=3)
    for i, img in enumerate(imgs):
        sub = d / CLASSES[i % 4]
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.jpg"), img)
    (d / "Monkeypox" / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    return d


def test_probe_reports_without_loading() -> None:
    probes = {p.name: p for p in probe_all()}
    assert probes["onnxruntime"].available and "cpu" in probes["onnxruntime"].devices
    assert set(probes) == {"onnxruntime", "openvino", "ncnn"}


def test_backends_agree_and_unavailable_is_an_error(tiny_model_dir: Path) -> None:
    md = ModelDir.load(tiny_model_dir)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    a = load_backend(md, "onnxruntime").infer(x)
    b = load_backend(md, "openvino").infer(x)
    assert set(a) >= {"logits"} and np.abs(a["logits"] - b["logits"]).max() < 1e-4
    with pytest.raises(BackendUnavailableError, match="no device"):
        load_backend(md, "onnxruntime", device="tensorrt-nope")
    with pytest.raises(UsageError, match="unknown backend 'tflite'"):
        load_backend(md, "tflite")
    with pytest.raises(BackendUnavailableError, match="int8"):
        load_backend(md, "onnxruntime", precision="int8")


def test_auto_measures_every_candidate_and_caches(tiny_model_dir: Path, tmp_path: Path) -> None:
    md = ModelDir.load(tiny_model_dir)
    logs: list[str] = []
    d = select.select_backend(md, cache_dir=tmp_path, warmup=2, runs=5, log=logs.append)
    timed = [c for c in d["candidates"] if "median_ms" in c]
    assert {c["backend"] for c in timed} == {"onnxruntime", "openvino"}
    assert d["median_ms"] == min(c["median_ms"] for c in timed)
    assert not d["cached"] and len(logs) >= 2
    again = select.select_backend(md, cache_dir=tmp_path, log=logs.append)
    assert again["cached"] and again["backend"] == d["backend"]
    fresh = select.select_backend(
        md, cache_dir=tmp_path, reselect=True, warmup=1, runs=3, log=logs.append
    )
    assert not fresh["cached"]


def test_cached_choice_loads_only_the_chosen_runtime(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A kiosk restarting on a cached ONNX Runtime choice must not import OpenVINO (its cache
    key reads runtime versions from package metadata): OpenVINO alone is ~33 MB of RSS."""
    md = ModelDir.load(tiny_model_dir)
    select.select_backend(md, cache_dir=tmp_path, warmup=1, runs=3, log=lambda s: None)
    (cache_file,) = tmp_path.glob("selection-*.json")
    d = json.loads(cache_file.read_text())
    d.update(backend="onnxruntime", device="cpu", precision="fp32")
    cache_file.write_text(json.dumps(d))
    code = (
        "import sys; from mpox_edge.edge.model.classifier import Classifier; "
        f"c = Classifier.open({str(tiny_model_dir)!r}, cache_dir={str(tmp_path)!r}, "
        "log=lambda s: None); print(c.description, 'openvino' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onnxruntime/cpu/fp32", "False"]


def test_int8_without_measured_drop_is_never_a_candidate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    md = ModelDir.load(d)
    art = md.make_artifact(fmt="onnx", precision="int8", path="model.onnx")
    md.manifest.replace_artifact(art)
    cands = select.candidates(md)
    int8 = [c for c in cands if c["precision"] == "int8"]
    assert int8 and not any(c["ok"] for c in int8)
    assert "never measured" in int8[0]["reason"]
    md.manifest.replace_artifact(
        md.make_artifact(
            fmt="onnx", precision="int8", path="model.onnx", extra={"accuracy_drop": 3.0}
        )
    )
    assert "loses" in [c for c in select.candidates(md) if c["precision"] == "int8"][0]["reason"]


def test_classifier_predicts_with_timings(tiny_model_dir: Path) -> None:
    clf = Classifier.open(tiny_model_dir, backend="onnxruntime")
    frame = np.full((1080, 1920, 3), 128, np.uint8)
    p = clf.predict(frame, with_features=True)
    assert p.probs.shape == (4,) and abs(p.probs.sum() - 1) < 1e-6
    assert p.label in CLASSES
    assert set(p.timings_ms) == {"preprocess", "inference", "postprocess", "end_to_end"}
    assert p.features is not None and p.features.ndim == 3


def test_bench_json_report(tiny_model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    r = _cli(
        "bench",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(image_dir),
        "--backend",
        "openvino",
        "--runs",
        "10",
        "--warmup",
        "2",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["schema"] == "mpox-edge.bench/1"
    assert rep["backend"]["name"] == "openvino" and rep["backend"]["precision"] == "fp32"
    for stage in ("decode", "preprocess", "inference", "postprocess", "end_to_end"):
        s = rep["latency_ms"][stage]
        assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert rep["accuracy"]["n"] == 8 and rep["accuracy"]["n_skipped"] == 1
    assert "corrupt.jpg" in rep["accuracy"]["skipped"][0]["path"]
    assert rep["peak_rss_mb"] > 0 and rep["cold_start_s"] > 0
    assert "screening" in rep["accuracy"]
    assert "p50" in r.stdout and "peak RSS" in r.stdout
    # the output explains itself: cold start's origin, the two frame rates, back-to-back,
    # and a confusion matrix labelled with its classes
    assert rep["cold_start_from"] == "interpreter" and not rep["cold_start_includes_selection"]
    assert "interpreter start -> first prediction" in r.stdout
    assert "mean of 1/end-to-end" in r.stdout and "frames / total" in r.stdout
    assert "back-to-back = inference alone" in r.stdout
    assert "rows are the true class, columns the predicted class" in r.stdout
    assert any(
        ln.split()[:1] == ["Monkeypox"] and len(ln.split()) == 5 for ln in r.stdout.splitlines()
    )


def test_bench_against_torch_finds_and_checks_the_checkpoint(
    tiny_model_dir: Path, image_dir: Path, tmp_path: Path
) -> None:
    """--against torch uses the checkpoint the manifest names (model dir or ./models/, sha256
    checked), refuses any other, and says where it looked when there is none."""
    torch = pytest.importorskip("torch")
    from mpox_edge.converters.zoo import create_model

    name = ModelDir.load(tiny_model_dir).manifest.training["checkpoint"]
    args = ("bench", "--model", str(tiny_model_dir), "--data", str(image_dir))
    args += ("--backend", "onnxruntime", "--runs", "5", "--warmup", "1", "--no-accuracy")
    args += ("--against", "torch")
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode != 0 and "needs --checkpoint" in r.stderr and "models" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "models").mkdir()
    shutil.copy(tiny_model_dir.parent / name, tmp_path / "models" / name)
    out = tmp_path / "t.json"
    r = _cli(*args, "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    a = json.loads(out.read_text())["against_torch"]
    assert a["latency_ms"]["inference"]["p50"] > 0 and a["speedup_end_to_end_p50"] > 0
    other = tmp_path / "other.pt"
    torch.save(create_model("fast-mpoxnet").state_dict(), other)
    r = _cli(*args, "--checkpoint", str(other), cwd=tmp_path)
    assert r.returncode != 0 and "sha256" in r.stderr and "Traceback" not in r.stderr


def test_bench_auto_logs_candidates(tiny_model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    env = {**__import__("os").environ, "MPOX_EDGE_CACHE": str(tmp_path)}
    args = ("bench", "--model", str(tiny_model_dir), "--data", str(image_dir))
    args += ("--runs", "5", "--warmup", "1", "--no-accuracy", "--json", "-")
    r = _cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["backend"]["requested"] == "auto"
    assert rep["backend"]["selection"]["candidates"]
    assert "auto:" in r.stderr
    # a first run measured the candidates, and says so and where the choice is cached
    assert rep["cold_start_includes_selection"] is True
    assert Path(rep["backend"]["selection"]["cache_file"]).parent == tmp_path
    r = _cli(*args, env=env)
    rep = json.loads(r.stdout)
    assert rep["backend"]["selection"]["cached"] and not rep["cold_start_includes_selection"]


@pytest.mark.parametrize("damage", ["tamper", "manifest", "missing"])
def test_bench_bad_model_is_one_line(
    tiny_model_dir: Path, image_dir: Path, tmp_path: Path, damage: str
) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    if damage == "tamper":
        with open(d / "model.onnx", "r+b") as f:
            f.seek(200)
            f.write(b"\x00\x01\x02")
    elif damage == "manifest":
        (d / "manifest.json").write_text("{ broken")
    else:
        (d / "model.onnx").unlink()
    r = _cli(
        "bench",
        "--model",
        str(d),
        "--data",
        str(image_dir),
        "--backend",
        "onnxruntime",
        "--runs",
        "2",
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    named = {"tamper": "sha256", "manifest": "manifest.json", "missing": "model.onnx"}[damage]
    assert named in r.stderr, r.stderr


def test_eval_compare_and_bad_args(tiny_model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    r = _cli(
        "eval",
        str(tiny_model_dir),
        str(tiny_model_dir),
        "--data",
        str(image_dir),
        "--compare",
        "--json",
        "-",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert len(res) == 2 and all("practicality_score" in x for x in res)
    assert res[0]["n_skipped"] == 1
    r = _cli("eval", str(tiny_model_dir), "--data", str(tmp_path / "nope"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "nope" in r.stderr and "does not exist" in r.stderr
    r = _cli("bench", "--model", str(tiny_model_dir), "--frame-size", "huge")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--frame-size" in r.stderr and "huge" in r.stderr
