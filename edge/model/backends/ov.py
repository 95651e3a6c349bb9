"""OpenVINO backend: CPU, GPU, NPU or AUTO, latency hint, and fp32 that really is fp32.

OpenVINO silently runs "fp32" models in bf16 on CPUs with AMX/AVX-512-bf16 (and fp16 on
GPUs) unless ``INFERENCE_PRECISION_HINT=f32`` is set, which would break parity and the
accuracy the manifest records; we always set it for fp32.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import BackendUnavailableError
from ..manifest import Artifact, ModelDir
from .base import BackendBase, BackendOptions, NoOptions, Probe


class OpenVINOBackend(BackendBase):
    name: ClassVar[str] = "openvino"
    distributions: ClassVar[tuple[str, ...]] = ("openvino",)
    # no caller options: the latency hint and f32 precision are fixed (see the docstring)
    Options: ClassVar[type[BackendOptions]] = NoOptions

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
                reason=f"openvino is not installed ({e}); pip install openvino",
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
        options: Mapping[str, object] | None = None,
    ) -> None:
        import openvino as ov

        super().__init__(model, artifact, path, device=device, threads=threads, options=options)
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.device == "cpu":
            config["INFERENCE_NUM_THREADS"] = self.threads
        if artifact.precision == "fp32" or self.device == "cpu":
            # int8 layers stay int8 under this hint; only float layers are kept in f32.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self._core, self._config, self._path = core, config, path
        self.input_shape: list[Any] | None = None  # set by _compile, for graphcheck
        size = model.manifest.preprocess.input_size
        # Batch 1 is what a camera pipeline runs: compile it static (the CPU plugin picks
        # better kernels for static shapes); other batch sizes get a dynamic twin on demand.
        self.compiled: Any = self._compile(static_shape=[1, 3, size, size])
        self.request: Any = self.compiled.create_infer_request()
        self._dynamic: Any = None
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def _compile(self, static_shape: list[int] | None) -> Any:
        try:
            m = self._core.read_model(str(self._path))
            if len(m.inputs) != 1:
                raise RuntimeError(f"the graph has {len(m.inputs)} inputs, not one")
            ps = m.inputs[0].get_partial_shape()  # as exported, for graphcheck
            self.input_shape = [d.get_length() if d.is_static else "?" for d in ps]
            if static_shape is not None:
                m.reshape({m.inputs[0].get_any_name(): static_shape})
            return self._core.compile_model(m, self.device.upper(), self._config)
        except Exception as e:  # OpenVINO raises RuntimeError with a long message
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendUnavailableError(
                f"openvino could not compile {self._path.name} on {self.device}: {first}"
            ) from None

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if x.shape[0] == 1:
            req, outs = self.request, self.compiled.outputs
        else:
            if self._dynamic is None:
                self._dynamic = self._compile(static_shape=None).create_infer_request()
            req, outs = self._dynamic, self._dynamic.model_outputs
        res = req.infer({0: x}, share_inputs=True)
        # copy: the request reuses its output buffers on the next call
        return {n: np.array(res[o]) for n, o in zip(self.output_names, outs, strict=True)}

    def close(self) -> None:
        self.request = self._dynamic = self.compiled = None
