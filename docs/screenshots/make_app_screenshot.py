"""Make docs/app-mask-overlay.png: the web app with a mask overlay on a clicked object.

Starts the app on a model set (default: the offline ``tiny`` stand-ins), opens it in headless Chromium
(Debian's ``chromium``), uploads a flat illustration, clicks an object and takes the screenshot.

With the tiny stand-ins SAM has *random weights*, so the overlays show the app's mechanics (one colour
and outline per selected object, the click marker, the list of objects) but not real segmentation; run
with ``--models default`` (real SAM weights in the HF cache) for masks that follow the objects.

    python docs/screenshots/make_app_screenshot.py [--models tiny] [--out docs/app-mask-overlay.png]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw


# ---------------------------------------------------------------------- the screenshot


def demo_scene(path: Path) -> tuple[int, int]:
    """A flat illustration: sky, hill, a red car-like box, a tree, a yellow sun."""
    w, h = 640, 420
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    for y in range(h):
        t = y / h
        d.line([(0, y), (w, y)], fill=(int(120 + 80 * t), int(170 + 50 * t), int(235 - 20 * t)))
    d.rectangle([0, 270, w, h], fill=(96, 150, 70))
    d.ellipse([500, 40, 580, 120], fill=(250, 205, 60))
    d.rectangle([300, 150, 322, 290], fill=(110, 70, 40))
    d.ellipse([245, 70, 380, 200], fill=(40, 120, 50))
    d.rectangle([70, 250, 230, 320], fill=(200, 40, 45))
    d.rectangle([105, 215, 195, 255], fill=(200, 40, 45))
    d.ellipse([90, 305, 130, 345], fill=(30, 30, 30))
    d.ellipse([170, 305, 210, 345], fill=(30, 30, 30))
    img.save(path)
    return w, h


def screenshot(models_dir: str, out: Path, clicks: list[tuple[int, int]]) -> None:
    from playwright.sync_api import sync_playwright

    from foleykit.app import AppConfig, launch_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="foleykit-shot-"))
    demo = launch_app(config=AppConfig(models=str(models_dir), device="cpu", workdir=work, default_duration_s=2.0,
                                       default_steps=4), port=port, block=False, quiet=True)
    base = f"http://127.0.0.1:{port}"
    scene = work / "scene.png"
    w, h = demo_scene(scene)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page.goto(base)
            page.locator("#upload input[type=file]").set_input_files(str(scene))
            page.get_by_text("Image loaded").wait_for(timeout=120_000)
            for k, (x, y) in enumerate(clicks, start=1):
                img = page.locator("#canvas img").first
                box = img.bounding_box()
                scale = min(box["width"] / w, box["height"] / h)
                ox = box["x"] + (box["width"] - w * scale) / 2
                oy = box["y"] + (box["height"] - h * scale) / 2
                page.mouse.click(ox + x * scale, oy + y * scale)
                page.locator("#objects li").nth(k - 1).wait_for(timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out), full_page=False)
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--out", type=Path, default=Path("docs/app-mask-overlay.png"))
    args = ap.parse_args()
    screenshot(args.models, args.out, clicks=[(150, 285)])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
