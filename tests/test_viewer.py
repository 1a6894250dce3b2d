"""``pixeldrl view``: the page's content from files, and the page itself driven in headless Chromium
(Debian's ``chromium`` package through Playwright; README, "The two commands", installs both)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from pixeldrl.cli import main
from pixeldrl.viewer import MAX_SIDE, ViewSlice, write_view
from synth_datasets import make_folder
from test_cli import FAST, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_slices(n: int = 3, size: int = 40, t_max: int = 3) -> list[ViewSlice]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        r = np.hypot(yy - size / 2, xx - size / 2 - i)
        removal = np.where(r < 10, 0, np.minimum(t_max, 1 + ((r - 10) // 4).astype(int))).astype(np.uint8)
        prob = np.where(removal == 0, 0.9, 0.1).astype(np.float32)
        out.append(ViewSlice(f"slice{i}.png", rng.random((size, size)), removal, prob, r < 11))
    return out


def embedded(page_html: str) -> dict:
    return json.loads(re.search(r"const DATA = (.*);\n", page_html).group(1))


def test_view_of_a_prediction_folder(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", tmp_path / "run")
    assert rc == 0, err
    pred = tmp_path / "pred"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt", data / "images",
                         "--out", pred, "--save-steps", "--save-prob")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "view", pred, "--images", data / "images", "--gt", data / "masks",
                           "--out", tmp_path / "view.html")
    assert rc == 0, err
    d = embedded((tmp_path / "view.html").read_text())
    assert [s["name"] for s in d["slices"]] == [f"img{i}.png" for i in range(6)]
    assert all({"image", "removal", "prob", "gt", "dice"} <= set(s) for s in d["slices"])
    assert all(len(s["dice"]) == d["t_max"] + 1 for s in d["slices"])


def test_view_refuses_what_it_cannot_show(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "view", tmp_path / "missing")
    assert rc == 2 and "no such prediction folder" in err
    (tmp_path / "pred").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pred" / "a.png")
    rc, _, err = run_cli(capsys, "view", tmp_path / "pred")
    assert rc == 2 and "--save-steps" in err and len(err.strip().splitlines()) == 1


def test_large_and_many_slices_are_bounded(tmp_path):
    big = [ViewSlice("big", np.zeros((1000, 900)), np.zeros((1000, 900), np.uint8))]
    d = embedded(write_view(tmp_path / "big.html", big, 1).read_text())
    assert max(d["slices"][0]["w"], d["slices"][0]["h"]) <= MAX_SIDE
    many = synthetic_slices(n=3) * 100
    page = write_view(tmp_path / "many.html", many, 3).read_text()
    assert len(embedded(page)["slices"]) == 200 and "200 of 300 slices shown" in page


def test_viewer_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for this test (README, 'The two commands')"
    page_path = write_view(tmp_path / "view.html", synthetic_slices(), t_max=3, title="test")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())  # from disk: no server, no network

        def show(slice_: int, step: int, layer: str = "mask") -> str:
            page.locator("#slice").fill(str(slice_))
            page.locator("#step").fill(str(step))
            page.locator("#layer").select_option(layer)
            page.wait_for_function(f"document.body.dataset.drawn === '{slice_}:{step}:{layer}'")
            return page.evaluate("document.getElementById('view').toDataURL()")

        final = show(0, 3)
        start = show(0, 0)
        assert start != final  # the step slider changes what the canvas shows
        assert "100.0 % of the pixels kept" in page.inner_text("#info")
        assert "DICE" in page.inner_text("#info")
        assert show(0, 1) not in (start, final)
        other = show(2, 3)
        assert other != final and "slice2.png" in page.inner_text("#sliceLabel")
        assert show(2, 3, "prob") != other
        page.screenshot(path=str(tmp_path / "shot.png"))
        browser.close()
    assert not errors, errors
    assert Image.open(tmp_path / "shot.png").size[0] > 500
