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
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from mpox_edge.edge.errors import CalibrationError, UsageError

from .config import METHODS, OP_SCOPES, CalibrationConfig
from .gelu import fuse_gelu
from .guard import Quantizer
from .reader import CalibrationReader, ImageSet

CONV_OPS = ("Conv", "MatMul", "Gemm")
__all__ = ["METHODS", "OP_SCOPES", "OrtInt8", "OrtQuantizer", "fuse_gelu"]


class OrtInt8:
    """ONNX Runtime's int8 in the quantizer registry: one candidate per operator scope.

    Owns where the artifact goes, which variants are tried and what the manifest records
    about the quantizer; the shared run (``run.py``) guards, times and installs.
    """

    backend: ClassVar[str] = "onnxruntime"
    fmt: ClassVar[str] = "onnx"
    int8_path: ClassVar[str] = "model.int8.onnx"
    weights_suffix: ClassVar[str | None] = None

    def __init__(self, cfg: CalibrationConfig) -> None:
        self.cfg = cfg
        self._variants: list[OrtQuantizer] = []

    def variants(
        self, fp32_path: Path, work: Path, reader: CalibrationReader, validation: ImageSet
    ) -> list[Quantizer]:
        """The scopes share the pre-processed model and the calibration cache."""
        self._variants = [
            OrtQuantizer(fp32_path, work, reader, self.cfg, scope)
            for scope in self.cfg.onnxruntime.scopes()
        ]
        return list(self._variants)

    def record(self, chosen: Quantizer) -> dict[str, Any]:
        return {
            "method": self.cfg.method,
            **asdict(self.cfg.onnxruntime),
            "op_types": "Conv/MatMul/Gemm" if chosen.variant.endswith("conv") else "all",
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "variant": chosen.variant,
            "weight_type": "int8",
            "gelu_fused": self._variants[0].gelu_fused if self._variants else 0,
        }


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
        cfg: CalibrationConfig,
        scope: str,
    ) -> None:
        self.fp32_path = Path(fp32_path)
        self.work = Path(work)
        self.reader = reader
        self.method = cfg.method
        self.options = cfg.onnxruntime
        self.scope = scope
        self.pre_path = self.work / "ort-pre.onnx"
        self.cache_path = self.work / f"ort-calib-{cfg.method}.json"
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
        }[self.method]
        self._n += 1
        out = self.work / f"ort-{self.scope}-{self._n}.onnx"
        self.reader.rewind()
        extra: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
        if self.method == "percentile":
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
