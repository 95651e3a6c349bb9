"""The PyTorch eager reference for ``bench --against torch``, on the host only.

The checkpoint a model was exported from, behind the runtime's ``Backend`` shape, wrapped
in the same ``Classifier``: bench times it with the same ``predict()`` (same preprocessing,
same stages) as the device's backends. torch is imported when a reference is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from mpox_edge.edge.errors import UsageError
from mpox_edge.edge.model.backends import Probe
from mpox_edge.edge.model.backends.base import BackendBase
from mpox_edge.edge.model.classifier import Classifier
from mpox_edge.edge.model.manifest import Artifact, ModelDir, sha256_file


class TorchBackend(BackendBase):
    """A checkpoint in PyTorch eager mode (CPU), answering ``infer`` like a runtime."""

    name: ClassVar[str] = "torch"
    distributions: ClassVar[tuple[str, ...]] = ("torch",)

    @classmethod
    def probe(cls) -> Probe:
        try:
            import torch
        except ImportError as e:
            return Probe(cls.name, False, reason=f"torch is not installed ({e})")
        return Probe(cls.name, True, str(torch.__version__), ("cpu",))

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        return ("pytorch",)

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
        import torch

        from .checkpoint import build_from_checkpoint

        super().__init__(model, artifact, path, device=device, threads=threads, options=options)
        self.output_names = ["logits"]
        self.input_shape: list[Any] | None = None  # eager: any input size
        torch.set_num_threads(self.threads)
        net, _ = build_from_checkpoint(str(path), arch=model.manifest.architecture)
        self._net: Any = net.eval()

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            return {"logits": self._net(torch.from_numpy(x)).numpy()}

    def close(self) -> None:
        self._net = None


def find_checkpoint(md: ModelDir, checkpoint: str | None) -> Path:
    """The checkpoint this model was exported from: the one given (sha256 checked), else the
    one the manifest names, in the model directory or ./models/ (a source checkout)."""
    tr = md.manifest.training
    want = tr.get("checkpoint_sha256")
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise UsageError(f"--checkpoint {checkpoint}: no such file")
        if want and sha256_file(checkpoint) != want:
            raise UsageError(
                f"{checkpoint} is not the checkpoint this model was exported from (sha256)"
            )
        return Path(checkpoint)
    # A package ships none; scripts/build_default_model.sh keeps it in models/.
    name = tr.get("checkpoint")
    looked = [md.path / name, Path("models") / name] if name else []
    found = [p for p in looked if p.is_file() and (not want or sha256_file(p) == want)]
    if not found:
        where = ", ".join(str(p) for p in looked) or "the manifest names none"
        raise UsageError(f"--against torch needs --checkpoint (not found: {where})")
    return found[0]


def open_reference(md: ModelDir, checkpoint: str | None, *, threads: int) -> Classifier:
    """A ``Classifier`` whose backend is the PyTorch eager reference of ``md``."""
    path = find_checkpoint(md, checkpoint)
    # find_checkpoint matched the manifest's sha256 when it records one: hash once
    sha = md.manifest.training.get("checkpoint_sha256") or sha256_file(path)
    art = Artifact(
        format="pytorch",
        precision="fp32",
        path=str(path),
        sha256=sha,
        size_bytes=path.stat().st_size,
    )
    return Classifier(md, TorchBackend(md, art, path, threads=threads))
