"""ONNX Runtime int8: ``quant_pre_process`` + ``quantize_static`` (QDQ, per-channel weights).

Choices measured on this project's models (docs/int8.md):

* Activations ``uint8``, weights ``int8`` (U8S8). ``quantize_static``'s default, S8S8, ran
  2-8x slower than fp32 on x86 here: ONNX Runtime has no int8-activation kernel for
  depthwise convolutions and falls back to float Conv with every weight dequantized at
  run time.
* ``quant_pre_process`` runs symbolic shape inference but not its graph optimizer
  (``skip_optimization=True``): the optimizer splits ``HardSwish`` into ``HardSigmoid`` +
  ``Mul``, which doubles the float islands and Q/DQ pairs in a MobileNetV3 (the known 5x
  slowdown). The exporter already folded BatchNorm, so nothing is lost.
* Operator scope: ``all`` quantizes every operator ONNX Runtime has an int8 kernel for
  (fastest for ReLU/ReLU6 networks: activations fuse into QLinearConv), ``conv`` only
  Conv/MatMul/Gemm (fastest where activations are HardSwish/GELU that stay float anyway).
  ``auto`` tries both and keeps the faster one that passes the accuracy guard.
* GELU exported as ``Div -> Erf -> Add -> Mul (-> Mul 0.5)`` is fused into one
  ``com.microsoft.Gelu`` before quantizing. In fp32 ONNX Runtime fuses it itself, but in a
  QDQ graph it gives each consumer of the shared input its own DequantizeLinear, which
  breaks that fusion and leaves four float ops plus Q/DQ per activation (Fast-MpoxNet:
  22 GELUs; onnxsim folded the final ``* 0.5`` of 18 of them into the next Conv, so those
  become ``Gelu -> Mul 2``).
* Calibration statistics are computed once per model and method (a cache file in the
  work directory) and reused by every scope and every guard retry.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mpox_edge.edge.errors import CalibrationError, UsageError

from .reader import CalibrationReader

METHODS = ("minmax", "entropy", "percentile")
OP_SCOPES = ("auto", "all", "conv")
CONV_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class OrtOptions:
    """Settings of the ONNX Runtime quantizer (recorded in the manifest)."""

    method: str = "minmax"
    op_types: str = "auto"  # auto | all | conv
    per_channel: bool = True
    activation_type: str = "uint8"  # uint8 | int8
    reduce_range: bool = False  # 7-bit weights, for x86 CPUs without VNNI (see docs)
    pre_optimize: bool = False  # let quant_pre_process run ORT's optimizer (slower int8 here)
    fuse_gelu: bool = True  # erf-GELU subgraphs -> com.microsoft.Gelu before quantizing
    percentile: float = 99.999

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.op_types not in OP_SCOPES:
            raise UsageError(f"op types must be one of {', '.join(OP_SCOPES)}")
        if self.activation_type not in ("uint8", "int8"):
            raise UsageError("activation type must be uint8 or int8")

    def scopes(self) -> list[str]:
        return ["all", "conv"] if self.op_types == "auto" else [self.op_types]


@contextlib.contextmanager
def _quiet() -> Any:
    """quantize_static prints progress and logs warnings per tensor; keep the report clean."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


