"""The manifest is checked against the graph it describes, once, when a backend loads it.

A manifest that says five classes over a four-logit graph, or 320 px over a 224 px input,
would otherwise be served (a reload accepted it) or fail on every frame with a traceback.
One zero-filled inference of the manifest's own input shape proves the graph takes that
input, names every output the manifest lists, and has one logit per class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError, shown
from .manifest import Artifact, ModelDir

if TYPE_CHECKING:  # backends imports this module
    from .backends import Backend


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def check_graph(model: ModelDir, art: Artifact, backend: Backend) -> None:
    """Raise ModelError naming the first way ``art``'s graph disagrees with the manifest."""
    m = model.manifest
    s = m.preprocess.input_size
    where = f"{shown(model.path)}: {shown(art.path)}"
    declared = backend.input_shape
    if declared is not None and len(declared) == 4:  # NCHW; symbolic dims (batch) pass
        for axis, want, got in zip("CHW", (3, s, s), declared[1:], strict=True):
            if isinstance(got, int) and got > 0 and got != want:
                raise ModelError(
                    f"{where}: the graph's input is {list(declared)} but the manifest says "
                    f"1x3x{s}x{s} (NCHW): axis {axis} is {got}, not {want}"
                )
    elif declared is not None:
        raise ModelError(f"{where}: the graph's input has shape {list(declared)}, not NCHW")
    try:
        outs = backend.infer(np.zeros((1, 3, s, s), np.float32))
    except Exception as e:  # noqa: BLE001 - each runtime raises its own types
        raise ModelError(
            f"{where}: the graph does not run on the manifest's input 1x3x{s}x{s}: {_first_line(e)}"
        ) from None
    missing = [n for n in (*art.outputs, "logits") if n not in outs]
    if missing:
        raise ModelError(
            f"{where}: the manifest names output(s) {missing} that the graph lacks "
            f"(it has {sorted(outs)})"
        )
    logits = np.asarray(outs["logits"])
    if logits.ndim != 2 or logits.shape != (1, len(m.classes)):
        raise ModelError(
            f"{where}: the manifest lists {len(m.classes)} classes but the graph's logits "
            f"have shape {list(logits.shape)}"
        )
