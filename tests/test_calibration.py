"""int8 calibration: refusals, one reader for ORT and NNCF, guarded artifacts, real rejection.

The model is a tiny CNN (64x64 input, Conv/BN/HardSwish/depthwise/GELU, GAP + Linear, with
the ``features`` output) whose head is fitted by least squares on real MSID images, so its
predictions vary and a broken calibration really costs accuracy. Real images come from
``../shared`` and the tests that need them skip cleanly when it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from mpox_edge.calibration import CalibrationReader, calibrate  # noqa: E402
from mpox_edge.calibration.guard import fallback_schedule, rank_layers  # noqa: E402
from mpox_edge.calibration.reader import (  # noqa: E402
    ImageSet,
    image_looks_synthetic,
    stratified_subset,
)
from mpox_edge.edge.cli import main as cli_main  # noqa: E402
from mpox_edge.edge.errors import CalibrationError, UsageError  # noqa: E402
from mpox_edge.edge.model.backends import load_backend  # noqa: E402
from mpox_edge.edge.model.dataset import read_image, read_splits  # noqa: E402
from mpox_edge.edge.model.manifest import Manifest, ModelDir, Preprocess  # noqa: E402
from mpox_edge.edge.model.preprocess import preprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MSID = Path(os.environ.get("MPOX_EDGE_SHARED", REPO.parent / "shared")) / "datasets" / "msid"
CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
SIZE = 64
FAST = {"latency_rounds": 2, "latency_runs": 5, "subset_size": 48}


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.Hardswish(),
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
            nn.BatchNorm2d(16),
            nn.GELU(),
            nn.Conv2d(16, 32, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.fc = nn.Linear(32, len(CLASSES))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _spec() -> Preprocess:
    return Preprocess(input_size=SIZE, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _fit_head(model: TinyNet) -> None:
    """Least-squares head on folds 0-2 of MSID, so predictions are not one constant class."""
    if not (MSID / "splits.csv").is_file():
        return
    rows = [r for r in read_splits(MSID / "splits.csv") if r.fold in (0, 1, 2)][::2]
    x = np.concatenate([preprocess(read_image(MSID / r.path), _spec()) for r in rows])
    y = np.array([CLASSES.index(r.label) for r in rows])
    with torch.no_grad():
        f = model.forward_features(torch.from_numpy(x)).mean((2, 3)).numpy().astype(np.float64)
    mu, sd = f.mean(0), f.std(0) + 1e-6
    z = np.concatenate([(f - mu) / sd, np.ones((len(f), 1))], axis=1)
    t = np.eye(len(CLASSES))[y] * 2 - 1
    w = np.linalg.solve(z.T @ z + 1e-2 * np.eye(z.shape[1]), z.T @ t)  # (33, 4)
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy((w[:-1] / sd[:, None]).T.astype(np.float32)))
        b = w[-1] - (mu / sd) @ w[:-1]
        model.fc.bias.copy_(torch.from_numpy(b.astype(np.float32)))


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mpox_edge.converters.onnx_io import export_onnx, onnx_to_openvino

    torch.manual_seed(0)
    model = TinyNet().eval()
    _fit_head(model)
    out = tmp_path_factory.mktemp("calib") / "tiny"
    out.mkdir()
    md = ModelDir(
        out,
        Manifest(
            architecture="tiny-test",
            classes=CLASSES,
            preprocess=_spec(),
            artifacts=[],
            positive_class="Monkeypox",
        ),
    )
    outs = ("logits", "features")
    export_onnx(model, out / "model.onnx", input_size=SIZE, with_features=True)
    onnx_to_openvino(out / "model.onnx", out / "model.xml")
    md.manifest.replace_artifact(
        md.make_artifact(fmt="onnx", precision="fp32", path="model.onnx", outputs=outs)
    )
    md.manifest.replace_artifact(
        md.make_artifact(
            fmt="openvino",
            precision="fp32",
            path="model.xml",
            weights_path="model.bin",
            outputs=outs,
        )
    )
    md.save()
    return out


@pytest.fixture
def model_dir(base_model: Path, tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(base_model, d)
    return d


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    """Photo-like statistics (low-pass), so only the count/class checks can refuse it."""
    img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(img, (96, 96)), (0, 0), 3.0)


def _folder(root: Path, per_class: dict[str, int], *, noise: bool = False) -> Path:
    rng = np.random.default_rng(1)
    for c, n in per_class.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) if noise else _smooth_image(rng)
            cv2.imwrite(str(root / c / f"{i}.png"), img)
    return root


def _int8_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if "int8" in p.name or p.name.startswith("."))


# -- refusals (no real images needed) -------------------------------------------------------
def test_refuses_empty_small_missing_class_and_synthetic(model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "Monkeypox").mkdir(parents=True)
    with pytest.raises(CalibrationError, match="empty"):
        calibrate(model_dir, data=empty)
    small = _folder(tmp_path / "small", dict.fromkeys(CLASSES, 6))  # 18 after the hold-out
    with pytest.raises(CalibrationError, match="at least 32"):
        calibrate(model_dir, data=small)
    missing = _folder(tmp_path / "missing", {"Chickenpox": 20, "Monkeypox": 20, "Normal": 20})
    with pytest.raises(CalibrationError, match="no images of class Measles"):
        calibrate(model_dir, data=missing)
    noise = _folder(tmp_path / "noise", dict.fromkeys(CLASSES, 14), noise=True)
    with pytest.raises(CalibrationError, match="synthetic or random.*--allow-synthetic"):
        calibrate(model_dir, data=noise)
    # nothing was written by any refusal
    assert _int8_files(model_dir) == []
    assert len(ModelDir.load(model_dir).manifest.artifacts) == 2


def test_allow_synthetic_is_recorded(model_dir: Path, tmp_path: Path) -> None:
    noise = _folder(tmp_path / "noise", dict.fromkeys(CLASSES, 14), noise=True)
    rep = calibrate(
        model_dir,
        data=noise,
        backends=["onnxruntime"],
        op_types="conv",
        allow_synthetic=True,
        max_drop=100.0,
        **FAST,
    )
    assert rep.ok and rep.allow_synthetic
    art = ModelDir.load(model_dir).manifest.artifact("onnx", "int8")
    assert art is not None and art.int8 is not None and art.int8.allow_synthetic is True
    assert any("synthetic" in w for w in rep.warnings)


def test_usage_errors(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _folder(tmp_path / "d", dict.fromkeys(CLASSES, 12))
    with pytest.raises(UsageError, match="also calibration images"):
        calibrate(model_dir, data=data, val_data=data)
    with pytest.raises(UsageError, match="method"):
        calibrate(model_dir, data=data, method="kl")
    with pytest.raises(UsageError, match="unknown backend"):
        calibrate(model_dir, data=data, backends=["tensorflow"])
    capsys.readouterr()
    rc = cli_main(["calibrate", str(model_dir), "--data", str(tmp_path / "nope")])
    assert rc == 2 and "nope" in capsys.readouterr().err  # the message names the folder


def test_synthetic_heuristic_and_helpers() -> None:
    rng = np.random.default_rng(0)
    spec = _spec()
    noise = preprocess(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8), spec)
    blank = preprocess(np.full((80, 80, 3), 127, np.uint8), spec)
    smooth = preprocess(_smooth_image(rng), spec)
    assert "noise" in (image_looks_synthetic(noise) or "")
    assert "blank" in (image_looks_synthetic(blank) or "")
    assert image_looks_synthetic(smooth) is None
    labels = [0] * 50 + [1] * 10 + [2] * 40
    sub = stratified_subset(labels, 20)
    assert len(sub) == 20 and {labels[i] for i in sub} == {0, 1, 2}
    assert fallback_schedule(20, 0.5, 8) == [0, 1, 2, 4, 8, 10]
    assert fallback_schedule(100, 1.0, 4) == [0, 1, 2, 100]
    assert fallback_schedule(3, 0.0, 8) == [0]
    assert rank_layers({"a": 0.1, "b": 0.3, "c": 0.2}, skip=["c"]) == [("b", 0.3), ("a", 0.1)]


# -- the reader -------------------------------------------------------------------------------
def test_reader_feeds_ort_and_nncf_the_same_real_arrays(msid: Path, base_model: Path) -> None:
    import nncf
    from onnxruntime.quantization import CalibrationDataReader

    rows = [r for r in read_splits(msid / "splits.csv") if r.fold == 0][:6]
    spec = ModelDir.load(base_model).manifest.preprocess
    arrays = [preprocess(read_image(msid / r.path), spec) for r in rows]
    reader = CalibrationReader(ImageSet(classes=CLASSES, arrays=arrays, labels=[0] * 6))
    assert isinstance(reader, CalibrationDataReader)
    ort_seen = []
    while (item := reader.get_next()) is not None:
        ort_seen.append(item["input"])
    reader.rewind()
    assert reader.get_next() is not None  # rewind starts over
    nncf_seen = list(nncf.Dataset(reader).get_inference_data())
    nncf_seen2 = list(reader.nncf_dataset().get_inference_data())
    assert len(ort_seen) == len(nncf_seen) == len(nncf_seen2) == 6
    for a, b, c, ref in zip(ort_seen, nncf_seen, nncf_seen2, arrays, strict=True):
        assert a is b is c is ref  # the very same arrays, made by edge.preprocess
        assert a.shape == (1, 3, SIZE, SIZE) and a.dtype == np.float32


# -- end to end on real images ----------------------------------------------------------------
def test_calibrate_writes_guarded_int8_for_both_backends(
    msid: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    rc = cli_main(
        [
            "calibrate",
            str(model_dir),
            "--data",
            str(msid),
            "--subset-size",
            "48",
            "--max-drop",
            "5",
            "--exclude",
            "/body/body.0/Conv",
            "--json",
            str(out),
        ]
    )
    rep = json.loads(out.read_text())
    assert rc == 0 and rep["ok"], rep
    assert rep["calibration"]["n"] == 48 and rep["calibration"]["source"].endswith("0,1,2")
    assert rep["validation"]["n"] == 152 and rep["validation"]["source"].endswith("fold 3")
    md = ModelDir.load(model_dir)
    x = preprocess(read_image(msid / "Monkeypox" / "monkeypox1.png"), md.manifest.preprocess)
    for backend, fmt in (("onnxruntime", "onnx"), ("openvino", "openvino")):
        art = md.manifest.artifact(fmt, "int8")
        assert art is not None and art.outputs == ("logits", "features")
        assert art.int8 is not None and not art.extra  # the measured record is typed
        e = art.int8.to_extra()  # the record exactly as manifest.json stores it
        assert e["accuracy_drop"] <= 5.0 and e["measured_backend"] == backend
        v = e["validation"]
        assert e["accuracy_drop"] == pytest.approx(
            100 * (v["fp32_accuracy"] - v["int8_accuracy"]), abs=1e-6
        )
        assert 0.0 <= v["top1_agreement"] <= 1.0 and v["n"] == 152
        assert e["calibration"]["n"] == 48 and set(e["calibration"]["per_class"]) == set(CLASSES)
        assert e["excluded_by_user"] and set(e["excluded_by_user"]) <= set(e["excluded_nodes"])
        assert e["latency_ms"]["fp32"] > 0 and e["latency_ms"]["int8"] > 0
        assert e["int8_slower"] == (e["latency_ms"]["int8"] >= e["latency_ms"]["fp32"])
        assert e["size_bytes"]["int8"] == art.size_bytes
        assert e["method"] == "minmax"
        be = load_backend(md, backend, precision="int8")  # sha256-verified, as on a device
        y = be.infer(x)
        be.close()
        assert set(y) == {"logits", "features"} and np.isfinite(y["logits"]).all()
    assert (
        md.manifest.artifact("onnx", "int8").size_bytes
        < md.manifest.artifact("onnx", "fp32").size_bytes
    )
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temp left


def test_guard_rejects_a_broken_calibration_and_writes_nothing(
    msid: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Activation ranges from images scaled by 0.02 saturate everything: a real drop."""
    import mpox_edge.calibration.inputs as calmod  # where the run builds its reader

    class Broken(CalibrationReader):
        def __init__(self, images: ImageSet, input_name: str = "input") -> None:
            super().__init__([a * 0.02 for a in images.arrays], input_name)

    monkeypatch.setattr(calmod, "CalibrationReader", Broken)
    rep = calibrate(
        model_dir,
        data=msid,
        backends=["onnxruntime"],
        op_types="all",
        fallback_limit=0.0,
        **FAST,
    )
    r = rep.results[0]
    assert not rep.ok and not r.written and r.artifact is None
    assert r.drop > 1.0 and "no layer left" in r.reason
    md = ModelDir.load(model_dir)
    assert md.manifest.artifact("onnx", "int8") is None
    assert _int8_files(model_dir) == []
    assert "NO int8 artifact" in "\n".join(rep.format_table())


