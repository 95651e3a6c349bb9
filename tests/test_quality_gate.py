"""The fitted quality gate on the bundled held-out photos (never seen by its fit: folds 0-3
fit it, the sample comes from the test folds): real photos pass, the same photos blurred,
smeared in any of four directions, or 2.5 stops off are sent to retake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mpox_edge.edge.errors import ConfigError
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.config import DecisionConfig
from mpox_edge.edge.kiosk.quality import assess_quality
from mpox_edge.edge.kiosk.qualityscore import BUNDLED, SCORE_FEATURES, load_model
from mpox_edge.edge.model.dataset import read_image
from test_trust import _script

HELDOUT = Path(__file__).resolve().parents[1] / "edge" / "data" / "heldout"


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    files = sorted(p for p in HELDOUT.rglob("*.webp"))
    assert len(files) >= 100
    return [read_image(p) for p in files]


@pytest.fixture(scope="module")
def gate() -> Any:
    return _script("fit_quality_gate")


def test_real_photos_pass_and_faulty_copies_do_not(photos: list[np.ndarray], gate: Any) -> None:
    cfg = DecisionConfig()
    real = [assess_quality(im, "BGR", cfg) for im in photos]
    assert np.mean([not q.ok for q in real]) <= 0.05, [q.reason for q in real if not q.ok]
    for fault, make in gate.FAULTS.items():
        qs = [assess_quality(make(im, i), "BGR", cfg) for i, im in enumerate(photos)]
        caught = np.mean([not q.ok for q in qs])
        assert caught >= 0.85, (fault, caught)
        word = {"blur": "blurred", "motion": "blurred", "dark": "too dark", "bright": "too bright"}
        assert np.mean([q.reason.startswith(word[fault]) for q in qs if not q.ok]) >= 0.9


@pytest.mark.parametrize("direction", [0, 1, 2, 3])
def test_motion_in_any_direction_raises_the_blur_score(
    photos: list[np.ndarray], gate: Any, direction: int
) -> None:
    """The old gate saw detail along the two axes only (diagonal smears: 27% caught); the
    blur score reads four directions, so each smear direction scores far above the photo."""
    cfg = DecisionConfig()
    for im in photos[::10]:
        sharp = assess_quality(im, "BGR", cfg).blur_score
        smeared = assess_quality(gate.motion(im, 0.05, direction), "BGR", cfg).blur_score
        assert smeared > sharp + 2.0


def test_scores_are_the_fitted_logistic_models(photos: list[np.ndarray]) -> None:
    """What the gate compares with max_*_score is the log-odds of the bundled coefficients."""
    from mpox_edge.edge.kiosk.quality import quality_measures

    model = json.loads(BUNDLED.read_text())
    m = quality_measures(photos[0], "BGR")
    q = assess_quality(photos[0], "BGR", DecisionConfig())
    for name, feats in SCORE_FEATURES.items():
        part = model[name]
        z = (np.array([m[f] for f in feats]) - part["mean"]) / np.array(part["scale"])
        assert getattr(q, f"{name}_score") == pytest.approx(
            float(z @ part["weights"]) + part["bias"]
        )


def test_min_skin_asks_for_skin(photos: list[np.ndarray]) -> None:
    """A document held up to the camera has no skin-coloured pixels; a skin photo has many."""
    from mpox_edge.converters.nonskin import synthetic_frames

    cfg = DecisionConfig(min_skin=0.0194)
    docs = [im for name, im in synthetic_frames(12) if "document" in name]
    assert docs and all(assess_quality(im, "BGR", cfg).reason.startswith("no skin") for im in docs)
    assert np.mean([assess_quality(im, "BGR", cfg).skin >= 0.0194 for im in photos]) >= 0.95
    assert not assess_quality(docs[0], "BGR", DecisionConfig()).reason.startswith("no skin")


def test_a_broken_quality_model_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "gate.json"
    bad.write_text(json.dumps({"blur": {"features": ["x"]}}))
    with pytest.raises(ConfigError, match="quality model .*gate.json: blur features"):
        load_model(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="quality model"):
        load_model(str(bad) + ".missing")
    with pytest.raises(ConfigError, match="quality_model .* is not a file"):
        config.from_dict({"decision": {"quality_model": str(tmp_path / "nope.json")}})
    with pytest.raises(ConfigError, match="quality model .*gate.json"):  # caught at load
        config.from_dict({"decision": {"quality_model": str(bad)}})


def test_the_fit_cross_validates_and_writes_what_the_gate_loads(
    tmp_path: Path, gate: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit script end to end on a tiny stand-in data set (the bundled photos, folds by
    file order): it writes a coefficient file load_model accepts and thresholds within range."""
    root = tmp_path / "data"
    rows = ["path,label,group,fold"]
    for i, p in enumerate(sorted(HELDOUT.rglob("*.webp"))[:48]):
        rel = p.relative_to(HELDOUT)
        (root / rel.parent).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(p.read_bytes())
        rows.append(f"{rel},{rel.parent},{i},{i % 5}")
    (root / "splits.csv").write_text("\n".join(rows) + "\n")
    out, rep = tmp_path / "gate.json", tmp_path / "fit.json"
    args = ["--msid", str(root), "--msld", str(tmp_path / "none"), "--budgets", "0.02,0.05"]
    assert gate.main([*args, "--model-out", str(out), "--json", str(rep)]) == 0
    model = load_model(str(out))
    assert set(SCORE_FEATURES) <= set(model) and model["fit"]["folds"] == [0, 1, 2, 3]
    report = json.loads(rep.read_text())
    assert len(report["validation"]) == 2 and "test" not in report  # fold 4 not read
    assert all(len(v["per_fold"]) == 4 for v in report["validation"])
    th = report["shipped"]["thresholds"]
    cfg = config.from_dict({"decision": {**th, "quality_model": str(out)}})
    assert cfg.decision.max_blur_score == pytest.approx(th["max_blur_score"])
