"""Manifest vs graph at load (issue 13, case 3): class count, input size, named outputs,
an absurd input_size refused before anything is allocated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mpox_edge.edge.errors import ManifestError, ModelError
from mpox_edge.edge.model.classifier import Classifier, default_model_dir
from mpox_edge.edge.model.manifest import ModelDir

SIZE = ModelDir.load(default_model_dir()).manifest.preprocess.input_size  # the shipped graph's


def tampered(tmp_path: Path, edit: Any) -> Path:
    d = tmp_path / "model"
    shutil.copytree(default_model_dir(), d)
    mf = d / "manifest.json"
    m = json.loads(mf.read_text())
    edit(m)
    mf.write_text(json.dumps(m))
    return d


def _five_classes(m: dict) -> None:
    m["classes"] = [*m["classes"], "Cowpox"]


def _input_320(m: dict) -> None:
    m["preprocess"]["input_size"] = 320


def _ghost_output(m: dict) -> None:
    for a in m["artifacts"]:
        a["outputs"] = [*a["outputs"], "saliency"]


CASES = {
    "classes": (
        _five_classes,
        "the manifest lists 5 classes but the graph's logits have shape [1, 4]",
    ),
    "input": (_input_320, f"the manifest says 1x3x320x320 (NCHW): axis H is {SIZE}, not 320"),
    "outputs": (_ghost_output, "names output(s) ['saliency'] that the graph lacks"),
}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_that_disagrees_with_the_graph_is_refused(
    tmp_path: Path, backend: str, case: str
) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    edit, msg = CASES[case]
    d = tampered(tmp_path, edit)
    with pytest.raises(ModelError) as e:
        Classifier.open(d, backend=backend)
    if backend == "openvino" and case == "input":
        assert str(SIZE) in str(e.value) and "320" in str(e.value)
    else:
        assert msg in str(e.value)


def test_the_shipped_manifest_passes() -> None:
    clf = Classifier.open(None, backend="onnxruntime")
    assert clf.classes and clf.backend.input_shape[1:] == [3, SIZE, SIZE]
    clf.close()


def test_absurd_input_size_is_refused_before_allocating(tmp_path: Path) -> None:
    d = tampered(tmp_path, lambda m: m["preprocess"].update(input_size=60000))
    with pytest.raises(ManifestError, match=r"input_size must be an integer 8..2048, not 60000"):
        Classifier.open(d, backend="onnxruntime")
    d2 = tampered(tmp_path / "b", lambda m: m["preprocess"].update(std=[0.5, float("nan"), 0.5]))
    with pytest.raises(ManifestError, match="finite"):
        Classifier.open(d2, backend="onnxruntime")


def test_eval_on_a_wrong_manifest_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    d = tampered(tmp_path, _input_320)
    p = subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", "eval", str(d)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("mpox-edge eval: error:")]
    assert len(err) == 1 and f"axis H is {SIZE}, not 320" in err[0], p.stderr
