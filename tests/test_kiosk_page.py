"""The kiosk page in a real browser: Debian's headless chromium against a real ``mpox-edge
serve`` on a dir:// inbox of real photos (the bundled held-out sample) and the shipped model.

One daemon and one browser for the module. Each card is reached with real input: a blurred
and a dark copy of a real photo (retake: hold still, more light), a real mpox photo (refer),
a real normal-skin photo (clear), a real photo the model finds unlike its training data
(unsure). Skips only where no chromium/chromedriver is installed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kiosk_browser import (
    SIZES,
    Kiosk,
    browser_paths,
    card,
    contrast,
    make_inputs,
    network_requests,
    off_host,
    open_browser,
    resize,
    wait_for,
)
from mpox_edge.edge.kiosk.webui import load_strings

pytest.importorskip("selenium", reason="selenium is not installed (pip install '.[dev]')")
if browser_paths() is None:
    pytest.skip(
        "no browser: install Debian's chromium and chromium-driver (.ci/apt.d/h14.txt)",
        allow_module_level=True,
    )

EN, FR, PT = load_strings("en"), load_strings("fr"), load_strings("pt")
# input -> (card, hint key): what a person in front of the kiosk must be told
EXPECTED = {
    "retake-blurred": ("retake", "hold_still"),
    "retake-dark": ("retake", "more_light"),
    "refer": ("refer", ""),
    "clear": ("clear", ""),
    "unsure": ("unsure", ""),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kiosk]:
    k = Kiosk(tmp_path_factory.mktemp("kiosk"))
    yield k
    assert k.close() == 0, "".join(k.proc.lines[-20:])


@pytest.fixture(scope="module")
def browser(kiosk: Kiosk) -> Iterator[Any]:
    drv = open_browser(*SIZES["800x480"])
    drv.get(kiosk.url + "/")
    yield drv
    drv.quit()


def show(kiosk: Kiosk, browser: Any, photo: Path, state: str) -> dict[str, Any]:
    name = kiosk.show(photo)
    kiosk.wait_decided(name)
    return wait_for(
        lambda: (c := card(browser))["state"] == state and c, 10, f"the {state} card for {name}"
    )


def test_no_frame_is_encoded_while_nobody_watches(kiosk: Kiosk, inputs: dict[str, Path]) -> None:
    # runs before the module's browser opens the page: decisions, but no live-view encoding
    name = kiosk.show(inputs["clear"])
    assert kiosk.wait_decided(name)["decision"] == "clear"
    ui = kiosk.status()["ui"]
    assert ui["stream_clients"] == 0 and ui["frames_encoded"] == 0, ui


@pytest.mark.parametrize("what", list(EXPECTED))
def test_each_decision_has_its_card(
    kiosk: Kiosk, browser: Any, inputs: dict[str, Path], what: str
) -> None:
    state, hint = EXPECTED[what]
    c = show(kiosk, browser, inputs[what], state)
    assert c["title"] == EN[f"{state}.title"] and c["body"] == EN[f"{state}.body"]
    assert c["hint"] == (EN[f"retake.hint.{hint}"] if hint else "")
    assert c["icon"] == f"#i-{state}"  # an icon as well as a colour
    # the disclaimer is always on screen, inside the 800x480 viewport, and nothing overflows
    geo = browser.execute_script(
        """const d = document.getElementById('disclaimer').getBoundingClientRect();
        const c = document.getElementById('card');
        return {top: d.top, bottom: d.bottom, h: innerHeight, w: innerWidth,
          text: document.getElementById('disclaimer').innerText,
          overflow: c.scrollHeight > c.clientHeight + 1 || c.scrollWidth > c.clientWidth + 1,
          page: document.documentElement.scrollHeight > innerHeight};"""
    )
    assert geo["text"] == EN["disclaimer"] and 0 <= geo["top"] < geo["bottom"] <= geo["h"]
    assert not geo["overflow"] and not geo["page"], geo


def test_cards_meet_wcag_aa_contrast(kiosk: Kiosk, browser: Any, inputs: dict[str, Path]) -> None:
    seen = {}
    for what in ("retake-dark", "refer", "clear"):
        show(kiosk, browser, inputs[what], EXPECTED[what][0])
        seen[what] = browser.execute_script(
            """const out = [];
            for (const id of ['card-title', 'card-body', 'card-hint', 'disclaimer']) {
              const el = document.getElementById(id);
              let bg = el, c;
              while ((c = getComputedStyle(bg).backgroundColor) === 'rgba(0, 0, 0, 0)')
                bg = bg.parentElement;
              out.push([id, getComputedStyle(el).color, c]);
            }
            return out;"""
        )
    for what, rows in seen.items():
        for el, fg, bg in rows:
            assert contrast(fg, bg) >= 4.5, (what, el, fg, bg, contrast(fg, bg))


def test_heatmap_only_on_refer_with_legend(
    kiosk: Kiosk, browser: Any, inputs: dict[str, Path]
) -> None:
    c = show(kiosk, browser, inputs["refer"], "refer")
    assert c["toggle"] and not c["heat"] and not c["legend"]
    browser.find_element("id", "heat-toggle").click()
    wait_for(
        lambda: browser.execute_script(
            "const h = document.getElementById('heat'); return !h.hidden && h.complete"
            " && h.naturalWidth > 0;"
        ),
        10,
        "the heatmap image",
    )
    c = card(browser)
    assert (
        c["legend"]
        and browser.find_element("id", "heat-toggle").get_attribute("aria-pressed") == "true"
    )
    legend = browser.find_element("id", "legend").text
    assert EN["heatmap.legend"] in legend and "not a diagnosis" in legend
    # a clear decision takes the heatmap away, and the server refuses one
    c = show(kiosk, browser, inputs["clear"], "clear")
    assert not c["toggle"] and not c["heat"] and not c["legend"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(kiosk.url + "/heatmap.jpg", timeout=5)
    assert e.value.code == 404


def live_brightness(browser: Any) -> float:
    """Mean grey level of what the live view shows now (-1 before its first frame)."""
    return browser.execute_script(
        """const img = document.getElementById('live');
        if (!img.complete || !img.naturalWidth) return -1;
        const c = document.createElement('canvas');
        c.width = 64; c.height = 64;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0, 64, 64);
        const d = g.getImageData(0, 0, 64, 64).data;
        let s = 0;
        for (let i = 0; i < d.length; i += 4) s += (d[i] + d[i + 1] + d[i + 2]) / 3;
        return s / (d.length / 4);"""
    )


def test_live_view_follows_the_camera(kiosk: Kiosk, browser: Any, inputs: dict[str, Path]) -> None:
    # the dark frame (mean grey ~24) and the normal photo (~206) must each reach the screen
    before = kiosk.status()["ui"]["frames_encoded"]
    show(kiosk, browser, inputs["retake-dark"], "retake")
    wait_for(lambda: 0 <= live_brightness(browser) < 60, 3, "the dark frame on screen")
    show(kiosk, browser, inputs["clear"], "clear")
    wait_for(lambda: live_brightness(browser) > 150, 3, "the bright photo on screen")
    ui = kiosk.status()["ui"]
    assert ui["stream_clients"] >= 1 and ui["frames_encoded"] >= before + 2, ui


def test_language_switch_and_query(kiosk: Kiosk, browser: Any, inputs: dict[str, Path]) -> None:
    show(kiosk, browser, inputs["refer"], "refer")
    browser.find_element("css selector", "#langs button[value=fr]").click()
    c = wait_for(lambda: (c := card(browser))["lang"] == "fr" and c, 5, "French")
    assert c["title"] == FR["refer.title"] and c["body"] == FR["refer.body"]
    assert browser.find_element("id", "disclaimer").text == FR["disclaimer"]
    assert "lang=fr" in browser.current_url
    browser.get(kiosk.url + "/?lang=pt")
    c = wait_for(lambda: (c := card(browser))["state"] == "refer" and c, 10, "the page again")
    assert c["lang"] == "pt" and c["title"] == PT["refer.title"]
    assert browser.find_element("id", "disclaimer").text == PT["disclaimer"]
    # Portuguese runs longest: still no overflow on the 7" screen
    assert not browser.execute_script(
        "const c = document.getElementById('card'); return c.scrollHeight > c.clientHeight + 1;"
    )
    browser.get(kiosk.url + "/")
    wait_for(lambda: card(browser)["lang"] == "en", 10, "English again")


def test_operator_view(kiosk: Kiosk, browser: Any) -> None:
    browser.get(kiosk.url + "/operator")
    text = wait_for(
        lambda: (t := browser.find_element("id", "backend").text) and t, 10, "operator data"
    )
    assert "onnxruntime" in text
    assert browser.find_element("id", "threshold").text.endswith("(model)")
    assert "streaming" in browser.find_element("id", "camera").text
    browser.get(kiosk.url + "/")
    wait_for(lambda: card(browser)["state"] != "", 10, "the kiosk page")


def test_decisions_reach_the_screen_quickly(
    kiosk: Kiosk, browser: Any, inputs: dict[str, Path]
) -> None:
    # not a speed target (that is scripts/bench_kiosk_page.py): the page measures it at all
    n = len(browser.execute_script("return kiosk.latencies"))
    show(kiosk, browser, inputs["refer"], "refer")
    lat = wait_for(
        lambda: (v := browser.execute_script("return kiosk.latencies")) and len(v) > n and v,
        5,
        "a latency sample",
    )
    assert 0 <= lat[-1] < 5000, lat


def test_1080p_layout(kiosk: Kiosk, browser: Any, inputs: dict[str, Path]) -> None:
    resize(browser, *SIZES["1920x1080"])
    try:
        c = show(kiosk, browser, inputs["retake-dark"], "retake")
        assert c["hint"] == EN["retake.hint.more_light"]
        geo = browser.execute_script(
            """const r = document.getElementById('card').getBoundingClientRect();
            const v = document.getElementById('view').getBoundingClientRect();
            return {card: r.width, view: v.width, h: r.height, inner: innerHeight};"""
        )
        assert geo["card"] > 600 and geo["view"] > 600 and geo["h"] > 500, geo
    finally:
        resize(browser, *SIZES["800x480"])


def test_camera_outage_shows_a_banner_and_recovers(kiosk: Kiosk, browser: Any) -> None:
    # the inbox vanishing is a camera failure to the daemon; the page is told, then recovers
    banner = "return !document.getElementById('nocam').hidden"
    aside = kiosk.inbox.with_name("inbox-away")
    kiosk.inbox.rename(aside)
    try:
        wait_for(lambda: browser.execute_script(banner), 10, "the camera banner")
        assert EN["camera_unavailable"] in browser.find_element("id", "nocam").text
    finally:
        aside.rename(kiosk.inbox)
    wait_for(lambda: not browser.execute_script(banner), 30, "the banner to go")


def test_no_request_leaves_loopback_and_the_console_is_clean(browser: Any) -> None:
    # last in the module: everything the page did above is in the logs
    urls = network_requests(browser)
    assert any(u.endswith("/events") for u in urls) and any("/stream.mjpg" in u for u in urls)
    assert off_host(urls) == [], off_host(urls)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], json.dumps(errors, indent=1)
