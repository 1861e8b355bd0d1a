"""The web app in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Start the app on the tiny models at 127.0.0.1 on a free port, upload an image, click a point, see the
mask overlay appear, generate, and fetch the result audio to check that it plays and has the right
duration. Skips only when chromium, playwright or gradio is not installed (``apt-get install chromium``,
``pip install playwright``; never ``playwright install``: we use the system browser) — except under CI
(``CI=true`` or ``1``, as ``.ci/run`` is run), where a missing piece *fails* the tests with a message naming it,
so CI cannot pass by skipping. ``FOLEYKIT_CHROMIUM`` names the browser; when set, only that one is used.

Set ``FOLEYKIT_SCREENSHOT=path.png`` to also save a screenshot of the page with the mask overlay (the
one in docs/ was made this way).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("FOLEYKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _missing() -> list[str]:
    """What this test needs and does not find, one entry each, with how to install it."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed (pip install playwright)")
    try:
        import gradio  # noqa: F401
    except ImportError:
        missing.append("gradio is not installed (pip install 'foleykit[app]')")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"chromium is not installed ({CHROMIUM} is not an executable; apt-get install chromium)")
    return missing


MISSING = _missing()
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")
if MISSING and not IN_CI:
    pytest.skip("; ".join(MISSING), allow_module_level=True)
if not MISSING:
    from playwright import sync_api


@pytest.fixture(scope="module", autouse=True)
def _browser_test_requirements():
    """Under CI a missing browser, playwright or gradio fails every test here (a skip would pass CI)."""
    if MISSING:
        pytest.fail(f"CI={os.environ.get('CI')} but the browser test cannot run: " + "; ".join(MISSING), pytrace=False)

DURATION_S = 1.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scene(path: Path) -> np.ndarray:
    """A 240x160 picture: sky, ground, a red box and a green disc (something to click on)."""
    from PIL import Image

    h, w = 160, 240
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (150, 190, 235)
    arr[h // 2 :] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    yy, xx = np.mgrid[:h, :w]
    arr[(yy - 95) ** 2 + (xx - 170) ** 2 < 30**2] = (40, 200, 70)
    Image.fromarray(arr).save(path)
    return arr


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


@pytest.fixture(scope="module")
def running_app(tiny_models_dir, tmp_path_factory):
    from foleykit.app import AppConfig, launch_app

    work = tmp_path_factory.mktemp("app-work")
    port = _free_port()
    config = AppConfig(models=str(tiny_models_dir), device="cpu", workdir=work, default_duration_s=DURATION_S,
                       default_steps=2)
    demo = launch_app(config=config, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}", work
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _new_page(browser, base: str, offsite: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})

    def guard(route):
        url = route.request.url
        if url.startswith(base) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:  # the app must work without reaching anything but itself
            offsite.append(url)
            route.abort()

    page.route("**/*", guard)
    return page


def _canvas_png(page, base: str) -> np.ndarray:
    from PIL import Image

    src = page.locator("#canvas img").first.get_attribute("src")
    assert src, "the picture has no source"
    if src.startswith("data:"):
        import base64

        data = base64.b64decode(src.split(",", 1)[1])
    else:
        status, data = _get(src if src.startswith("http") else base + src)
        assert status == 200
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _click_pixel(page, x: int, y: int, size: tuple[int, int]) -> None:
    """Click image pixel (x, y) of the displayed picture (it may be scaled on screen)."""
    img = page.locator("#canvas img").first
    box = img.bounding_box()
    w, h = size
    # object-fit: contain — the picture is centred inside the element's box.
    scale = min(box["width"] / w, box["height"] / h)
    ox = box["x"] + (box["width"] - w * scale) / 2
    oy = box["y"] + (box["height"] - h * scale) / 2
    page.mouse.click(ox + (x + 0.5) * scale, oy + (y + 0.5) * scale)


