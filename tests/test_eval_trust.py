"""Issue 11, report + kiosk side: eval across collections (unseen classes, calibration,
selective prediction, --as-kiosk, --plots, --exclude) and the kiosk's ``unsure`` answer."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fakes import UnsureFakeClassifier, tinted
from mpox_edge.edge.errors import MissingDependencyError
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.config import DecisionConfig, RoiConfig
from mpox_edge.edge.kiosk.daemon import Daemon
from mpox_edge.edge.kiosk.eventlog import read_events
from mpox_edge.edge.kiosk.pipeline import Pipeline
from mpox_edge.edge.kiosk.sources import Frame
from mpox_edge.edge.kiosk.status import DaemonView
from mpox_edge.edge.model.classifier import default_data_dir
from mpox_edge.edge.reports import collections as colls
from mpox_edge.edge.reports.reliability import (
    brier_score,
    coverage_risk,
    reliability_bins,
    selective_report,
)


# -- figures ------------------------------------------------------------------------------------
def test_ece_brier_and_coverage_risk_on_known_cases() -> None:
    y = np.zeros(10, np.int64)
    sure = np.tile([0.9, 0.1], (10, 1))
    y_calibrated = y.copy()
    y_calibrated[0] = 1  # 9 of 10 right at confidence 0.9: perfectly calibrated
    rel = reliability_bins(sure, y_calibrated)
    assert rel["ece"] == pytest.approx(0.0, abs=1e-12) and rel["bins"] == 15
    assert sum(b["n"] for b in rel["table"]) == 10
    y_half = np.array([0, 1] * 5)  # half right at 0.9: overconfident by 0.4
    assert reliability_bins(sure, y_half)["ece"] == pytest.approx(0.4)
    assert brier_score(sure, y) == pytest.approx(0.02)  # 0.1^2 + 0.1^2
    cov, risk = coverage_risk(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 0, 1, 1], bool))
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0] and risk.tolist() == [0, 0, 1 / 3, 0.5]
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.8, 0.2]])
    sel = selective_report(p, np.array([0, 1, 1, 0]), unsure=np.array([0, 1, 1, 0], bool))
    assert sel["unsure"] == {
        "n_unsure": 2,
        "coverage": 0.5,
        "risk": 0.0,
        "errors_caught": 2,
        "errors": 2,
    }


def test_each_data_takes_its_own_splits_folds_exclude_and_name() -> None:
    import argparse

    p = argparse.ArgumentParser()
    colls.add_arguments(p)
    a = p.parse_args(
        ["--splits", "s.csv", "--data", "A", "--folds", "1,2", "--data", "B", "--name", "b"]
        + ["--exclude", "x.csv"]
    )
    assert [(s.data, s.splits, s.folds, s.name, s.exclude) for s in a.collections] == [
        ("A", "s.csv", [1, 2], None, None),
        ("B", None, None, "b", "x.csv"),
    ]
    with pytest.raises(SystemExit):
        p.parse_args(["--data", "A", "--name", "a", "--name", "again"])


# -- eval end to end, with the shipped model ------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Photos from the bundled sample: one set with an unseen class, a blurred photo and a
    file to exclude; a second plain set."""
    root = tmp_path_factory.mktemp("sets")
    src = default_data_dir()
    a, b = root / "a", root / "b"
    for c in ("Chickenpox", "Monkeypox", "Normal"):
        for d, files in (
            (a, sorted((src / c).iterdir())[:3]),
            (b, sorted((src / c).iterdir())[3:5]),
        ):
            (d / c).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, d / c / f.name)
    (a / "Cowpox").mkdir()
    for i, f in enumerate(sorted((src / "Measles").iterdir())[:2]):
        shutil.copy(f, a / "Cowpox" / f"cowpox{i}.webp")  # a class the model lacks
    img = cv2.imread(str(sorted((src / "Normal").iterdir())[0]))
    cv2.imwrite(str(a / "Normal" / "blurred.png"), cv2.GaussianBlur(img, (0, 0), 8))
    (root / "exclude.csv").write_text(
        "path\nChickenpox/" + sorted((a / "Chickenpox").iterdir())[0].name + "\n"
    )
    return a, b


