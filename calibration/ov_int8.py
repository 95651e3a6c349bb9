"""OpenVINO int8 through NNCF post-training quantization.

``nncf.quantize`` (preset, subset size, fast bias correction, an ignored scope for layers
kept in float) by default; ``accuracy_control=True`` switches to
``nncf.quantize_with_accuracy_control``, which restores layers to float by itself until the
drop on the validation set fits, after which the guard still measures the result the same
way as for every other candidate.

``--method`` maps onto NNCF's activation range estimators: ``minmax`` -> MINMAX,
``percentile`` -> MEAN_QUANTILE (0.01% outliers dropped per batch), ``entropy`` ->
HISTOGRAM (NNCF has no KL-entropy calibration; its histogram estimator is the closest).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from mpox_edge.edge.errors import CalibrationError, UsageError

from .config import PRESETS, CalibrationConfig
from .guard import Quantizer
from .reader import CalibrationReader, ImageSet

COMPUTE_OPS = ("Convolution", "GroupConvolution", "MatMul")
__all__ = ["PRESETS", "OvInt8", "OvQuantizer"]


class OvInt8:
    """OpenVINO's int8 in the quantizer registry: one NNCF candidate (or accuracy control)."""

    backend: ClassVar[str] = "openvino"
    fmt: ClassVar[str] = "openvino"
    int8_path: ClassVar[str] = "model.int8.xml"
    weights_suffix: ClassVar[str | None] = ".bin"  # found by OpenVINO from the .xml's name

    def __init__(self, cfg: CalibrationConfig) -> None:
        self.cfg = cfg

    def variants(
        self, fp32_path: Path, work: Path, reader: CalibrationReader, validation: ImageSet
    ) -> list[Quantizer]:
        return [OvQuantizer(fp32_path, work, reader, self.cfg, validation=validation)]

    def record(self, chosen: Quantizer) -> dict[str, Any]:
        o = self.cfg.openvino
        return {
            "method": self.cfg.method,
            "preset": o.preset,
            "subset_size": self.cfg.data.subset_size,
            "fast_bias_correction": o.fast_bias_correction,
            "accuracy_control": o.accuracy_control,
            "tool": "nncf.quantize_with_accuracy_control"
            if o.accuracy_control
            else "nncf.quantize",
            "variant": chosen.variant,
        }


