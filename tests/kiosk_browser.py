"""Helpers for driving the kiosk page in a real browser (tests, screenshots, benchmark).

A real ``mpox-edge serve`` on a ``dir://`` inbox of real photos (the bundled held-out sample)
and the shipped model; Debian's chromium + chromium-driver through selenium, headless, with
performance and console logs on, every flag that stops Chromium's own background traffic,
and nothing downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from edge_fakes import ServeProcess

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "edge" / "data" / "heldout"
# Real photos from the bundled sample that the shipped model decides confidently: the refer
# and clear cards.
MPOX_PHOTO = HELDOUT / "Monkeypox" / "monkeypox130.webp"
NORMAL_PHOTO = HELDOUT / "Normal" / "normal118.webp"
# A real photo the shipped model finds unlike its training data (max probability under the
# manifest's OOD threshold; Lite1: score 0.51-0.54 against 0.508 on ORT and OpenVINO, fp32
# and int8): the unsure card.
UNSURE_PHOTO = HELDOUT / "Measles" / "measles24.webp"
SIZES = {"800x480": (800, 480), "1920x1080": (1920, 1080)}


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) from the system, or None."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


def make_inputs(d: Path) -> dict[str, Path]:
    """The photos that drive each card: real ones, and a blurred and a dark copy of a real one."""
    d.mkdir(parents=True, exist_ok=True)
    img = cv2.imread(str(NORMAL_PHOTO), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {NORMAL_PHOTO}"
    big = cv2.resize(img, (448, 448), interpolation=cv2.INTER_CUBIC)
    out = {"refer": MPOX_PHOTO, "clear": NORMAL_PHOTO, "unsure": UNSURE_PHOTO}
    out["retake-blurred"] = d / "blurred.png"
    cv2.imwrite(str(out["retake-blurred"]), cv2.GaussianBlur(big, (0, 0), 8))
    out["retake-dark"] = d / "dark.png"
    cv2.imwrite(str(out["retake-dark"]), (big.astype(np.float32) * 0.12).astype(np.uint8))
    return out


class Kiosk:
    """``mpox-edge serve`` on a watched dir:// inbox; ``show(photo)`` is a person stepping up."""

    def __init__(self, root: Path, extra_toml: str = "", explain: bool = True) -> None:
        self.root = root
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.n = 0
        cfg = root / "kiosk.toml"
        cfg.write_text(
            f'state_dir = "{root / "state"}"\n'
            f"explain = {str(explain).lower()}\n"
            '[model]\nbackend = "onnxruntime"\nwarmup = 1\n'
            f'[source]\nuri = "dir://{self.inbox}"\nwatch = true\n'
            "[http]\nport = 0\n" + extra_toml
        )
        self.proc = ServeProcess(["--config", str(cfg)])
        try:
            self.url = self.proc.url(timeout=120)
            self.proc.wait_for("ready:", timeout=120)
        except BaseException:
            self.proc.stop()
            raise

    def show(self, photo: Path) -> str:
        """Put a photo in the inbox the way a kiosk camera app does (dotfile, then rename)."""
        self.n += 1
        name = f"{self.n:04d}-{photo.stem}{photo.suffix}"
        tmp = self.inbox / f".{name}"
        shutil.copyfile(photo, tmp)
        old = time.time() - 5  # already settled: the inbox picks it up at its next poll
        os.utime(tmp, (old, old))
        tmp.rename(self.inbox / name)
        return name

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/status", timeout=5) as r:
            return json.loads(r.read())

    def wait_decided(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            last = self.status().get("last_decision") or {}
            if last.get("name") == name:
                return last
            time.sleep(0.05)
        raise AssertionError(f"{name} not decided in {timeout} s: {self.status()}")

    def close(self) -> int:
        return self.proc.stop()


def open_browser(width: int = 800, height: int = 480) -> Any:
    """Headless Debian Chromium through chromedriver, with console and network logs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    assert paths, "chromium and chromedriver are not installed"
    chrome, driver = paths
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing resolves off-host
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        "--lang=en-US",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    opts.page_load_strategy = "normal"
    drv = webdriver.Chrome(options=opts, service=Service(driver))
    drv.set_page_load_timeout(20)
    drv.set_script_timeout(10)
    resize(drv, width, height)
    return drv


def resize(drv: Any, width: int, height: int) -> None:
    """The page's viewport exactly (the window's chrome does not count)."""
    drv.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - a stale element while the page re-renders
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.03)
    raise AssertionError(f"{what} not met in {timeout} s (last: {last!r})")


def card(drv: Any) -> dict[str, Any]:
    """What the state card shows, read from the DOM."""
    return drv.execute_script(
        """const c = document.getElementById('card');
        const vis = (id) => !document.getElementById(id).hidden;
        return {state: c.dataset.state, title: document.getElementById('card-title').textContent,
          hint: vis('card-hint') ? document.getElementById('card-hint').textContent : '',
          body: document.getElementById('card-body').textContent,
          icon: document.getElementById('card-icon').getAttribute('href'),
          toggle: vis('heat-toggle'), heat: vis('heat'), legend: vis('legend'),
          lang: document.documentElement.lang};"""
    )


def network_requests(drv: Any) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in drv.get_log("performance"):
        m = json.loads(entry["message"])["message"]
        if m.get("method") == "Network.requestWillBeSent":
            urls.append(m["params"]["request"]["url"])
    return urls


def off_host(urls: list[str], host: str = "127.0.0.1") -> list[str]:
    return [u for u in urls if not (u.startswith("data:") or urlsplit(u).hostname == host)]


def contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two CSS rgb()/rgba() colours."""

    def lum(css: str) -> float:
        r, g, b = (float(v) / 255 for v in css[css.index("(") + 1 : -1].split(",")[:3])
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    a, b = sorted((lum(fg), lum(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)
