"""``mpox-edge model keygen|pack|install|list|activate|rollback``: signed model rollout.

keygen and pack run on the host (they hold the private key); install, list, activate and
rollback run on the device against ``<state_dir>/models`` and ``[models] trusted_keys``.
A running daemon picks up an activation on SIGHUP (``systemctl reload mpox-edge``) or the
MQTT ``set/model`` command, and serves the old model until the new one passes its check.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .store import Store

HINT = "the daemon switches on SIGHUP (systemctl reload mpox-edge) or MQTT set/model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="daemon TOML file (state_dir, [models] trusted_keys)")
    p.add_argument("--state-dir", help="overrides state_dir")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    k = sub.add_parser("keygen", help="make an Ed25519 signing key (host)")
    k.add_argument("key", type=Path, help="private key file to write (KEY.pub: public key)")
    pk = sub.add_parser("pack", help="sign a model directory into a bundle (host)")
    pk.add_argument("model", type=Path, help="model directory (manifest.json)")
    pk.add_argument("--key", type=Path, required=True, help="private key from keygen")
    pk.add_argument("-o", "--out", type=Path, required=True, help="bundle file to write")
    pk.add_argument("--sample", type=Path, help="labelled class folders (default: bundled)")
    pk.add_argument("--per-class", type=int, default=4, help="sample images per class")
    pk.add_argument("--tolerance", type=float, default=0.05, help="accuracy slack on device")
    pk.add_argument("--label", default="", help="a human name for this version")
    i = sub.add_parser("install", help="verify and unpack a bundle (device)")
    i.add_argument("bundle", help="bundle file or http(s):// URL")
    i.add_argument("--activate", action="store_true", help="make it current too")
    sub.add_parser("list", help="installed versions")
    a = sub.add_parser("activate", help="switch current to an installed version")
    a.add_argument("version", help="version (a unique prefix is enough)")
    sub.add_parser("rollback", help="switch current back to the previous version")


def _store(args: argparse.Namespace) -> tuple[Store, list[str]]:
    from ..kiosk import config

    over = {"state_dir": args.state_dir} if args.state_dir else {}
    cfg = config.load(args.config, over)
    return Store(cfg.models_dir, cfg.models.trusted_keys, cfg.models.keep), cfg.models.classes


MAX_BUNDLE_BYTES = 1 << 30  # a bundle is tens of MB; a hostile URL must not fill the disk


def _fetch(url: str, into: Path, limit: int = MAX_BUNDLE_BYTES) -> Path:
    """Download into the store's folder (same file system: no copy later); partial files
    never stay behind."""
    into.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=into, prefix=".download-", suffix=".bundle")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(fd, "wb") as f:
            got = 0
            while block := r.read(1 << 20):
                got += len(block)
                if got > limit:
                    raise UsageError(f"cannot download {url}: larger than {limit} bytes")
                f.write(block)
    except UsageError:  # over the limit
        Path(tmp).unlink(missing_ok=True)
        raise
    except (OSError, ValueError) as e:  # network, HTTP status, or not a URL urllib takes
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot download {url}: {e}") from None
    return Path(tmp)


def run(args: argparse.Namespace) -> int:
    out: dict[str, object]
    if args.action == "keygen":
        from .bundle import keygen

        pub = keygen(args.key)
        out = {"private_key": str(args.key), "public_key": pub}
        msg = f"wrote {args.key} (keep it secret) and {args.key}.pub\n"
        msg += f'device config: [models]\ntrusted_keys = ["{pub}"]'
    elif args.action == "pack":
        from .bundle import pack
        from .classifier import default_data_dir

        out = pack(
            args.model,
            args.key,
            args.out,
            sample=args.sample or default_data_dir(),
            per_class=args.per_class,
            tolerance=args.tolerance,
            label=args.label,
        )
        s: Any = out["sample"]  # the pack report's sample record
        msg = (
            f"wrote {args.out}: version {str(out['version'])[:12]}, signed by key "
            f"{out['key_id']}, sample accuracy {s['correct']}/{s['n']}"
        )
    else:
        store, classes = _store(args)
        if args.action == "install":
            src, tmp = args.bundle, None
            if src.startswith(("http://", "https://")):
                tmp = src = _fetch(src, store.root)
            try:
                t0 = time.monotonic()
                existed = {v["version"] for v in store.versions()}
                version = store.install(src, classes or None)
            finally:
                if tmp:
                    Path(tmp).unlink(missing_ok=True)
            out = {"version": version, "new": version not in existed}
            msg = (
                f"installed {version[:12]} in {time.monotonic() - t0:.1f} s"
                if out["new"]
                else f"{version[:12]} is already installed (unchanged)"
            )
            if args.activate:
                store.activate(version)
                msg += f"; now current ({HINT})"
        elif args.action == "list":
            vs = store.versions()
            out = {"versions": vs}
            rows = [f"{'':2}{'version':14}{'architecture':20}{'label':16}installed"]
            for v in vs:
                mark = "*" if v["current"] else "-" if v["previous"] else " "
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v["installed_at"]))
                rows.append(
                    f"{mark} {v['version'][:12]:14}{v['architecture']:20}{v['label'][:15]:16}{when}"
                )
            msg = "\n".join(rows) if vs else f"no versions installed in {store.root}"
        elif args.action == "activate":
            cur = store.activate(args.version)
            out, msg = {"current": cur}, f"current -> {cur[:12]} ({HINT})"
        else:
            cur = store.rollback()
            out, msg = {"current": cur}, f"rolled back: current -> {cur[:12]} ({HINT})"
    print(json.dumps(out, indent=1, default=str) if args.json else msg)
    return 0