class OrtQuantizer:
    """Quantize one fp32 ONNX model for ONNX Runtime, for one operator scope.

    ``prepare`` (shared by the scopes) writes the pre-processed model and the calibration
    cache into ``work``; ``quantize(exclude)`` writes a candidate and returns its path.
    """

    backend = "onnxruntime"
    fmt = "onnx"
    restores_accuracy = False  # the guard's greedy fallback applies

    def __init__(
        self,
        fp32_path: Path,
        work: Path,
        reader: CalibrationReader,
        options: OrtOptions,
        scope: str,
    ) -> None:
        self.fp32_path = Path(fp32_path)
        self.work = Path(work)
        self.reader = reader
        self.options = options
        self.scope = scope
        self.pre_path = self.work / "ort-pre.onnx"
        self.cache_path = self.work / f"ort-calib-{options.method}.json"
        self._n = 0
        self._graph: Any = None
        self.gelu_fused = 0

    @property
    def variant(self) -> str:
        return f"qdq-{self.scope}"

    # -- setup ------------------------------------------------------------------------------
    def prepare(self) -> None:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization.shape_inference import quant_pre_process

        ort.set_default_logger_severity(3)  # calibration sessions: no per-initializer warnings

        if not self.pre_path.is_file():
            try:
                with _quiet():
                    quant_pre_process(
                        str(self.fp32_path),
                        str(self.pre_path),
                        skip_optimization=not self.options.pre_optimize,
                    )
            except Exception as e:  # shape inference raises many types
                raise CalibrationError(
                    f"quant_pre_process failed on {self.fp32_path.name}: {_first_line(e)}"
                ) from None
            if self.options.fuse_gelu:
                m = onnx.load(str(self.pre_path))
                m, self.gelu_fused = fuse_gelu(m)
                if self.gelu_fused:
                    onnx.save(m, str(self.pre_path))
        self._graph = onnx.load(str(self.pre_path), load_external_data=False).graph
        self.gelu_fused = sum(1 for n in self._graph.node if n.op_type == "Gelu")
        self.reader.input_name = self._graph.input[0].name

    def all_nodes(self) -> list[str]:
        return [n.name for n in self._graph.node]

    def nodes(self) -> list[str]:
        """Nodes the guard may keep in float: the compute nodes of this scope."""
        ops = set(CONV_OPS)
        return [n.name for n in self._graph.node if n.op_type in ops and n.name]

    def resolve_exclude(self, names: Sequence[str]) -> list[str]:
        have = set(self.all_nodes())
        bad = [n for n in names if n not in have]
        if bad:
            hint = ", ".join(self.nodes()[:3])
            raise UsageError(
                f"--exclude: no node named {', '.join(map(repr, bad))} in {self.fp32_path.name} "
                f"(node names look like: {hint})"
            )
        return list(names)

    # -- quantize ---------------------------------------------------------------------------
    def quantize(self, exclude: Sequence[str]) -> Path:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[self.options.method]
        self._n += 1
        out = self.work / f"ort-{self.scope}-{self._n}.onnx"
        self.reader.rewind()
        extra: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
        if self.options.method == "percentile":
            extra["CalibPercentile"] = self.options.percentile
        try:
            with _quiet():
                quantize_static(
                    str(self.pre_path),
                    str(out),
                    self.reader,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(CONV_OPS) if self.scope == "conv" else None,
                    per_channel=self.options.per_channel,
                    reduce_range=self.options.reduce_range,
                    activation_type=QuantType.QUInt8
                    if self.options.activation_type == "uint8"
                    else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                    calibrate_method=method,
                    extra_options=extra,
                    calibration_cache_path=str(self.cache_path),
                )
        except Exception as e:
            out.unlink(missing_ok=True)
            raise CalibrationError(f"quantize_static failed: {_first_line(e)}") from None
        return out

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    # -- per-layer error (for the guard's greedy fallback) ----------------------------------
    def layer_errors(self, candidate: Path, samples: Sequence[np.ndarray]) -> dict[str, float]:
        """Error each compute node adds: nMSE at its output minus nMSE at its input.

        Both models keep the float tensor names of the original graph (QDQ inserts its own
        names), so the pre-processed fp32 model and the candidate are compared tensor by
        tensor, after exposing those tensors as graph outputs.
        """
        nodes = [n for n in self._graph.node if n.op_type in CONV_OPS and n.name]
        tensors = sorted({t for n in nodes for t in (n.input[0], n.output[0])})
        ref = _run_exposed(self.pre_path, tensors, samples, self.reader.input_name)
        got = _run_exposed(candidate, tensors, samples, self.reader.input_name)
        err = {t: _nmse(ref[t], got[t]) for t in tensors if t in ref and t in got}
        return {
            n.name: max(0.0, err.get(n.output[0], 0.0) - err.get(n.input[0], 0.0)) for n in nodes
        }


