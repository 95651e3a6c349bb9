"""The tree stays ruff-clean (lint and format), so CI catches style drift too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cmd", [["check", "."], ["format", "--check", "."]])
def test_ruff(cmd: list[str]) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'mpox-edge[dev]')")
    r = subprocess.run([ruff, *cmd], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