def test_guard_rejects_when_drop_exceeds_max_drop_after_fallback(
    msid: Path, model_dir: Path
) -> None:
    """--max-drop -25 (int8 would have to beat fp32 by 25 points): the greedy fallback keeps
    ever more layers in float, never fits, and nothing is written."""
    rep = calibrate(
        model_dir,
        data=msid,
        backends=["onnxruntime"],
        op_types="conv",
        max_drop=-25.0,
        max_attempts=3,
        **FAST,
    )
    r = rep.results[0]
    assert not r.written and r.drop > -25.0 and "even with" in r.reason
    assert len(r.variants) == 1 and r.variants[0]["float_layers"] > 0  # fallback was tried
    assert ModelDir.load(model_dir).manifest.artifact("onnx", "int8") is None
    assert _int8_files(model_dir) == []


def test_greedy_fallback_keeps_the_most_sensitive_layer_in_float(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guard logic with a fake quantizer: only keeping layer "c" in float restores accuracy."""
    from mpox_edge.calibration import guard

    labels = [0, 1, 2, 3] * 10
    val = ImageSet(classes=CLASSES, arrays=[np.zeros((1, 3, 8, 8), np.float32)] * 40, labels=labels)
    fp32 = np.eye(4)[labels]

    class Fake:
        backend, fmt, variant, restores_accuracy = "onnxruntime", "onnx", "fake", False

        def __init__(self) -> None:
            self.live: set[Path] = set()
            self.excluded: dict[Path, list[str]] = {}

        def nodes(self) -> list[str]:
            return list("abcdefgh")

        def quantize(self, exclude: list[str]) -> Path:
            p = tmp_path / f"cand{len(self.excluded)}"
            p.touch()
            self.live.add(p)
            self.excluded[p] = list(exclude)
            return p

        def discard(self, p: Path) -> None:
            self.live.discard(p)

        def layer_errors(self, cand: Path, samples: list[np.ndarray]) -> dict[str, float]:
            return {n: (0.5 if n == "c" else 0.01 * i) for i, n in enumerate(self.nodes())}

    fake = Fake()
    current: dict[str, Path] = {}

    def fake_open(md, backend, fmt, path, **kw):  # noqa: ANN001, ANN202
        current["p"] = path
        return type("B", (), {"close": lambda self: None})()

    def fake_predict(be, images, **kw):  # noqa: ANN001, ANN202
        ok = "c" in fake.excluded[current["p"]]
        return fp32 if ok else np.eye(4)[[0] * 40]  # broken: always class 0

    monkeypatch.setattr(guard, "open_model", fake_open)
    monkeypatch.setattr(guard, "predict", fake_predict)
    res = guard.run_guard(
        fake, None, validation=val, fp32_logits=fp32, rank_samples=[], max_drop=1.0
    )
    assert res.accepted and res.excluded == ["c"] and res.drop == 0.0
    assert [a.fallback for a in res.attempts] == [0, 1]
    assert res.ranking[0] == ("c", 0.5)
    assert fake.live == {res.candidate}  # the failed candidate was deleted


def test_gelu_fusion_is_exact() -> None:
    """erf-GELU with and without the trailing * 0.5 -> com.microsoft.Gelu, same outputs."""
    import onnx
    import onnxruntime as ort
    from mpox_edge.calibration.ort_int8 import fuse_gelu
    from onnx import TensorProto, helper

    def c(name: str, v: float) -> onnx.NodeProto:
        t = helper.make_tensor(name, TensorProto.FLOAT, [], [v])
        return helper.make_node("Constant", [], [name], value=t)

    nodes = [c("s2", 2**0.5), c("one", 1.0), c("half", 0.5)]
    for k, half in (("a", True), ("b", False)):
        nodes += [
            helper.make_node("Div", ["x", "s2"], [f"{k}d"], name=f"/{k}/Div"),
            helper.make_node("Erf", [f"{k}d"], [f"{k}e"], name=f"/{k}/Erf"),
            helper.make_node("Add", [f"{k}e", "one"], [f"{k}p"], name=f"/{k}/Add"),
            helper.make_node("Mul", ["x", f"{k}p"], [f"{k}m" if half else k], name=f"/{k}/Mul"),
        ]
        if half:
            nodes.append(helper.make_node("Mul", [f"{k}m", "half"], [k], name=f"/{k}/Mul_1"))
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 5]) for n in ("x", "a", "b")]
    m = helper.make_model(
        helper.make_graph(nodes, "g", vi[:1], vi[1:]),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    fused, n = fuse_gelu(onnx.load_from_string(m.SerializeToString()))
    assert n == 2 and not any(x.op_type == "Erf" for x in fused.graph.node)
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32) * 3
    a = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    b = ort.InferenceSession(fused.SerializeToString()).run(None, {"x": x})
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_openvino_accuracy_control_mode(msid: Path, model_dir: Path) -> None:
    rep = calibrate(
        model_dir, data=msid, backends=["openvino"], accuracy_control=True, max_drop=2.0, **FAST
    )
    r = rep.results[0]
    assert r.variant == "nncf-ac"
    art = ModelDir.load(model_dir).manifest.artifact("openvino", "int8")
    if r.written:
        assert art is not None and art.int8 is not None and art.int8.accuracy_drop <= 2.0
        assert art.int8.quantizer["tool"] == "nncf.quantize_with_accuracy_control"
    else:
        assert art is None and "accuracy control" in r.reason


def test_zoo_model_calibrates_and_loads(msid: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """fast-mpoxnet (random weights) from the zoo: both int8 artifacts written and loadable,
    GELU fused for ONNX Runtime. A small split file keeps it quick."""
    d = tmp_path / "fast"
    shutil.copytree(tiny_model_dir, d)
    rows = read_splits(msid / "splits.csv")
    keep = [r for r in rows if r.fold == 0][::4] + [r for r in rows if r.fold == 3][::4]
    splits = tmp_path / "splits.csv"
    splits.write_text(
        "path,label,group,fold\n"
        + "".join(f"{r.path},{r.label},{r.group},{r.fold}\n" for r in keep)
    )
    rep = calibrate(
        d,
        data=msid,
        splits=splits,
        calib_folds=[0],
        val_folds=[3],
        latency_rounds=2,
        latency_runs=5,
    )
    assert rep.ok, rep.results
    md = ModelDir.load(d)
    ort_art = md.manifest.artifact("onnx", "int8")
    assert ort_art.int8.quantizer["gelu_fused"] > 0
    x = np.zeros((1, 3, 224, 224), np.float32)
    for backend in ("onnxruntime", "openvino"):
        be = load_backend(md, backend, precision="int8")
        assert set(be.infer(x)) == set(md.manifest.artifact("onnx", "fp32").outputs)
        be.close()


def test_config_lists_every_problem_and_catches_typos(model_dir: Path, tmp_path: Path) -> None:
    from mpox_edge.calibration import CalibrationConfig

    cfg = CalibrationConfig.from_options(
        data=str(tmp_path), method="kl", max_drop=float("inf"), op_types="some", subset_size=0
    )
    problems = cfg.check()
    assert len(problems) == 4
    assert {"--method", "--max-drop", "--op-types", "--subset-size"} == {
        p.split()[0] for p in problems
    }
    with pytest.raises(UsageError, match="'max_dorp' \\(did you mean 'max_drop'\\?\\)"):
        calibrate(model_dir, data=tmp_path, max_dorp=2.0)


@pytest.mark.slow
def test_shipped_model_calibration_reproduces_its_record(msid: Path, tmp_path: Path) -> None:
    """ONNX Runtime int8 of the shipped model, redone from its fp32 artifact with the
    recorded settings (MSID folds 0-2 / guard on fold 3 / report-only fold 4), measures
    exactly the accuracy figures its manifest records."""
    from mpox_edge.edge.model.classifier import default_model_dir

    src = ModelDir.load(default_model_dir())
    old = src.manifest.artifact("onnx", "int8")
    assert old is not None and old.int8 is not None
    d = tmp_path / "m"
    d.mkdir()
    fp32 = src.manifest.artifact("onnx", "fp32")
    assert fp32 is not None
    shutil.copy(src.file(fp32.path), d / fp32.path)
    man = Manifest.from_dict(src.manifest.to_dict())
    man.artifacts = [a for a in man.artifacts if a.key == "onnx-fp32"]
    ModelDir(d, man).save()
    q = old.int8.quantizer or {}
    rep = calibrate(
        d,
        data=msid,
        backends=["onnxruntime"],
        op_types=q["variant"].removeprefix("qdq-"),
        test_folds=[4],
        latency_rounds=1,
        latency_runs=5,
    )
    assert rep.ok, rep.results
    new = ModelDir.load(d).manifest.artifact("onnx", "int8")
    assert new is not None and new.int8 is not None
    for key in ("validation", "test", "calibration"):
        assert getattr(new.int8, key) == getattr(old.int8, key), key
    assert new.int8.accuracy_drop == old.int8.accuracy_drop
    assert new.int8.excluded_nodes == old.int8.excluded_nodes
    assert new.int8.quantizer == q
