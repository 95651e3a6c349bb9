"""ncnn backend (Tencent's runtime, often the fastest for small CNNs on Cortex-A cores).

The artifact is the ``.param`` / ``.bin`` pair that ``pnnx`` writes at export
(``converters/ncnn_export.py``); its blob names (``in0``, ``out0``...) are mapped to the
manifest's output names by order and recorded in the artifact's ``extra``. fp32 means fp32:
on ARMv8.2 cores (Pi 5, Jetson Orin) ncnn defaults to fp16 storage and arithmetic, which
would break the parity the export proved, so those options are switched off for fp32.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import BackendUnavailableError
from ..manifest import Artifact, ModelDir
from .base import BackendBase, BackendOptions, NoOptions, Probe

NCNN_HINT = "pip install ncnn (or, from the checkout: pip install '.[ncnn]')"


class NcnnBackend(BackendBase):
    name: ClassVar[str] = "ncnn"
    distributions: ClassVar[tuple[str, ...]] = ("ncnn",)
    Options: ClassVar[type[BackendOptions]] = NoOptions  # no caller options (yet)

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        return ("ncnn",)

    @classmethod
    def probe(cls) -> Probe:
        try:
            import ncnn
        except ImportError as e:
            return Probe(cls.name, False, reason=f"ncnn is not installed ({e}); {NCNN_HINT}")
        version = getattr(ncnn, "__version__", "")
        # CPU only: the PyPI wheel's Vulkan path probes (and complains about) GPU drivers on
        # every start, and no target device here has a Vulkan GPU worth it for a 224 px CNN.
        return Probe(cls.name, True, version, ("cpu",))

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
        import ncnn

        super().__init__(model, artifact, path, device=device, threads=threads, options=options)
        blobs = artifact.extra.get("blobs") or {}
        self.input_blob = str(blobs.get("input", "in0"))
        self.output_blobs = {
            name: str(blobs.get(name, f"out{i}")) for i, name in enumerate(artifact.outputs)
        }
        self.output_names = list(self.output_blobs)
        size = model.manifest.preprocess.input_size
        self.input_shape: list[Any] | None = [1, 3, size, size]  # fixed-size graphs
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = self.threads
        opt.use_vulkan_compute = False
        if artifact.precision == "fp32":
            for flag in (
                "use_fp16_packed",
                "use_fp16_storage",
                "use_fp16_arithmetic",
                "use_bf16_storage",
            ):
                if hasattr(opt, flag):
                    setattr(opt, flag, False)
        weights = model.file(artifact.weights_path) if artifact.weights_path else None
        if weights is None:
            raise BackendUnavailableError(f"{path.name}: the ncnn artifact names no .bin file")
        if net.load_param(str(path)) != 0 or net.load_model(str(weights)) != 0:
            raise BackendUnavailableError(f"ncnn could not load {path.name} / {weights.name}")
        self.net = net
        self._mat = ncnn.Mat

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for i in range(x.shape[0]):  # ncnn runs one image per extractor
            with self.net.create_extractor() as ex:
                ex.input(self.input_blob, self._mat(np.ascontiguousarray(x[i])).clone())
                for name, blob in self.output_blobs.items():
                    rc, m = ex.extract(blob)
                    if rc != 0:
                        raise RuntimeError(f"ncnn: extracting {blob} failed ({rc})")
                    outs[name].append(np.array(m, copy=True))
        return {n: np.stack(v) for n, v in outs.items()}

    def close(self) -> None:
        net, self.net = getattr(self, "net", None), None
        if net is not None:
            net.clear()
