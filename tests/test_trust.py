"""Calibrated probabilities and the "unsure" score (edge/model/trust.py) and their use in
``Classifier``: old manifests behave exactly as before, new fields are checked, and the
score gives the same decision on every backend and precision for real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mpox_edge.edge.errors import IntegrityError, ManifestError
from mpox_edge.edge.model.classifier import Classifier, default_data_dir, default_model_dir
from mpox_edge.edge.model.dataset import read_image
from mpox_edge.edge.model.manifest import ModelDir, sha256_file
from mpox_edge.edge.model.trust import (
    OodSpec,
    OodStats,
    Trust,
    calibrated_probs,
    ood_score,
    ood_scores,
)
from mpox_edge.edge.reports.accuracy import softmax


def test_calibrated_probs_sum_to_one_and_t1_is_softmax() -> None:
    z = np.random.default_rng(0).normal(0, 5, (50, 4))
    for t in (0.5, 1.0, 1.7, 4.0):
        p = calibrated_probs(z, t)
        assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()
        assert (p.argmax(1) == z.argmax(1)).all()  # temperature never changes the answer
    assert np.allclose(calibrated_probs(z[0], 1.0), softmax(z[0]))
    # a higher temperature is less confident
    assert calibrated_probs(z, 3.0).max(1).mean() < calibrated_probs(z, 1.0).max(1).mean()


def test_scores_rank_far_inputs_higher() -> None:
    rng = np.random.default_rng(1)
    means = rng.normal(0, 4, (3, 16))
    lab = rng.integers(0, 3, 600)
    feats = means[lab] + rng.normal(0, 1, (600, 16))
    stats = OodStats.fit(feats, lab, dims=8)
    near = means[rng.integers(0, 3, 50)] + rng.normal(0, 1, (50, 16))
    far = rng.normal(0, 4, (50, 16)) * 3
    s_near = ood_scores(np.zeros((50, 3)), near, "mahalanobis", stats=stats)
    s_far = ood_scores(np.zeros((50, 3)), far, "mahalanobis", stats=stats)
    assert np.median(s_far) > np.percentile(s_near, 95)
    confident, flat = np.array([[9.0, 0.0, 0.0]]), np.array([[0.1, 0.0, 0.0]])
    for kind in ("energy", "maxlogit", "msp"):
        assert ood_scores(flat, None, kind)[0] > ood_scores(confident, None, kind)[0], kind
    # (C, h, w) maps are pooled like (C,) vectors
    fmap = np.repeat(near[0][:, None, None], 7, axis=1).repeat(7, axis=2)
    t = Trust(ood=OodSpec("mahalanobis", 1.0, "s.npz", "x"))
    assert ood_score(np.zeros(3), fmap, t, stats) == pytest.approx(s_near[0])


def test_stats_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stats = OodStats.fit(rng.normal(size=(80, 12)), rng.integers(0, 2, 80), dims=5, normalize=True)
    stats.save(tmp_path / "s.npz")
    back = OodStats.load(tmp_path / "s.npz")
    x = rng.normal(size=(5, 12))
    a = ood_scores(np.zeros((5, 2)), x, "mahalanobis", stats=stats)
    b = ood_scores(np.zeros((5, 2)), x, "mahalanobis", stats=back)
    assert np.allclose(a, b, rtol=1e-4)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ManifestError, match="not an OOD statistics file"):
        OodStats.load(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"temperature": {"value": -1}}, "positive"),
        ({"temperature": {"value": "hot"}}, "not a number"),
        ({"ood": {"kind": "vibes", "threshold": 1}}, "one of"),
        ({"ood": {"kind": "energy"}}, "incomplete"),
        ({"ood": {"kind": "energy", "threshold": float("nan")}}, "finite"),
        ({"ood": {"kind": "mahalanobis", "threshold": 1}}, "stats_file"),
    ],
)
def test_bad_sections_name_the_problem(section: dict, match: str) -> None:
    class M:
        temperature = section.get("temperature")
        ood = section.get("ood")

    with pytest.raises(ManifestError, match=match):
        Trust.from_manifest(M())


def test_old_manifest_behaves_as_before(tmp_path: Path) -> None:
    """A manifest without temperature/ood (every model before issue 11): raw softmax, no
    unsure; the same weights with the fields give calibrated probs and a score."""
    d = tmp_path / "model"
    shutil.copytree(default_model_dir(), d)
    m = json.loads((d / "manifest.json").read_text())
    m.pop("temperature", None), m.pop("ood", None)
    (d / "manifest.json").write_text(json.dumps(m))
    img = _images(1)[0]
    old = Classifier.open(d, backend="onnxruntime")
    p = old.predict(img)
    assert old.trust == Trust() and p.ood_score is None and not p.unsure
    assert np.allclose(p.probs, softmax(p.logits))
    new = Classifier.open(default_model_dir(), backend="onnxruntime")
    q = new.predict(img)
    assert np.allclose(q.logits, p.logits, atol=1e-5)
    assert np.allclose(q.probs, calibrated_probs(q.logits, new.trust.temperature))


def _images(n: int = 40) -> list[np.ndarray]:
    paths = sorted(
        p for p in default_data_dir().rglob("*") if p.suffix.lower() in (".jpg", ".png", ".webp")
    )
    return [read_image(p) for p in paths[:: max(1, len(paths) // n)]][:n]


@pytest.fixture(scope="module")
def trusted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model with a Mahalanobis "unsure" section: the shipped one if it has
    it, else statistics fitted here on the sample images (a test of the arithmetic only)."""
    src = default_model_dir()
    md = ModelDir.load(src)
    if (md.manifest.ood or {}).get("kind") == "mahalanobis":
        return src
    d = tmp_path_factory.mktemp("trusted") / "model"
    shutil.copytree(src, d)
    c = Classifier.open(d, backend="onnxruntime")
    preds = [c.predict(im, with_features=True) for im in _images()]
    feats = np.stack([p.features for p in preds])
    stats = OodStats.fit(feats, np.asarray([p.index for p in preds]), dims=16)
    stats.save(d / "ood_stats.npz")
    scores = ood_scores(np.stack([p.logits for p in preds]), feats, "mahalanobis", stats=stats)
    m = json.loads((d / "manifest.json").read_text())
    m["temperature"] = {"value": 1.5, "fitted_on": "test", "n": len(preds)}
    m["ood"] = {
        "kind": "mahalanobis",
        "threshold": float(np.percentile(scores, 70)),
        "stats_file": "ood_stats.npz",
        "sha256": sha256_file(d / "ood_stats.npz"),
    }
    (d / "manifest.json").write_text(json.dumps(m))
    return d