class OvQuantizer:
    """Quantize one fp32 OpenVINO IR (or ONNX read by OpenVINO) with NNCF."""

    backend = "openvino"
    fmt = "openvino"

    def __init__(
        self,
        fp32_path: Path,
        work: Path,
        reader: CalibrationReader,
        cfg: CalibrationConfig,
        validation: ImageSet | None = None,
    ) -> None:
        self.fp32_path = Path(fp32_path)
        self.work = Path(work)
        self.reader = reader
        self.method = cfg.method
        self.subset_size = cfg.data.subset_size
        self.max_drop = cfg.guard.max_drop  # accuracy control's own target
        self.options = cfg.openvino
        self.validation = validation
        self.threads = cfg.threads
        self._n = 0
        self._model: Any = None

    @property
    def variant(self) -> str:
        return "nncf-ac" if self.options.accuracy_control else "nncf"

    @property
    def restores_accuracy(self) -> bool:
        """Accuracy control already keeps layers in float: no greedy fallback on top."""
        return self.options.accuracy_control

    def prepare(self) -> None:
        import openvino as ov

        try:
            self._model = ov.Core().read_model(str(self.fp32_path))
        except Exception as e:
            raise CalibrationError(f"OpenVINO cannot read {self.fp32_path.name}: {e}") from None

    def _fresh(self) -> Any:
        return self._model.clone()

    def all_nodes(self) -> list[str]:
        return [op.get_friendly_name() for op in self._model.get_ops()]

    def nodes(self) -> list[str]:
        return [
            op.get_friendly_name()
            for op in self._model.get_ordered_ops()
            if op.get_type_name() in COMPUTE_OPS
        ]

    def resolve_exclude(self, names: Sequence[str]) -> list[str]:
        """Accept OpenVINO names, or ONNX node names (``/x/Conv`` -> ``/x/Conv/WithoutBiases``)."""
        have = self.all_nodes()
        haveset = set(have)
        out: list[str] = []
        for n in names:
            if n in haveset:
                out.append(n)
                continue
            hits = [h for h in self.nodes() if h.startswith(n + "/")]
            if not hits:
                hint = ", ".join(self.nodes()[:3])
                raise UsageError(
                    f"--exclude: no OpenVINO operation named {n!r} in {self.fp32_path.name} "
                    f"(names look like: {hint})"
                )
            out.extend(hits)
        return list(dict.fromkeys(out))

    # -- quantize ---------------------------------------------------------------------------
    def _common(self, exclude: Sequence[str]) -> tuple[dict[str, Any], Any]:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        est = {
            "minmax": RangeEstimatorParametersSet.MINMAX,
            "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
            "entropy": RangeEstimatorParametersSet.HISTOGRAM,
        }[self.method]
        return {
            "preset": nncf.QuantizationPreset(self.options.preset),
            "target_device": nncf.TargetDevice.CPU,
            "subset_size": min(self.subset_size, len(self.reader)),
            "fast_bias_correction": self.options.fast_bias_correction,
            "ignored_scope": nncf.IgnoredScope(names=list(exclude)) if exclude else None,
        }, AdvancedQuantizationParameters(activations_range_estimator_params=est)

    def quantize(self, exclude: Sequence[str]) -> Path:
        import nncf
        import openvino as ov

        common, advanced = self._common(exclude)
        self._n += 1
        out = self.work / f"ov-{self._n}.xml"
        try:
            with _nncf_quiet():
                if self.options.accuracy_control:
                    q = self._accuracy_control(common, advanced)
                else:
                    q = nncf.quantize(
                        self._fresh(),
                        self.reader.nncf_dataset(),
                        advanced_parameters=advanced,
                        **common,
                    )
            ov.save_model(q, str(out), compress_to_fp16=False)
        except CalibrationError:
            raise
        except Exception as e:
            self.discard(out)
            raise CalibrationError(f"nncf quantization failed: {_first_line(e)}") from None
        return out

    def _accuracy_control(self, common: dict[str, Any], advanced: Any) -> Any:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        if self.validation is None or not len(self.validation):
            raise CalibrationError("accuracy control needs a validation set")
        items = list(zip(self.validation.arrays, self.validation.labels, strict=True))
        val_ds = nncf.Dataset(items, lambda item: item[0])

        def validate(compiled: Any, data: Any) -> float:
            out = compiled.outputs[0]
            hits = n = 0
            for x, y in data:
                hits += int(np.argmax(compiled(x)[out][0]) == y)
                n += 1
            return hits / max(n, 1)

        return nncf.quantize_with_accuracy_control(
            self._fresh(),
            self.reader.nncf_dataset(),
            val_ds,
            validate,
            max_drop=max(self.max_drop, 0.0) / 100.0,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=32
            ),
            **common,
        )

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".bin").unlink(missing_ok=True)

    # -- per-layer error --------------------------------------------------------------------
    def layer_errors(self, candidate: Path, samples: Sequence[np.ndarray]) -> dict[str, float]:
        """Error each compute op adds: nMSE at its output minus nMSE at its input.

        In the int8 model NNCF puts a FakeQuantize in front of the op; the input compared
        is the float tensor feeding that FakeQuantize, found by its producer's name in both
        models, so the score is the error this layer's own quantization added.
        """
        import openvino as ov

        core = ov.Core()
        q = core.read_model(str(candidate))
        fp = self._fresh()

        def ports(model: Any) -> dict[str, tuple[Any, Any]]:
            res = {}
            for op in model.get_ordered_ops():
                if op.get_type_name() not in COMPUTE_OPS:
                    continue
                src = op.input_value(0)
                while src.get_node().get_type_name() == "FakeQuantize":
                    src = src.get_node().input_value(0)
                res[op.get_friendly_name()] = (src, op.output(0))
            return res

        pf, pq = ports(fp), ports(q)
        names = [n for n in pf if n in pq]
        keys: list[tuple[str, str]] = []  # (node, "in"|"out")
        outs_f, outs_q = [], []
        for n in names:
            for i, kind in enumerate(("in", "out")):
                a, b = pf[n][i], pq[n][i]
                if kind == "in" and a.get_node().get_type_name() == "Parameter":
                    continue
                keys.append((n, kind))
                outs_f.append(a)
                outs_q.append(b)
        if not keys:
            return {}
        fp.add_outputs(outs_f)
        q.add_outputs(outs_q)
        cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": self.threads or 0}
        cf = core.compile_model(fp, "CPU", cfg)
        cq = core.compile_model(q, "CPU", cfg)
        base_f, base_q = len(cf.outputs) - len(keys), len(cq.outputs) - len(keys)
        num = np.zeros(len(keys))
        den = np.zeros(len(keys))
        for x in samples:
            rf, rq = cf(x), cq(x)
            for j in range(len(keys)):
                a = np.asarray(rf[cf.outputs[base_f + j]], np.float64)
                b = np.asarray(rq[cq.outputs[base_q + j]], np.float64)
                num[j] += float(np.sum((a - b) ** 2))
                den[j] += float(np.sum(a**2))
        err = {k: num[j] / max(den[j], 1e-30) for j, k in enumerate(keys)}
        return {n: max(0.0, err.get((n, "out"), 0.0) - err.get((n, "in"), 0.0)) for n in names}


@contextlib.contextmanager
def _nncf_quiet() -> Iterator[None]:
    """NNCF logs every ignored node and draws its own progress bars on stdout; the
    calibration report (and the reader's progress bar) say what matters."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf.set_log_level(logging.INFO)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
