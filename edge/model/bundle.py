"""Host side of signed rollout: make a key pair and pack a signed bundle.

``pack`` measures the model on a small labelled sample (the health check a device repeats
before it switches) and records the figure in the manifest's ``bundle`` record, which the
Ed25519 signature then covers together with every file's sha256.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from ..errors import DataError, IntegrityError, UsageError
from .dataset import match_class, read_image
from .manifest import MANIFEST_NAME, ModelDir
from .store import SIGNATURE_NAME, key_id

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def keygen(out: Path) -> str:
    """Write a private key (PEM, 0600) and ``out.pub`` (base64); return the public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if out.exists():
        raise UsageError(f"{out} exists: refusing to overwrite a key")
    k = Ed25519PrivateKey.generate()
    pem = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    b64 = base64.b64encode(pub).decode()
    out.with_name(out.name + ".pub").write_text(b64 + "\n")
    return b64


def _private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        k = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"{path}: not a readable unencrypted PEM private key: {e}") from None
    if not isinstance(k, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 key (make one with: mpox-edge model keygen)")
    return k


def pick_sample(root: Path, classes: list[str], per_class: int) -> list[tuple[str, Path]]:
    """Up to ``per_class`` images per class folder, sorted by name: (bundle path, file)."""
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if match_class(sub.name, classes) is None:
            continue
        imgs = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        out += [(f"sample/{sub.name}/{f.name}", f) for f in imgs[:per_class]]
    if not out:
        raise DataError(f"{root}: no class folders matching {classes} with images")
    return out


def sample_accuracy(clf: Any, files: list[tuple[str, Path]]) -> tuple[int, int]:
    """(correct, n) of ``clf`` on sample files named sample/<class folder>/<image>."""
    correct = 0
    for rel, f in files:
        want = match_class(rel.split("/")[1], list(clf.classes))
        pred = clf.predict(read_image(f), color_order="BGR")
        correct += int(pred.index == want)
    return correct, len(files)


def pack(
    model: Path,
    key: Path,
    out: Path,
    *,
    sample: Path,
    per_class: int = 4,
    tolerance: float = 0.05,
    label: str = "",
    backend: str = "onnxruntime",
) -> dict[str, Any]:
    from .classifier import Classifier

    md = ModelDir.load(model)
    for a in md.manifest.artifacts:
        md.verify(a)  # refuse to sign a directory that is already inconsistent
    sk = _private_key(key)
    files = {
        str(f.relative_to(model)): f
        for f in sorted(model.rglob("*"))
        if f.is_file()
        and f.name not in (MANIFEST_NAME, SIGNATURE_NAME)
        and not f.name.startswith(".")
    }
    if any(f.is_symlink() for f in model.rglob("*")):
        raise IntegrityError(f"{model} contains symlinks: a bundle holds plain files only")
    picked = pick_sample(sample, md.manifest.classes, per_class)
    files.update(dict(picked))
    clf = Classifier.open(model, backend=backend)
    try:
        correct, n = sample_accuracy(clf, picked)
    finally:
        clf.close()
    data = md.manifest.to_dict()
    data["bundle"] = {
        "label": label,
        "files": {rel: hashlib.sha256(f.read_bytes()).hexdigest() for rel, f in files.items()},
        "sample": {
            "correct": correct,
            "n": n,
            "accuracy": correct / n,
            "tolerance": tolerance,
            "backend": backend,
        },
    }
    mbytes = (json.dumps(data, indent=2) + "\n").encode()
    from cryptography.hazmat.primitives import serialization

    pub = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = {
        "alg": "ed25519",
        "key_id": key_id(pub),
        "signature": base64.b64encode(sk.sign(mbytes)).decode(),
    }
    write_tar(
        out,
        {
            MANIFEST_NAME: mbytes,
            SIGNATURE_NAME: json.dumps(sig).encode(),
            **{rel: f.read_bytes() for rel, f in files.items()},
        },
    )
    return {
        "bundle": str(out),
        "version": hashlib.sha256(mbytes).hexdigest(),
        **sig,
        "sample": data["bundle"]["sample"],
    }


def write_tar(out: Path, members: dict[str, bytes]) -> None:
    """A gzip tar of plain files (also used by tests to build hostile bundles)."""
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, out)
