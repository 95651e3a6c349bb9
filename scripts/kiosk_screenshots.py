#!/usr/bin/env python3
"""Screenshots of the kiosk page for every state, at 800x480 (the Pi's 7" screen) and 1920x1080.

The same harness as tests/test_kiosk_page.py: a real ``mpox-edge serve`` on a dir:// inbox of
real photos from the bundled held-out sample, the shipped model, Debian's headless chromium.
Writes docs/screens/<state>-<size>.png (the set the README shows).

    python3 scripts/kiosk_screenshots.py [--out docs/screens] [--lang en]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from kiosk_browser import (  # noqa: E402
    SIZES,
    Kiosk,
    browser_paths,
    card,
    make_inputs,
    open_browser,
    resize,
    wait_for,
)


def save(drv: object, path: Path) -> int:
    """The screenshot as PNG; with Pillow installed, as a 256-colour palette PNG (3x smaller)."""
    png = drv.get_screenshot_as_png()  # type: ignore[attr-defined]
    try:
        import io

        from PIL import Image

        rgb = Image.open(io.BytesIO(png)).convert("RGB")
        img = rgb.quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
        img.save(path, optimize=True)
    except ImportError:
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "screens"), help="folder for the PNGs")
    ap.add_argument("--lang", default="en", help="page language (en, fr, pt)")
    ap.add_argument("--json", action="store_true", help="print what was written as JSON")
    args = ap.parse_args(argv)
    if browser_paths() is None:
        print("error: needs Debian's chromium and chromium-driver (apt install)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "frames")
        kiosk = Kiosk(Path(tmp) / "kiosk")
        drv = open_browser(*SIZES["800x480"])
        try:
            drv.get(f"{kiosk.url}/?lang={args.lang}")
            wait_for(lambda: card(drv)["state"] == "waiting", 10, "the waiting card")
            steps = [
                ("waiting", None, False),
                ("retake-hold-still", inputs["retake-blurred"], False),
                ("retake-more-light", inputs["retake-dark"], False),
                ("refer", inputs["refer"], False),
                ("refer-heatmap", inputs["refer"], True),
                ("clear", inputs["clear"], False),
                ("unsure", inputs["unsure"], False),
            ]
            for name, photo, heat in steps:
                if photo is not None:
                    state = name.split("-")[0]
                    shown = kiosk.show(photo)
                    kiosk.wait_decided(shown)
                    wait_for(lambda s=state: card(drv)["state"] == s, 10, f"the {state} card")
                    wait_for(
                        lambda: drv.execute_script(
                            "const i = document.getElementById('live');"
                            "return i.complete && i.naturalWidth > 0;"
                        ),
                        10,
                        "the live view",
                    )
                if heat:
                    drv.find_element("id", "heat-toggle").click()
                    wait_for(
                        lambda: drv.execute_script(
                            "const h = document.getElementById('heat');"
                            "return !h.hidden && h.complete && h.naturalWidth > 0;"
                        ),
                        10,
                        "the heatmap",
                    )
                for size, (w, h) in SIZES.items():
                    resize(drv, w, h)
                    drv.execute_script("return new Promise(r => requestAnimationFrame(r))")
                    path = out / f"{name}-{size}.png"
                    written[str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)] = (
                        save(drv, path)
                    )
                resize(drv, *SIZES["800x480"])
        finally:
            drv.quit()
            kiosk.close()
    if args.json:
        print(json.dumps(written, indent=1))
    else:
        for p, n in written.items():
            print(f"{p}  {n / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