def fuse_gelu(model: Any) -> tuple[Any, int]:
    """Replace erf-GELU subgraphs by ``com.microsoft.Gelu``; returns (model, how many).

    ``x * 0.5 * (1 + erf(x / sqrt 2))`` as torch exports it (``Div, Erf, Add, Mul, Mul``)
    becomes ``Gelu(x)``; when the final ``* 0.5`` was folded into the next layer's weights
    (``Div, Erf, Add, Mul`` = 2 GELU(x)) it becomes ``Gelu(x) * 2``. Exact same function.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    const: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value":
                    const[n.output[0]] = numpy_helper.to_array(at.t)
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    graph_out = {o.name for o in g.output}

    def is_const(name: str, v: float) -> bool:
        a = const.get(name)
        return a is not None and a.size == 1 and abs(float(a.reshape(-1)[0]) - v) < 1e-4 * v

    def sole(t: str) -> Any:
        c = cons.get(t, [])
        return c[0] if len(c) == 1 and t not in graph_out else None

    drop: set[int] = set()
    insert: dict[int, list[Any]] = {}
    two = None
    for e in g.node:
        if e.op_type != "Erf":
            continue
        d = prod.get(e.input[0])
        if d is None or d.op_type != "Div" or not is_const(d.input[1], 2**0.5):
            continue
        x = d.input[0]
        a = sole(e.output[0]) if sole(d.output[0]) is e else None
        if a is None or a.op_type != "Add" or len(a.input) != 2:
            continue
        if not is_const(a.input[1] if a.input[0] == e.output[0] else a.input[0], 1.0):
            continue
        m1 = sole(a.output[0])
        if m1 is None or m1.op_type != "Mul" or sorted(m1.input) != sorted([x, a.output[0]]):
            continue
        m2 = sole(m1.output[0])
        half = (
            m2 is not None
            and m2.op_type == "Mul"
            and len(m2.input) == 2
            and is_const(m2.input[1] if m2.input[0] == m1.output[0] else m2.input[0], 0.5)
        )
        name = (m1.name or x).rsplit("/", 1)[0] + "/Gelu"
        if half:
            new = [helper.make_node("Gelu", [x], [m2.output[0]], name=name, domain="com.microsoft")]
            drop |= {id(d), id(e), id(a), id(m1), id(m2)}
        else:
            if two is None:
                two = f"{name}/two"
                g.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), two))
            new = [
                helper.make_node(
                    "Gelu", [x], [name + "_output_0"], name=name, domain="com.microsoft"
                ),
                helper.make_node(
                    "Mul", [name + "_output_0", two], [m1.output[0]], name=name + "/x2"
                ),
            ]
            drop |= {id(d), id(e), id(a), id(m1)}
        insert[id(d)] = new
    if not insert:
        return model, 0
    nodes = []
    for n in g.node:
        nodes.extend(insert.get(id(n), []))
        if id(n) not in drop:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model, len(insert)


def _nmse(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    num = sum(float(np.sum((a.astype(np.float64) - b) ** 2)) for a, b in zip(ref, got, strict=True))
    den = sum(float(np.sum(a.astype(np.float64) ** 2)) for a in ref)
    return num / max(den, 1e-30)


def _run_exposed(
    path: Path, tensors: Sequence[str], samples: Sequence[np.ndarray], input_name: str
) -> dict[str, list[np.ndarray]]:
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    produced = {o for n in m.graph.node for o in n.output}  # graph inputs: error 0
    have_out = {o.name for o in m.graph.output}
    names = [t for t in tensors if t in produced]
    for t in names:
        if t not in have_out:
            m.graph.output.append(
                onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
            )
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs: dict[str, list[np.ndarray]] = {t: [] for t in names}
    for x in samples:
        vals = sess.run(names, {input_name: x})
        for t, v in zip(names, vals, strict=True):
            outs[t].append(v)
    return outs


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