def test_eval_two_collections_as_kiosk_with_plots(
    two_sets: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_sets
    out = tmp_path / "eval.json"
    r = _cli(
        "eval",
        "--data",
        str(a),
        "--exclude",
        str(a.parent / "exclude.csv"),
        "--name",
        "mixed",
        "--data",
        str(b),
        "--as-kiosk",
        "--plots",
        str(tmp_path / "plots"),
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "collection mixed" in r.stdout and "unseen classes sent to refer/unsure" in r.stdout
    res = json.loads(out.read_text())["results"][0]
    first, second = res["collections"]
    assert (first["name"], second["name"]) == ("mixed", "b")
    assert (
        first["excluded"] == 1 and first["n_unseen"] == 2 and first["unseen_labels"] == ["Cowpox"]
    )
    assert first["n"] == 2 + 3 + 4  # 4-class figures: known classes only, exclusion applied
    per = first["screening_all"]["per_class"]
    assert per["Cowpox"]["n"] == 2 and sum(v["n"] for v in per.values()) == first["n_images"]
    assert first["screening_all"]["unseen_to_health_worker"]["n"] == 2
    cal = first["calibration"]
    assert 0 <= cal["ece"] <= 1 and 0 <= cal["brier"] <= 2 and len(cal["reliability"]) == 15
    k = first["kiosk"]
    assert k["gated"]["per_class"]["Normal"]["retake"] >= 1  # the blurred photo
    assert k["gated"]["retake"]["k"] >= 1 and k["accuracy_ungated"]["n"] == first["n"]
    assert k["accuracy_passed"]["n"] == first["n"] - k["gated"]["per_class"]["Normal"]["retake"]
    assert res["accuracy"] == first["accuracy"]  # the first collection at top level, as before
    pngs = sorted(Path(p).name for p in first["plots"] + second["plots"])
    assert len(pngs) == 8 and all(n.endswith(".png") for n in pngs)
    for p in first["plots"]:
        img = cv2.imread(p)
        assert img is not None and min(img.shape[:2]) > 300


def test_a_split_file_with_a_collection_column_is_one_collection_per_value(
    two_sets: tuple[Path, Path], tmp_path: Path
) -> None:
    # scripts/combine_splits.py writes MSID and msld2-dev into one file with a `collection`
    # column: eval must still report each collection on its own
    a, b = two_sets
    root = a.parent
    rows = ["path,label,group,fold,collection"]
    for coll, d in (("first", a), ("second", b)):
        for f in sorted(d.glob("*/*")):
            rows.append(f"{f.relative_to(root).as_posix()},{f.parent.name},{f.name},3,{coll}")
    rows.append(f"{next(b.glob('Normal/*')).relative_to(root).as_posix()},Normal,t,4,third")
    (tmp_path / "combined.csv").write_text("\n".join(rows) + "\n")
    spec = colls.CollectionSpec(data=str(root), splits=str(tmp_path / "combined.csv"), folds=[3])
    got = colls.load_all(spec, ["Chickenpox", "Measles", "Monkeypox", "Normal"], root)
    # "third" has no fold-3 rows: no empty collection for it
    assert [c.name for c in got] == ["first-fold3", "second-fold3"]
    assert [len(c.items) for c in got] == [len(list(a.glob("*/*"))), len(list(b.glob("*/*")))]
    assert all(p.is_file() for c in got for p, _, _ in c.items)
    named = colls.load_all(dataclasses.replace(spec, name="cv"), ["Normal"], root)
    assert [c.name for c in named] == ["cv/first", "cv/second"]
    pooled = colls.load_all(spec, ["Normal"], root, split=False)
    assert len(pooled) == 1 and len(pooled[0].items) == sum(len(c.items) for c in got)


def test_eval_bad_collection_arguments_are_one_clear_line(two_sets: tuple[Path, Path]) -> None:
    a, _ = two_sets
    r = _cli("eval", "--data", str(a), "--folds", "1")
    assert (
        r.returncode != 0 and "--folds needs --splits" in r.stderr and "Traceback" not in r.stderr
    )
    r = _cli("eval", "--data", str(a), "--exclude", str(a / "nope.csv"))
    assert r.returncode != 0 and "nope.csv" in r.stderr and "Traceback" not in r.stderr
    r = _cli("eval", "--data", str(a), "--kiosk-config", "x.toml")
    assert r.returncode != 0 and "--kiosk-config needs --as-kiosk" in r.stderr


def test_plots_without_matplotlib_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpox_edge.edge.reports import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"mpox-edge\[plots\]"):
        plots.require()


# -- the kiosk's "unsure" -----------------------------------------------------------------------
def _frame(img: np.ndarray, seq: int, still: bool = False, t: float | None = None) -> Frame:
    return Frame(img, "BGR", seq, time.monotonic() if t is None else t, "", still)


def test_unsure_after_the_gate_before_refer_and_smoothed_on_video() -> None:
    clf = UnsureFakeClassifier(threshold=0.6)
    p = Pipeline(clf, DecisionConfig(smoothing=5), RoiConfig())
    assert p.ood_threshold == 0.6
    odd = p.process(_frame(tinted(blue=220, red=230), 0, still=True))
    assert odd.decision.label == "unsure" and "health worker" in odd.decision.reason
    assert odd.decision.ood_score == pytest.approx(odd.prediction.ood_score)
    assert p.process(_frame(tinted(blue=40, red=230), 1, still=True)).decision.label == "refer"
    assert p.process(_frame(tinted(blue=40, red=10), 2, still=True)).decision.label == "clear"
    blurred = cv2.GaussianBlur(tinted(blue=220), (0, 0), 6)
    assert p.process(_frame(blurred, 3, still=True)).decision.label == "retake"
    t = time.monotonic()
    seq = [40, 40, 40, 220, 40] + [220] * 5  # one odd frame, then a different person
    labels = [
        p.process(_frame(tinted(blue=b, red=10, seed=i), 10 + i, t=t + 0.03 * i)).decision.label
        for i, b in enumerate(seq)
    ]
    assert labels[:5] == ["clear"] * 5  # one odd frame does not make the window unsure
    assert labels[-1] == "unsure"
    p.configure(DecisionConfig(smoothing=5, unsure=False), RoiConfig())
    assert p.process(_frame(tinted(blue=220, red=230), 30, still=True)).decision.label == "refer"


def test_unsure_reaches_status_events_and_metrics(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, blue in enumerate([230, 30, 230]):
        cv2.imwrite(str(photos / f"p{i}.png"), tinted(blue=blue, red=10, seed=i))
    cfg = config.from_dict(
        {
            "state_dir": str(tmp_path / "state"),
            "model": {"warmup": 1},
            "http": {"enabled": False},
            "source": {"uri": f"dir://{photos}", "watch": False},
        }
    )
    d = Daemon(cfg, classifier_factory=lambda c: UnsureFakeClassifier(), once=True)
    d.start()
    try:
        d.run(max_frames=3)
        view = DaemonView(d)
        st = view.status()
        metrics = view.metrics_text()
    finally:
        d.stop()
    assert d.telemetry.decisions["unsure"] == 2
    assert st["last_decision"]["decision"] == "unsure" and st["unsure"]["ood_threshold"] == 0.5
    assert 'mpox_edge_decisions_total{label="unsure"} 2.0' in metrics
    ev = [e for e in read_events(cfg.events_path) if e.get("event") == "decision"]
    assert [e["decision"] for e in ev] == ["unsure", "clear", "unsure"]
    assert ev[0]["ood_score"] > 0.5 and ev[1]["ood_score"] < 0.5


def test_eval_reports_ece_before_and_after_temperature(tmp_path: Path) -> None:
    from mpox_edge.edge.model.classifier import default_model_dir

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    man = json.loads((model / "manifest.json").read_text())
    man["temperature"] = {"value": 2.0}
    (model / "manifest.json").write_text(json.dumps(man))
    r = _cli("eval", str(model), "--json", "-")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["results"][0]["collections"][0]
    after, before = c["calibration"], c["calibration_raw"]
    assert before["n"] == after["n"] == c["n"] and before["ece"] != after["ece"]
    assert before["nll"] != after["nll"]
