"""Every registered backend honours the contract the runtime relies on (as test_zoo does for
models): it loads the shipped model, names its outputs, agrees on real photos, and refuses
options it does not know."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from mpox_edge.edge.errors import UsageError
from mpox_edge.edge.model.backends import REGISTRY, backend_class, load_backend
from mpox_edge.edge.model.classifier import Classifier, default_data_dir, default_model_dir
from mpox_edge.edge.model.dataset import scan_folder
from mpox_edge.edge.model.manifest import FORMATS, ModelDir
from mpox_edge.edge.model.preprocess import preprocess

N_PHOTOS = 12  # real held-out photos (bundled sample), 3 per class


@pytest.fixture(scope="module")
def model() -> ModelDir:
    return ModelDir.load(default_model_dir())


@pytest.fixture(scope="module")
def tensors(model: ModelDir) -> list[np.ndarray]:
    data = scan_folder(default_data_dir(), model.manifest.classes)
    per_class: dict[int, int] = {}
    out = []
    for _p, y, img, _why in data.iter_images():
        if img is None or per_class.get(y, 0) >= N_PHOTOS // 4:
            continue
        per_class[y] = per_class.get(y, 0) + 1
        out.append(preprocess(img, model.manifest.preprocess))
    assert len(out) == N_PHOTOS
    return out


@pytest.fixture(scope="module")
def reference_top1(model: ModelDir, tensors: list[np.ndarray]) -> list[int]:
    be = load_backend(model, "onnxruntime")
    try:
        return [int(be.infer(x)["logits"][0].argmax()) for x in tensors]
    finally:
        be.close()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_contract(
    name: str, model: ModelDir, tensors: list[np.ndarray], reference_top1: list[int]
) -> None:
    cls = backend_class(name)
    assert cls.name == name
    assert cls.formats() and set(cls.formats()) <= set(FORMATS)
    assert dataclasses.is_dataclass(cls.Options)
    pr = cls.probe()
    assert pr.name == name
    if not pr.available:
        assert pr.reason
        pytest.skip(f"{name} not installed here: {pr.reason}")
    assert "cpu" in pr.devices
    if not any(model.manifest.artifact(f, "fp32") for f in cls.formats()):
        pytest.skip(f"the shipped model has no {name} artifact (formats {cls.formats()})")
    be = load_backend(model, name, threads=1)
    try:
        assert be.name == name and be.device == "cpu" and be.threads == 1
        assert be.artifact in model.manifest.artifacts and be.artifact.precision == "fp32"
        assert be.artifact.format in cls.formats()
        assert sorted(be.output_names) == sorted(be.artifact.outputs)
        top1 = []
        for x in tensors:
            out = be.infer(x)
            assert set(out) == set(be.output_names)
            logits = out["logits"]
            assert logits.shape == (1, len(model.manifest.classes)) and np.isfinite(logits).all()
            top1.append(int(logits[0].argmax()))
    finally:
        be.close()
    # fp32 on every backend is the same network: the same top-1 on every real photo
    assert top1 == reference_top1
    # the model's predictions are not degenerate (the photos span the four classes)
    assert len(set(top1)) >= 3


@pytest.mark.parametrize("name", list(REGISTRY))
def test_unknown_option_is_an_error(name: str, model: ModelDir) -> None:
    cls = backend_class(name)
    with pytest.raises(UsageError, match="unknown option 'bogus'"):
        cls.Options.from_mapping({"bogus": 1}, backend=name)
    # a typo of another backend's option is still a typo, caught before any runtime loads
    with pytest.raises(UsageError, match="'spinn' \\(did you mean 'spin'\\?\\)"):
        load_backend(model, name, options={"spinn": False})


def test_onnxruntime_options_are_typed(model: ModelDir) -> None:
    opts = backend_class("onnxruntime").Options
    assert set(opts.names()) == {"spin", "trt_cache_dir", "trt_fp16"}
    with pytest.raises(UsageError, match="option spin must be bool, not 'no'"):
        opts.from_mapping({"spin": "no"}, backend="onnxruntime")
    be = load_backend(model, "onnxruntime", options={"spin": False})
    try:
        assert be.options.spin is False  # type: ignore[attr-defined]  # ORT's own field
    finally:
        be.close()


def test_classifier_rejects_a_typo_before_measuring(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="did you mean 'spin'"):
        Classifier.open(backend="auto", cache_dir=tmp_path, spinn=False)
    assert not list(tmp_path.iterdir())  # auto measured nothing, cached nothing
    # another backend's option is not a typo: every other backend leaves ORT's spin alone
    md = ModelDir.load(default_model_dir())
    for name in REGISTRY:
        cls = backend_class(name)
        runs = any(md.manifest.artifact(f, "fp32") for f in cls.formats())
        if name != "onnxruntime" and runs and cls.probe().available:
            Classifier.open(backend=name, spin=False).close()