# |score - fp32 ORT score| in units of the threshold: fp32 runtimes agree to rounding;
# int8 moves the pooled features measurably (decisions are compared outside that band). The
# Mahalanobis case here is statistics fitted on 152 sample photos in 16 dimensions: Lite1's
# int8 features move its score by up to 0.54 threshold (Lite0's: under 0.5)
SCORE_RTOL = {"fp32": 1e-3, "int8": 0.6}


@pytest.fixture(params=["shipped", "mahalanobis"])
def any_trusted(request: pytest.FixtureRequest, trusted_dir: Path) -> Path:
    if request.param == "mahalanobis":
        return trusted_dir
    if not ModelDir.load(default_model_dir()).manifest.ood:
        pytest.skip("the shipped default has no ood section")
    return default_model_dir()


def test_unsure_is_the_same_on_every_backend_and_precision(any_trusted: Path) -> None:
    trusted_dir = any_trusted
    imgs = _images()
    runs = {}
    for backend, precision in (
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
        ("onnxruntime", "int8"),
    ):
        try:
            c = Classifier.open(trusted_dir, backend=backend, precision=precision)
        except Exception as e:  # noqa: BLE001 - a missing runtime/artifact is a skip, not a pass
            pytest.skip(f"{backend}/{precision}: {e}")
        runs[(backend, precision)] = [c.predict(im) for im in imgs]
    ref = runs[("onnxruntime", "fp32")]
    thr = Classifier.open(trusted_dir, backend="onnxruntime").trust.ood.threshold  # type: ignore[union-attr]
    s_ref = np.array([p.ood_score for p in ref])
    for key, preds in runs.items():
        s = np.array([p.ood_score for p in preds])
        rel = np.abs(s - s_ref) / abs(thr)  # score change in units of the threshold
        print(key, "max |score - fp32 ORT| / threshold", float(rel.max()))
        assert rel.max() <= SCORE_RTOL[key[1]], (key, float(rel.max()))
        # same decision wherever the reference is not within the tolerance of the threshold
        clear = np.abs(s_ref - thr) > SCORE_RTOL[key[1]] * np.abs(thr)
        assert (np.array([p.unsure for p in preds])[clear] == (s_ref > thr)[clear]).all(), key
        for p in preds:
            assert p.probs.sum() == pytest.approx(1.0)
            assert p.unsure == (p.ood_score > thr)


