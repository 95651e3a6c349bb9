"""PyTorch -> ONNX (opset 17, dynamic batch, onnxsim-simplified, checker-clean) -> OpenVINO IR."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from mpox_edge.edge.errors import MpoxEdgeError

OPSET = 17


class ExportError(MpoxEdgeError):
    """The exporter or simplifier failed on a model."""


def _wrapper(model: Any, with_features: bool) -> Any:
    import torch

    class InferenceGraph(torch.nn.Module):
        """Exactly what runs on the device: no auxiliary heads, optional CAM feature map."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> Any:
            f = self.m.forward_features(x)
            logits = self.m.forward_head(f)
            return (logits, f) if with_features else logits

    return InferenceGraph(model).eval()


def export_onnx(model: Any, path: Path, *, input_size: int, with_features: bool = False) -> None:
    import onnx
    import torch

    graph = _wrapper(model.eval(), with_features)
    names = ["logits", "features"] if with_features else ["logits"]
    dyn = {"input": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    x = torch.zeros(1, 3, input_size, input_size)
    raw = path.with_suffix(".raw.onnx")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter; real failures raise
            torch.onnx.export(
                graph,
                (x,),
                str(raw),
                opset_version=OPSET,
                dynamo=False,
                input_names=["input"],
                output_names=names,
                dynamic_axes=dyn,
                do_constant_folding=True,
            )
    except Exception as e:  # the exporter raises many types; the user needs one line
        raise ExportError(f"torch.onnx.export failed: {str(e).splitlines()[0]}") from None
    m = onnx.load(str(raw))
    raw.unlink()
    m = _simplify(m, input_size)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def _simplify(m: Any, input_size: int) -> Any:
    import onnxsim

    try:
        simp, ok = onnxsim.simplify(m, test_input_shapes={"input": [1, 3, input_size, input_size]})
    except Exception as e:
        raise ExportError(f"onnxsim failed: {str(e).splitlines()[0]}") from None
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model")
    return simp


def onnx_to_openvino(onnx_path: Path, xml_path: Path) -> None:
    """Convert to IR keeping fp32 weights (``ov.save_model`` would store fp16 by default)."""
    import openvino as ov

    m = ov.convert_model(str(onnx_path))
    ov.save_model(m, str(xml_path), compress_to_fp16=False)