def test_upload_click_overlay_generate_and_play(running_app, browser, tmp_path):
    import soundfile as sf

    base, work = running_app
    scene = _scene(tmp_path / "scene.png")
    offsite: list[str] = []
    page = _new_page(browser, base, offsite)
    page.goto(base, wait_until="domcontentloaded")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "scene.png"))

    # The picture appears in the clickable canvas, unchanged (no object selected yet).
    page.wait_for_function(
        "() => { const i = document.querySelector('#canvas img'); return i && i.complete && i.naturalWidth > 0 }",
        timeout=60_000,
    )
    page.get_by_text("Image loaded").wait_for(timeout=60_000)
    before = _canvas_png(page, base)
    assert before.shape == scene.shape
    assert np.abs(before.astype(int) - scene.astype(int)).max() <= 2

    # Click the red box: a mask overlay is drawn onto the picture and the object is listed.
    _click_pixel(page, 75, 85, (scene.shape[1], scene.shape[0]))
    page.locator("#objects").get_by_text("Selected objects").wait_for(timeout=60_000)
    after = _canvas_png(page, base)
    assert after.shape == scene.shape
    changed = np.abs(after.astype(int) - scene.astype(int)).sum(-1) > 30
    assert changed.mean() > 0.01, "no mask overlay appeared after the click"
    assert "click at (75, 85)" in page.locator("#objects").inner_text()
    if os.environ.get("FOLEYKIT_SCREENSHOT"):
        page.screenshot(path=os.environ["FOLEYKIT_SCREENSHOT"], full_page=True)
    page.screenshot(path=str(tmp_path / "overlay.png"), full_page=True)

    # Generate; progress runs, then an <audio> with a playable source of the right duration appears.
    page.locator("#generate").click()
    page.locator("#status").get_by_text("Done").wait_for(timeout=120_000)
    audio = page.locator("#result-audio audio").first
    audio.wait_for(state="attached", timeout=30_000)
    # The player's <audio> gets its source as a property (the waveform view drives it).
    page.wait_for_function(
        "() => { const a = document.querySelector('#result-audio audio'); return a && (a.currentSrc || a.src) }",
        timeout=30_000,
    )
    src = audio.evaluate("a => a.currentSrc || a.src")
    print("audio src", src)
    assert src and "/gradio_api/file=" in src
    status, data = _get(src if src.startswith("http") else base + src)
    assert status == 200
    wave, sr = sf.read(io.BytesIO(data))
    assert sr == 16000
    assert abs(len(wave) / sr - DURATION_S) < 0.02
    # The browser itself can decode it and agrees on the duration.
    browser_duration = page.evaluate(
        """(src) => new Promise((ok, bad) => {
               const a = new Audio(); a.preload = 'metadata';
               a.onloadedmetadata = () => ok(a.duration); a.onerror = () => bad('cannot play ' + src);
               a.src = src; })""",
        src,
    )
    assert abs(browser_duration - DURATION_S) < 0.05
    # Downloads: blend wav, stems zip and an mp4, all served from the app's own work folder.
    links = page.locator("#downloads a").evaluate_all("els => els.map(e => e.href)")
    names = " ".join(links)
    assert ".wav" in names and "stems.zip" in names and ".mp4" in names
    # Downloads are offered, never "removed" (one file per component: no remove button anywhere).
    assert page.locator("#downloads [aria-label='Remove this file']").count() == 0
    # The one selected object's stem has its own player.
    page.locator("#stem-1 audio").first.wait_for(state="attached", timeout=30_000)
    assert not offsite, f"the page tried to reach other hosts: {offsite[:3]}"
    page.close()


def test_bad_upload_gives_a_message_and_the_server_keeps_serving(running_app, browser, tmp_path):
    base, _ = running_app
    bogus = tmp_path / "not-an-image.png"
    bogus.write_text("this is text, not a picture")
    offsite: list[str] = []
    page = _new_page(browser, base, offsite)
    page.goto(base, wait_until="domcontentloaded")
    page.locator("#upload input[type=file]").set_input_files(str(bogus))
    page.locator("#status").get_by_text("not a recognised image format").wait_for(timeout=60_000)
    assert "Upload refused" in page.locator("#status").inner_text()
    # The server keeps serving: a real image still loads afterwards.
    _scene(tmp_path / "ok.png")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "ok.png"))
    page.get_by_text("Image loaded").wait_for(timeout=60_000)
    page.close()
