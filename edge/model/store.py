"""Signed model bundles and the versioned store they install into.

A bundle is a tar of a model directory whose ``manifest.json`` gains a ``bundle`` record
(the sha256 of every other file, the health-check sample and the accuracy measured on it),
plus ``signature.json``: an Ed25519 signature over those exact manifest bytes. The device
only verifies (public keys in ``[models] trusted_keys``); signing happens on the host.
A version is the sha256 of its manifest; it unpacks to ``<store>/<version>/`` and is never
overwritten. ``current`` and ``previous`` are symlinks swapped with ``os.replace`` (atomic).
Any refusal leaves the store exactly as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import IntegrityError, ManifestError, UsageError
from .manifest import MANIFEST_NAME, Manifest

SIGNATURE_NAME = "signature.json"


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ModuleNotFoundError:
        raise IntegrityError(
            "verifying model bundles needs the cryptography package: pip install cryptography"
        ) from None
    return ed25519


def safe_member(name: str, kind: str = "file") -> str:
    """A bundle path that stays inside the bundle, else IntegrityError naming it."""
    p = PurePosixPath(name)
    why = ""
    if kind == "link":
        why = "is a link"
    elif kind not in ("file", "dir"):
        why = f"is a {kind}"
    elif p.is_absolute() or name.startswith("\\"):
        why = "is an absolute path"
    elif ".." in p.parts:
        why = "escapes the bundle (..)"
    if why:
        raise IntegrityError(f"bundle member {name!r} {why}: refused")
    return str(p)


def _read_bundle(path: Path) -> tuple[bytes, dict[str, Any], dict[str, bytes]]:
    """(manifest bytes, signature record, every file) after the path checks."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar.getmembers():
                kind = (
                    "file"
                    if m.isfile()
                    else "dir"
                    if m.isdir()
                    else "link"
                    if (m.issym() or m.islnk())
                    else "special file"
                )
                if kind == "dir":
                    safe_member(m.name, kind)
                    continue
                name = safe_member(m.name, kind)
                f = tar.extractfile(m)
                assert f is not None
                files[name] = f.read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise IntegrityError(f"{path}: not a readable model bundle: {e}") from None
    if MANIFEST_NAME not in files or SIGNATURE_NAME not in files:
        raise IntegrityError(f"{path}: not a model bundle (needs manifest.json + signature.json)")
    try:
        sig = json.loads(files.pop(SIGNATURE_NAME))
        assert isinstance(sig, dict)
    except (ValueError, AssertionError):
        raise IntegrityError(f"{path}: signature.json does not parse") from None
    return files.pop(MANIFEST_NAME), sig, files


def verify(manifest_bytes: bytes, sig: dict[str, Any], trusted: list[str]) -> str:
    """The signing key's id if the signature is good and the key trusted, else raises."""
    ed = _ed25519()
    from cryptography.exceptions import InvalidSignature

    keys = {key_id(base64.b64decode(k)): base64.b64decode(k) for k in trusted}
    kid = str(sig.get("key_id", ""))
    if sig.get("alg") != "ed25519":
        raise IntegrityError(f"signature algorithm {sig.get('alg')!r} is not ed25519: refused")
    if kid not in keys:
        raise IntegrityError(
            f"bundle signed by unknown key {kid or '?'} (not in [models] trusted_keys): refused"
        )
    try:
        ed.Ed25519PublicKey.from_public_bytes(keys[kid]).verify(
            base64.b64decode(str(sig.get("signature", ""))), manifest_bytes
        )
    except (InvalidSignature, ValueError):
        raise IntegrityError(f"bad signature on manifest.json (key {kid}): refused") from None
    return kid


def parse_manifest(manifest_bytes: bytes) -> tuple[Manifest, dict[str, Any]]:
    try:
        data = json.loads(manifest_bytes)
        assert isinstance(data, dict)
    except (ValueError, AssertionError):
        raise ManifestError("incompatible manifest: manifest.json does not parse") from None
    try:
        man = Manifest.from_dict(data)
    except ManifestError as e:
        raise ManifestError(f"incompatible manifest: {e}") from None
    rec = data.get("bundle")
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict):
        raise ManifestError("incompatible manifest: no 'bundle' record (made by model pack?)")
    return man, rec


