"""mpox-edge's dependencies never replace an ONNX Runtime build that is already installed.

A Jetson has NVIDIA's ``onnxruntime-gpu``; if mpox-edge required ``onnxruntime`` pip would
install the CPU package over it (same ``onnxruntime`` import name) and ``device = "cuda"``
would fail. The test builds tiny stand-in wheels (numpy, opencv-python-headless,
onnxruntime, onnxruntime-gpu) into a local folder, installs the stand-in onnxruntime-gpu into
a fresh venv, then mpox-edge from this checkout with pip's real resolver against that folder
only (--no-index), and checks what is installed. The ``[cpu]`` extra, resolved the same way
(--dry-run), must pull ``onnxruntime``: the check can see the failure it guards against.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fake_wheel(out: Path, dist: str, version: str, module: str) -> Path:
    """A valid pure-Python wheel installing ``module`` with a __version__."""
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"__version__ = {version!r}\nSTAND_IN = {dist!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    path = out / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            data = text.encode()
            z.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def installed(py: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(py), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {d["name"].lower(): d["version"] for d in json.loads(out)}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("index")
    fake_wheel(d, "numpy", "2.0.0", "numpy")
    fake_wheel(d, "opencv-python-headless", "4.10.0", "cv2")
    fake_wheel(d, "onnxruntime", "1.99.0", "onnxruntime")
    fake_wheel(d, "onnxruntime-gpu", "1.20.0", "onnxruntime")
    fake_wheel(d, "tomli", "2.0.0", "tomli")
    fake_wheel(d, "prometheus-client", "0.20.0", "prometheus_client")
    # mpox-edge itself, built once from the checkout (as README's device section does)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(d), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return d


def make_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def pip_offline(py: Path, index: Path, *spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(index)]
        + ["--disable-pip-version-check", *spec],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "HOME": str(index)},
    )


@pytest.mark.slow
def test_installing_beside_onnxruntime_gpu_keeps_it(index: Path, tmp_path: Path) -> None:
    wheel = next(index.glob("mpox_edge-*.whl"))
    py = make_venv(tmp_path / "jetson")
    assert pip_offline(py, index, "onnxruntime-gpu").returncode == 0
    r = pip_offline(py, index, str(wheel))
    assert r.returncode == 0, r.stderr
    have = installed(py)
    assert have.get("onnxruntime-gpu") == "1.20.0", have
    assert "onnxruntime" not in have, f"pip pulled the CPU onnxruntime over the GPU one: {have}"
    assert "mpox-edge" in have and "numpy" in have
    probe = subprocess.run(
        [str(py), "-c", "import onnxruntime; print(onnxruntime.STAND_IN)"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "onnxruntime-gpu"

    # the control: the [cpu] extra would pull onnxruntime, so the check above can fail
    r = pip_offline(py, index, "--dry-run", "--report", str(tmp_path / "r.json"), f"{wheel}[cpu]")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    would = {i["metadata"]["name"] for i in report["install"]}
    assert "onnxruntime" in would, would


def test_default_dependencies_name_no_onnxruntime_and_dev_brings_it() -> None:
    """The README's first command (`pip install -e '.[convert,dev]'`) still gets a runtime."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {
            r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip()
            for r in reqs
        }

    assert not {n for n in names(proj["dependencies"]) if n.startswith("onnxruntime")}
    extras = proj["optional-dependencies"]
    assert names(extras["cpu"]) == {"onnxruntime"}
    assert names(extras["gpu"]) == {"onnxruntime-gpu"}
    assert "onnxruntime" in names(extras["convert"]) and "onnxruntime" in names(extras["dev"])


def test_no_runtime_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    """A runtime-only install without any ORT: `mpox-edge bench` says what to install."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('onnxruntime', 'openvino', 'ncnn'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from mpox_edge.edge.cli import main\n"
        "sys.exit(main(['bench', '--runs', '1', '--warmup', '0', '--no-accuracy']))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)},
        timeout=120,
    )
    assert r.returncode != 0
    err = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "pip install onnxruntime" in err[0] and "'.[cpu]'" in err[0], err[0]


# import name -> distribution, for what edge/ imports at module level
_DISTS = {
    "cv2": "opencv-python-headless",
    "numpy": "numpy",
    "prometheus_client": "prometheus-client",
    "tomli": "tomli",
    "tomllib": None,
}


def test_every_module_level_import_of_edge_is_a_runtime_dependency() -> None:
    """A device install (runtime deps only) must import every module of edge/ (the arm64
    check found prometheus_client missing from the dependencies this way)."""
    import ast

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip() for d in deps}
    stdlib = set(sys.stdlib_module_names)
    missing = {}
    for py in (ROOT / "edge").rglob("*.py"):
        tree = ast.parse(py.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are optional
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            for m in mods:
                top = m.split(".")[0]
                if top in stdlib or top in ("mpox_edge", "__future__"):
                    continue
                dist = _DISTS.get(top, top)
                if dist and dist not in names:
                    missing[f"{py.relative_to(ROOT)}: {m}"] = dist
    assert not missing, f"imported at module level but not a runtime dependency: {missing}"
