"""The README's pictures of the viewer: ``pixeldrl demo`` writes runs/demo/run/view.html; this
opens it in headless Chromium (Debian's ``chromium`` through Playwright) and saves two screenshots.

    python docs/screenshots.py runs/demo/run/view.html docs/ [--slice 14]
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("view", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--slice", type=int, default=14, help="slice index to show")
    p.add_argument("--step", type=int, default=1, help="step shown in the mask picture")
    a = p.parse_args()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 900, "height": 720})
        page.goto(a.view.resolve().as_uri())
        for layer, step, name in (("mask", a.step, "viewer_steps.png"), ("prob", 10, "viewer_prob.png")):
            page.locator("#slice").fill(str(a.slice))
            step = min(step, int(page.locator("#step").get_attribute("max")))
            page.locator("#step").fill(str(step))
            page.locator("#layer").select_option(layer)
            page.wait_for_function(f"document.body.dataset.drawn === '{a.slice}:{step}:{layer}'")
            page.screenshot(path=str(a.out / name), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