class Store:
    """``<state>/models``: versions by manifest sha256, ``current`` and ``previous`` links."""

    def __init__(self, root: str | os.PathLike[str], trusted_keys: list[str], keep: int = 2):
        self.root = Path(root)
        self.trusted = list(trusted_keys)
        self.keep = keep

    # -- install ----------------------------------------------------------------------------
    def install(self, bundle: str | os.PathLike[str], classes: list[str] | None = None) -> str:
        """Verify and unpack; returns the version. Raises (store unchanged) on any problem."""
        path = Path(bundle)
        mbytes, sig, files = _read_bundle(path)
        verify(mbytes, sig, self.trusted)
        man, rec = parse_manifest(mbytes)
        if classes and list(man.classes) != list(classes):
            raise ManifestError(
                f"incompatible manifest: classes {man.classes} differ from the configured "
                f"{list(classes)}: refused"
            )
        listed: dict[str, str] = {str(k): str(v) for k, v in rec["files"].items()}
        for a in man.artifacts:
            for rel, digest in ((a.path, a.sha256), (a.weights_path, a.weights_sha256)):
                if rel and listed.get(rel) != digest:
                    raise IntegrityError(f"artifact {rel} is not listed with its sha256: refused")
        for name in sorted(set(files) | set(listed)):
            if name not in listed:
                raise IntegrityError(f"bundle file {name} is not in the signed manifest: refused")
            if name not in files:
                raise IntegrityError(f"bundle lacks {name}, named in the manifest: refused")
            if hashlib.sha256(files[name]).hexdigest() != listed[name]:
                raise IntegrityError(f"{name} does not match its signed sha256 (tampered): refused")
        version = hashlib.sha256(mbytes).hexdigest()
        dest = self.root / version
        if dest.exists():
            return version  # never overwritten: the same manifest means the same files
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".incoming-"))
        try:
            for name, data in {**files, MANIFEST_NAME: mbytes}.items():
                out = tmp / name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            (tmp / ".installed").write_text(json.dumps({"at": time.time(), "from": str(path)}))
            os.chmod(tmp, 0o755)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    # -- versions and links -----------------------------------------------------------------
    def _link(self, name: str) -> str | None:
        try:
            return os.readlink(self.root / name)
        except OSError:
            return None

    def current(self) -> Path | None:
        v = self._link("current")
        return self.root / v if v and (self.root / v).is_dir() else None

    def versions(self) -> list[dict[str, Any]]:
        cur, prev = self._link("current"), self._link("previous")
        out = []
        for d in sorted(self.root.glob("[0-9a-f]" * 8 + "*")):
            if not d.is_dir():
                continue
            try:
                at = json.loads((d / ".installed").read_text())["at"]
                m = json.loads((d / MANIFEST_NAME).read_text())
            except (OSError, ValueError, KeyError):
                continue
            out.append(
                {
                    "version": d.name,
                    "architecture": m.get("architecture", ""),
                    "classes": m.get("classes", []),
                    "label": m.get("bundle", {}).get("label", ""),
                    "installed_at": at,
                    "current": d.name == cur,
                    "previous": d.name == prev,
                }
            )
        return sorted(out, key=lambda v: v["installed_at"])

    def resolve(self, prefix: str) -> str:
        hits = [v["version"] for v in self.versions() if v["version"].startswith(prefix)]
        if len(hits) != 1:
            what = "no installed version" if not hits else f"{len(hits)} versions"
            raise UsageError(f"{what} starts with {prefix!r} (see: mpox-edge model list)")
        return hits[0]

    def _set(self, name: str, version: str) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(version, tmp)
        os.replace(tmp, self.root / name)  # atomic: readers see the old or the new link

    def activate(self, prefix: str) -> str:
        version = self.resolve(prefix)
        cur = self._link("current")
        if cur != version:
            if cur:
                self._set("previous", cur)
            self._set("current", version)
        self.prune()
        return version

    def point(self, version: str) -> None:
        """Set ``current`` alone (the daemon undoing a switch that failed its check)."""
        self._set("current", self.resolve(version))

    def rollback(self) -> str:
        prev, cur = self._link("previous"), self._link("current")
        if not prev or not (self.root / prev).is_dir():
            raise UsageError("nothing to roll back to: no previous version is installed")
        self._set("current", prev)
        if cur:
            self._set("previous", cur)
        return prev

    def prune(self) -> list[str]:
        """Remove versions older than ``current`` other than ``current`` and ``previous``
        (beyond ``keep``); versions installed later wait for their activation."""
        vs = self.versions()
        pinned = {self._link("current"), self._link("previous")}
        cur_at = max((v["installed_at"] for v in vs if v["version"] in pinned), default=0.0)
        olds = [
            v["version"] for v in vs if v["version"] not in pinned and v["installed_at"] < cur_at
        ]
        room = max(0, self.keep - len(pinned - {None}))
        gone = olds[: max(0, len(olds) - room)]
        for v in gone:
            shutil.rmtree(self.root / v, ignore_errors=True)
        return gone