def test_tampered_stats_are_refused(trusted_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "model"
    shutil.copytree(trusted_dir, d)
    stats = json.loads((d / "manifest.json").read_text())["ood"]["stats_file"]
    with open(d / stats, "ab") as f:
        f.write(b"x")
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        Classifier.open(d, backend="onnxruntime")
    (d / stats).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        Classifier.open(d, backend="onnxruntime")


def _script(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fit_trust_reads_pooled_cv_predictions_per_model(tmp_path: Path) -> None:
    """scripts/fit_trust.py on cv_oof.py's pooled npz: each row keeps its CV model, and each
    model's Mahalanobis statistics come from that model's own training features only."""
    ft = _script("fit_trust")
    rng = np.random.default_rng(0)
    parts: dict[str, np.ndarray] = {}
    for part, n in (("val", 6), ("train", 10), ("unseen", 4), ("nonskin", 2)):
        parts[f"{part}_logits"] = rng.normal(size=(n, 4)).astype(np.float32)
        parts[f"{part}_label"] = rng.integers(0, 4, n)
        parts[f"{part}_model"] = np.arange(n) % 2 + 2  # CV models 2 and 3
        parts[f"{part}_features"] = rng.normal(size=(n, 3)).astype(np.float32)
        parts[f"{part}_features"][:, 0] = parts[f"{part}_model"]  # mark each row's model
    parts["val_collection"] = np.asarray(["msid"] * 6)
    np.savez(tmp_path / "oof.npz", **parts)
    d = ft.load_val_npz(tmp_path / "oof.npz")
    assert d["model"].tolist() == [0, 1, 0, 1, 0, 1] and len(d["train"]) == 2
    for k, (feats, labels) in enumerate(d["train"]):
        assert len(feats) == len(labels) == 5 and (feats[:, 0] == k + 2).all()
    assert d["unseen_model"].tolist() == [0, 1, 0, 1]
    # one model's predict_model.py output (no *_model column) is model 0 throughout
    del parts["val_model"], parts["train_model"], parts["unseen_model"], parts["nonskin_model"]
    np.savez(tmp_path / "one.npz", **parts)
    d1 = ft.load_val_npz(tmp_path / "one.npz")
    assert set(d1["model"].tolist()) == {0} and len(d1["train"]) == 1


def test_ensemble_of_cv_predictions_aligns_rows_by_path_and_model() -> None:
    """scripts/ensemble_oof.py: members written in different row orders still pair each
    image with itself (and its CV model); the ensemble is the mean log-softmax."""
    eo = _script("ensemble_oof")
    rng = np.random.default_rng(1)
    a: dict[str, np.ndarray] = {"classes": np.asarray(["A", "B", "C", "D"])}
    for part in ("val", "unseen", "nonskin"):
        a[f"{part}_logits"] = rng.normal(size=(6, 4)).astype(np.float32)
        a[f"{part}_label"] = rng.integers(0, 4, 6)
        a[f"{part}_path"] = np.asarray(["x", "y", "z", "x", "y", "z"])
        a[f"{part}_model"] = np.asarray([0, 0, 0, 1, 1, 1])  # nonskin: same image, 2 models
        a[f"{part}_collection"] = np.asarray(["msid"] * 6)
    order = np.asarray([5, 3, 1, 0, 4, 2])
    b = {k: (v if k == "classes" else v[order]) for k, v in a.items()}
    b = b | {f"{p}_logits": b[f"{p}_logits"] * 2.0 for p in ("val", "unseen", "nonskin")}
    out = eo.ensemble([a, b])
    for part in ("val", "unseen", "nonskin"):
        want = (eo.log_softmax(a[f"{part}_logits"]) + eo.log_softmax(2.0 * a[f"{part}_logits"])) / 2
        assert np.allclose(out[f"{part}_logits"], want, atol=1e-5)
        assert out[f"{part}_path"].tolist() == a[f"{part}_path"].tolist()
    with pytest.raises(SystemExit, match="rows missing"):
        eo.ensemble([a, {k: (v if k == "classes" else v[:5]) for k, v in a.items()}])
