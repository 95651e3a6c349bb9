"""Shared fixtures: paths to ../shared (optional), a small exported model, running daemons."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MPOX_EDGE_SHARED", REPO.parent / "shared"))
MSID = SHARED / "datasets" / "msid"


def msid_or_skip() -> Path:
    if not (MSID / "splits.csv").is_file():
        pytest.skip("../shared/datasets/msid is not present")
    return MSID


@pytest.fixture(scope="session")
def msid() -> Path:
    return msid_or_skip()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fast-mpoxnet with random weights, exported to ONNX + OpenVINO with parity checked."""
    torch = pytest.importorskip("torch")
    from mpox_edge.converters.export import export_checkpoint
    from mpox_edge.converters.zoo import create_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny")
    ckpt = d / "fast.pt"
    torch.save(create_model("fast-mpoxnet").state_dict(), ckpt)
    out = d / "model"
    export_checkpoint(ckpt, arch="fast-mpoxnet", out=out)
    return out


@pytest.fixture
def running() -> Iterator[Any]:
    """``running(daemon)`` starts it (READY) and runs its frame loop on a thread; every
    daemon started so is stopped at the end of the test, as SIGTERM would."""
    daemons: list[tuple[Any, threading.Thread]] = []

    def start(d: Any) -> Any:
        d.start()
        t = threading.Thread(target=d.run, daemon=True)
        t.start()
        daemons.append((d, t))
        return d

    yield start
    for d, t in daemons:
        d.request_stop()
        t.join(5)
        d.stop()
