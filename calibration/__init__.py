"""int8 static calibration for ONNX Runtime and OpenVINO that cannot silently lose accuracy.

    from mpox_edge.calibration import calibrate
    report = calibrate("runs/fast", data="../shared/datasets/msid")  # folds 0-2 / fold 3
    print("\\n".join(report.format_table()))

* Settings: one validated ``CalibrationConfig`` (``config.py``: data, guard, per-backend
  quantizer options, latency), or its flat keywords.
* Calibration images are real photos read by ``edge.model.dataset`` and turned into tensors
  by ``edge.model.preprocess`` with the manifest's spec (``reader.py``); a set that is
  empty, under 32 images, missing a class or made of noise is refused. Which images
  calibrate, validate and only report is decided in ``sets.py``.
* Each backend's quantizer comes from a registry (``quantizers.py``): ONNX Runtime's
  ``quant_pre_process`` + ``quantize_static`` QDQ (``ort_int8.py``), OpenVINO's
  ``nncf.quantize`` or ``nncf.quantize_with_accuracy_control`` (``ov_int8.py``).
* Every candidate passes the accuracy guard (``guard.py``) on a validation set disjoint
  from the calibration set; a model that cannot fit ``max_drop`` is not written.
* Accepted int8 artifacts are written next to the fp32 ones (temp file + rename, sha256 in
  the manifest) with everything measured in a typed ``Int8Record`` (``install.py``); the
  report (table and JSON) is ``report.py``; the run itself is ``run.py``.

Heavy imports (onnx, onnxruntime.quantization, nncf, openvino) happen inside functions.
"""

from __future__ import annotations

from .config import (
    METHODS,
    OP_SCOPES,
    PRESETS,
    CalibrationConfig,
    DataConfig,
    GuardConfig,
    LatencyConfig,
    OrtConfig,
    OvConfig,
)
from .quantizers import QUANTIZERS, quantizer_for
from .reader import CalibrationReader
from .report import BackendResult, CalibrationReport
from .run import calibrate

__all__ = [
    "BackendResult",
    "CalibrationConfig",
    "CalibrationReader",
    "CalibrationReport",
    "DataConfig",
    "GuardConfig",
    "LatencyConfig",
    "METHODS",
    "OP_SCOPES",
    "OrtConfig",
    "OvConfig",
    "PRESETS",
    "QUANTIZERS",
    "calibrate",
    "quantizer_for",
]
