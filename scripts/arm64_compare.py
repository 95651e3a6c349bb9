#!/usr/bin/env python3
"""Compare the arm64 (emulated) eval/bench JSON of scripts/arm64_check.sh with the x86 run.

Per image: the same top-1 class, and every probability within the tolerance: 1e-4 for fp32
(the same float graph; only summation order differs between x86 and NEON kernels) and 2e-2
for int8 (ONNX Runtime's int8 kernels differ per ISA: x86 u8s8 with VNNI vs ARM's s8s8/u8u8
dot-product paths round differently; top-1 must still agree on every image). bench must
report the same accuracy as eval on the same images. Timings are never compared: under qemu
they are meaningless.

    python3 scripts/arm64_compare.py X86_DIR ARM_DIR [--label NAME] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TOLERANCE = {"fp32": 1e-4, "int8": 2e-2}


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"arm64_compare: cannot read {path}: {e}") from None


def compare_eval(x86: dict[str, Any], arm: dict[str, Any], tol: float) -> dict[str, Any]:
    """Per-image top-1 and max |dp| between two `mpox-edge eval --json` reports."""
    a = {p["path"]: p for p in x86["results"][0]["predictions"]}
    b = {p["path"]: p for p in arm["results"][0]["predictions"]}
    problems: list[str] = []
    if set(a) != set(b):
        problems.append(f"different images: {sorted(set(a) ^ set(b))[:5]}")
    worst = 0.0
    for name in sorted(set(a) & set(b)):
        pa, pb = a[name]["probs"], b[name]["probs"]
        top_a, top_b = pa.index(max(pa)), pb.index(max(pb))
        d = max(abs(u - v) for u, v in zip(pa, pb, strict=True))
        worst = max(worst, d)
        if top_a != top_b:
            problems.append(f"{name}: top-1 {top_a} on x86, {top_b} on arm64")
        if d > tol:
            problems.append(f"{name}: |dp| {d:.2e} > {tol:.0e}")
    return {"images": len(a), "max_abs_diff": worst, "tolerance": tol, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("x86", type=Path)
    ap.add_argument("arm", type=Path)
    ap.add_argument("--label", default="arm64")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"label": args.label, "checks": {}}
    ok = True
    for prec, tol in TOLERANCE.items():
        xe, ae = args.x86 / f"eval-{prec}.json", args.arm / f"eval-{prec}.json"
        if not ae.exists():
            continue
        c = compare_eval(_load(xe), _load(ae), tol)
        arm_acc = _load(ae)["results"][0]["accuracy"]
        bench = args.arm / f"bench-{prec}.json"
        if bench.exists():
            b_acc = _load(bench).get("accuracy", {}).get("accuracy")
            if b_acc is None or abs(b_acc - arm_acc) > 1e-9:
                c["problems"].append(f"bench accuracy {b_acc} != eval accuracy {arm_acc}")
        c["accuracy_x86"] = _load(xe)["results"][0]["accuracy"]
        c["accuracy_arm64"] = arm_acc
        out["checks"][prec] = c
        ok = ok and not c["problems"]
    if not out["checks"]:
        print(f"arm64_compare: no eval-*.json in {args.arm}", file=sys.stderr)
        return 1
    out["ok"] = ok
    if args.json:
        print(json.dumps(out, indent=2))
    for prec, c in out["checks"].items():
        verdict = "match" if not c["problems"] else "MISMATCH"
        print(
            f"== arm64: {args.label} {prec}: {verdict} on {c['images']} images "
            f"(max |dp| {c['max_abs_diff']:.1e}, tolerance {c['tolerance']:.0e}; "
            f"accuracy x86 {c['accuracy_x86']:.3f}, arm64 {c['accuracy_arm64']:.3f})"
        )
        for p in c["problems"][:10]:
            print(f"   {p}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
