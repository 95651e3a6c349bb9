"""ONNX Runtime backend: CPU everywhere, CUDA/TensorRT on a Jetson, ARM providers if built in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from ...errors import BackendUnavailableError
from ..manifest import Artifact, ModelDir
from .base import BackendBase, BackendOptions, Probe

# device name -> execution providers, most specific first (CPU always appended last).
_DEVICE_PROVIDERS = {
    "cpu": [],
    "cuda": ["CUDAExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}
# mpox-edge does not depend on one ORT package (a Jetson's onnxruntime-gpu must never be
# replaced), so a plain install has none: this names the fix. Not on public PyPI: the extra
# works from a checkout or a built wheel.
ORT_HINT = (
    "install one: pip install onnxruntime (CPU), or NVIDIA's onnxruntime-gpu wheel on a "
    "Jetson; from the checkout: pip install '.[cpu]' (docs/devices.md)"
)
_ARM_PROVIDERS = ("ACLExecutionProvider", "ArmNNExecutionProvider", "XnnpackExecutionProvider")


@dataclass(frozen=True)
class OnnxRuntimeOptions(BackendOptions):
    """ONNX Runtime session settings a caller may change."""

    # Spin-waiting threads shave latency off back-to-back calls but steal the cores a
    # capture thread needs; the daemon turns it off.
    spin: bool = True
    trt_cache_dir: str | None = None  # TensorRT engine cache (default: MODEL/.trt-cache)
    trt_fp16: bool = False  # let TensorRT build fp16 engines


class OnnxRuntimeBackend(BackendBase):
    name: ClassVar[str] = "onnxruntime"
    # Jetson and accelerator builds ship under other names.
    distributions: ClassVar[tuple[str, ...]] = (
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxruntime-openvino",
        "onnxruntime-qnn",
    )
    Options: ClassVar[type[BackendOptions]] = OnnxRuntimeOptions

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        return ("onnx",)

    @classmethod
    def probe(cls) -> Probe:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return Probe(cls.name, False, reason=f"onnxruntime is not installed ({e}); {ORT_HINT}")
        have = set(ort.get_available_providers())
        devices = ["cpu"] + [
            d for d, provs in _DEVICE_PROVIDERS.items() if provs and provs[0] in have
        ]
        return Probe(cls.name, True, ort.__version__, tuple(devices))

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
        import onnxruntime as ort

        super().__init__(model, artifact, path, device=device, threads=threads, options=options)
        opts = cast(OnnxRuntimeOptions, self.options)  # Options below is OnnxRuntimeOptions
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if opts.spin else "0")
        if artifact.precision == "fp32":
            # fp32 convolutions get their NCHWc weight layout from the graph optimiser, so
            # pre-packing only keeps second copies: measured here, the default model loads
            # 6.6 MB smaller without it at the same latency (MobileNetV3, Fast-MpoxNet,
            # AGFN: same speed). int8 QLinearConv needs it (4x slower without).
            so.add_session_config_entry("session.disable_prepacking", "1")
        providers: list[Any] = []
        for p in _DEVICE_PROVIDERS.get(self.device, []):
            if p == "TensorrtExecutionProvider":
                cache = opts.trt_cache_dir or os.path.join(model.path, ".trt-cache")
                providers.append(
                    (
                        p,
                        {
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": cache,
                            "trt_fp16_enable": opts.trt_fp16,
                        },
                    )
                )
            else:
                providers.append(p)
        if self.device == "cpu":
            have = set(ort.get_available_providers())
            providers += [
                p for p in _ARM_PROVIDERS if p in have and p != "XnnpackExecutionProvider"
            ]
        providers.append("CPUExecutionProvider")
        self.session: Any
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BackendUnavailableError(f"onnxruntime could not load {path.name}: {e}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape: list[Any] | None = list(self.session.get_inputs()[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))

    def close(self) -> None:
        self.session = None
