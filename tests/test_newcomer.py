"""A newcomer's path: shared CLI options and the rough edges a first run hit (issue 12).

Each test runs the command as a new user would and asserts that the message names the
problem, not only that there is no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mpox_edge.edge import cli, cliopts
from mpox_edge.edge.kiosk import config
from mpox_edge.edge.kiosk.httpapi import ApiServer
from mpox_edge.edge.kiosk.pipeline import Decision
from mpox_edge.edge.kiosk.status import DaemonView
from mpox_edge.edge.model import dataset, selection
from mpox_edge.edge.model.backends import REGISTRY
from mpox_edge.edge.model.classifier import default_data_dir, default_model_dir

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (REPO / "scripts").iterdir() if p.suffix in (".sh", ".py"))


def _cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpox_edge.edge.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def _photos(root: Path, per_class: dict[str, int]) -> Path:
    """A small labelled folder copied from the bundled sample (real photos)."""
    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for p in sorted((default_data_dir() / cls).iterdir())[:n]:
            shutil.copy(p, root / cls / p.name)
    return root


# -- shared options -----------------------------------------------------------------------------
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser, _ = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_backend_option_is_the_same_everywhere() -> None:
    """Every command taking --backend offers auto plus the registry, as argparse choices."""
    seen = []
    for name, p in _subparsers().items():
        for a in p._actions:
            if "--backend" in a.option_strings and name != "calibrate":  # calibrate: a list
                seen.append(name)
                assert list(a.choices or []) == ["auto", *REGISTRY], name
    assert {"bench", "eval", "explain", "serve"} <= set(seen)


def test_help_shows_defaults() -> None:
    text = " ".join(_subparsers()["bench"].format_help().split())  # undo line wrapping
    assert "(default: 200)" in text and "(default: auto)" in text and "(default: 1920x1080)" in text
    assert "(default: None)" not in text


def test_comma_list_names_the_bad_entry() -> None:
    assert cliopts.comma_list()(" a, b ,c,") == ["a", "b", "c"]
    assert cliopts.ints("4") == [4] and cliopts.ints("") == []
    with pytest.raises(argparse.ArgumentTypeError, match="'x' is not one"):
        cliopts.ints("1,x")
    with pytest.raises(argparse.ArgumentTypeError, match="'tflite' is not one of onnx, openvino"):
        cliopts.comma_list(choices=("onnx", "openvino"))("onnx,tflite")


def test_json_output_is_checked_before_any_work(tmp_path: Path) -> None:
    """`bench --json missing/dir/x.json` used to crash after the whole run, losing it."""
    env = {**os.environ, "MPOX_EDGE_CACHE": str(tmp_path / "cache")}
    r = _cli("bench", "--json", "missing/dir/x.json", cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing/dir" in r.stderr and "does not exist" in r.stderr
    assert "auto:" not in r.stderr and not (tmp_path / "cache").exists()  # nothing measured
    with pytest.raises(argparse.ArgumentTypeError, match="is a directory"):
        cliopts.json_output(str(tmp_path))
    assert cliopts.json_output("-") == "-"


def test_bench_checks_data_before_timing_backends(tmp_path: Path) -> None:
    """--data given a file says so, and no backend is measured first."""
    f = tmp_path / "photo.jpg"
    shutil.copy(sorted((default_data_dir() / "Normal").iterdir())[0], f)
    env = {**os.environ, "MPOX_EDGE_CACHE": str(tmp_path / "cache")}
    r = _cli("bench", "--data", str(f), env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "photo.jpg is a file" in r.stderr and "sub-folder" in r.stderr
    assert "auto:" not in r.stderr and not (tmp_path / "cache").exists()


def test_one_auto_cache_for_bench_and_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MPOX_EDGE_CACHE", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    # bench passes no cache dir; serve passes its state_dir: by default the same folder
    assert selection.cache_dir_default() == Path(config.Config().state_dir)
    assert selection.cache_dir_default(config.Config().state_dir) == tmp_path / "mpox-edge"
    monkeypatch.setenv("MPOX_EDGE_CACHE", str(tmp_path / "c"))
    assert selection.cache_dir_default("/var/lib/x") == tmp_path / "c"


def test_decision_has_one_serialisation() -> None:
    d = Decision("retake", float("nan"), "", float("nan"), 0, "too blurred")
    assert d.to_dict() == {
        "decision": "retake",
        "reason": "too blurred",
        "p_positive": None,
        "top_class": "",
        "top_prob": None,
        "window": 0,
        "ood_score": None,  # issue 11: the smoothed OOD score behind "unsure"
    }
    json.dumps(d.to_dict(), allow_nan=False)


# -- explain --------------------------------------------------------------------------------
def test_explain_writes_into_the_current_directory_not_the_data_set(tmp_path: Path) -> None:
    data = _photos(tmp_path / "data", {"Monkeypox": 1, "Normal": 1})
    img = next((data / "Monkeypox").iterdir())
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(p.name for p in (data / "Monkeypox").iterdir())
    r = _cli("explain", str(img), "--backend", "onnxruntime", cwd=work)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (data / "Monkeypox").iterdir()) == before
    out = work / (img.stem + ".cam.png")
    assert out.is_file() and str(out.name) in r.stdout
    # an overlay that did land in a data set is not counted as a photo by the next eval
    shutil.copy(out, data / "Monkeypox" / out.name)
    s = dataset.scan_folder(data, ["Chickenpox", "Measles", "Monkeypox", "Normal"])
    assert len(s.items) == 2 and not any(p.name.endswith(".cam.png") for p, _ in s.items)
    r = _cli("explain", str(img), "--out", str(tmp_path / "no" / "x.png"), cwd=work)
    assert r.returncode == 2 and str(tmp_path / "no") in r.stderr and "does not exist" in r.stderr


# -- eval --choose-threshold ------------------------------------------------------------------
def test_choose_threshold_says_what_it_wrote(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    data = _photos(tmp_path / "val", {"Monkeypox": 3, "Normal": 3})
    r = _cli("eval", str(model), "--data", str(data), "--choose-threshold", "0.9")
    assert r.returncode == 0, r.stderr
    rec = json.loads((model / "manifest.json").read_text())["screening_threshold"]
    assert f"{rec['value']:.4f}" in r.stderr and "manifest.json" in r.stderr
    assert "90.0% sensitivity" in r.stderr
    nopos = _photos(tmp_path / "nopos", {"Normal": 2, "Measles": 2})
    r = _cli("eval", str(model), "--data", str(nopos), "--choose-threshold", "0.9")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no readable Monkeypox image" in r.stderr
    assert json.loads((model / "manifest.json").read_text())["screening_threshold"] == rec


# -- serve --once ---------------------------------------------------------------------------
def _serve(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "empty.toml").write_text("")  # built-in defaults, whatever /etc holds
    return _cli(
        "serve",
        "--config",
        str(tmp_path / "empty.toml"),
        "--source",
        source,
        "--once",
        "--port",
        "0",
        "--backend",
        "onnxruntime",
        "--state-dir",
        str(tmp_path / "state"),
        timeout=120,
    )


def test_serve_once_prints_each_decision(tmp_path: Path) -> None:
    data = _photos(tmp_path / "d", {"Monkeypox": 2, "Normal": 1})
    r = _serve(f"dir://{data / 'Monkeypox'}", tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if "\t" in x]
    names = sorted(p.name for p in (data / "Monkeypox").iterdir())
    assert [x.split("\t")[0] for x in lines] == names
    assert all(x.split("\t")[1] in ("refer", "clear", "retake", "unsure") for x in lines)
    assert r.stdout.strip().splitlines()[-1].startswith("2 decisions")


def test_serve_once_refuses_class_folders_and_missing_folders(tmp_path: Path) -> None:
    data = _photos(tmp_path / "d", {"Monkeypox": 1, "Normal": 1})
    r = _serve(f"dir://{data}", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "sub-folders" in r.stderr and "Monkeypox" in r.stderr
    r = _serve(f"dir://{tmp_path / 'nowhere'}", tmp_path)  # used to retry forever
    assert r.returncode == 2 and "nowhere" in r.stderr and "not a directory" in r.stderr


def test_latest_jpg_before_the_first_frame_is_a_clear_503() -> None:
    d = types.SimpleNamespace(latest=None, cfg=config.Config())
    api = ApiServer(DaemonView(d), port=0).start()  # type: ignore[arg-type]
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(api.url + "/latest.jpg", timeout=10)
        assert e.value.code == 503 and e.value.headers["Retry-After"]
        assert b"no frame processed yet" in e.value.read()
    finally:
        api.close()


# -- scripts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_takes_help_safely(script: Path, tmp_path: Path) -> None:
    """--help prints usage and touches nothing (train_default.sh used to write runs/default/)."""
    runs = REPO / "runs"
    before = sorted(runs.rglob("*")) if runs.exists() else None
    cmd = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "usage:" in r.stdout or script.name in r.stdout  # argparse's usage, or the header
    assert len(r.stdout.strip().splitlines()) >= 2
    assert list(tmp_path.iterdir()) == []
    assert (sorted(runs.rglob("*")) if runs.exists() else None) == before
    if script.suffix == ".sh":
        r = subprocess.run(
            [*cmd, "--bogus"], capture_output=True, text=True, cwd=tmp_path, timeout=60
        )
        assert r.returncode != 0 and "unknown option --bogus" in r.stderr
