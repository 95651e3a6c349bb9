"""OpenVINO backend: CPU, GPU, NPU or AUTO, latency hint, and fp32 that really is fp32.

OpenVINO silently runs "fp32" models in bf16 on CPUs with AMX/AVX-512-bf16 (and fp16 on
GPUs) unless ``INFERENCE_PRECISION_HINT=f32`` is set, which would break parity and the
accuracy the manifest records; we always set it for fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from ..manifest import Artifact, ModelDir
from . import Probe, default_threads


class OpenVINOBackend:
    name = "openvino"

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        return ("openvino", "onnx")  # OpenVINO reads .onnx directly when no IR is shipped

    @classmethod
    def probe(cls) -> Probe:
        try:
            import openvino as ov
        except ImportError as e:
            return Probe(
                cls.name,
                False,
                reason=f"openvino is not installed ({e}); pip install 'mpox-edge[openvino]'",
            )
        core = ov.Core()
        devices = [d.lower() for d in core.available_devices]
        return Probe(cls.name, True, ov.get_version(), tuple(devices + ["auto"]))

    def __init__(
        self,
        model: ModelDir,
        artifact: Artifact,
        path: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        **_: Any,
    ) -> None:
        import openvino as ov

        self.device = device.lower()
        self.threads = threads or default_threads()
        self.artifact = artifact
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.device == "cpu":
            config["INFERENCE_NUM_THREADS"] = self.threads
        if artifact.precision == "fp32" or self.device == "cpu":
            # int8 layers stay int8 under this hint; only float layers are kept in f32.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            self.compiled = core.compile_model(str(path), self.device.upper(), config)
        except Exception as e:  # OpenVINO raises RuntimeError with a long message
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendUnavailableError(
                f"openvino could not compile {path.name} on {self.device}: {first}"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: x}, share_inputs=True)
        # copy: the request reuses its output buffers on the next call
        return {
            n: np.array(res[o])
            for n, o in zip(self.output_names, self.compiled.outputs, strict=True)
        }

    def close(self) -> None:
        self.request = None  # type: ignore[assignment]
        self.compiled = None  # type: ignore[assignment]
