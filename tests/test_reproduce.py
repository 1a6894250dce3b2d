"""Baselines, corruptions and the ``pixeldrl reproduce`` runner on tiny data with tiny budgets.

Data: 10 disks of 24×24 (7 train / 1 val / 2 test), networks at 64×64 (the smallest size
Swin-UNETR takes), one epoch, one torch thread. The table2 run is shared by the tests of this
module (built once), so the whole file takes about a minute on two busy cores.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pixeldrl.cli import main
from pixeldrl.config import MODELS, make_config
from pixeldrl.experiments.corruptions import CORRUPTIONS, Corruption, corrupt, intensity_spread
from pixeldrl.metrics import METRIC_NAMES
from pixeldrl.experiments.reproduce import LABELS, experiment_rows, k_shot_subset

from test_cli import RUN_FILES, make_dataset, run_cli

TINY = ["--preset", "small", "--image-size", "64", "--batch-size", "4", "--epochs", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("disks") / "data", n=10)


@pytest.fixture(scope="module")
def table2(data, tmp_path_factory):
    """reproduce table2 with two seeds: (out folder, printed output)."""
    out = tmp_path_factory.mktemp("repro") / "out"
    rc = main(["reproduce", "--data", str(data), "--experiment", "table2", "--seeds", "2", "--out", str(out), *TINY])
    assert rc == 0
    return out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- models


def test_info_gives_every_models_parameter_count(capsys):
    totals = {}
    for name in MODELS:
        rc, out, _ = run_cli(capsys, "info", "--model", name, "--json")
        assert rc == 0
        obj = json.loads(out)
        assert obj["model"] == name and obj["parameters"]["total"] > 0
        totals[name] = obj["parameters"]["total"]
    assert totals["pixeldrl"] == 7_136_163  # the paper preset, as before
    assert totals["pixelrl"] < totals["pixeldrl"]
    rc, out, _ = run_cli(capsys, "info", "--preset", "small", "--json")
    assert rc == 0 and json.loads(out)["parameters"]["total"] == 288_419


@pytest.mark.parametrize("args, message", [
    (["info", "--model", "resnet"], "unknown model"),
    (["train", "--data", "{data}", "--model", "resnet", *TINY], "unknown model"),
    (["train", "--data", "{data}", "--model", "swin-unetr", "--image-size", "48", "--epochs", "1"], "multiple of 32"),
    (["reproduce", "--data", "{data}", "--experiment", "table9"], "table2, table3"),
    (["reproduce", "--data", "{data}", "--experiment", "table4", "--shots", "50", *TINY], "only 7 images"),
    (["reproduce", "--data", "{data}", "--experiment", "table4", "--shots", "a,b"], "comma-separated"),
    (["reproduce", "--data", "{data}", "--experiment", "table2", "--seeds", "0"], "--seeds"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, data, tmp_path, args, message):
    args = [a.replace("{data}", str(data)) for a in args] + (["--out", str(tmp_path / "o")] if args[0] != "info" else [])
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("model", ["unet", "attention-unet", "unet++", "swin-unetr"])
def test_supervised_baselines_train_and_improve(data, tmp_path, model):
    cfg = make_config("small", model=model, data=str(data), image_size=64, batch_size=4, epochs=4,
                      out=str(tmp_path / model), lr=3e-3)
    from pixeldrl.training.train import train

    run = train(cfg, progress=False)
    for f in RUN_FILES:
        assert (run / f).is_file(), f
    log = read_csv(run / "log.csv")
    losses = [float(r["loss"]) for r in log]
    assert losses[-1] < losses[0], losses
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n"] == 2 and summary["mean"]["DICE"] > 0.3
    ckpt = torch.load(run / "checkpoint_best.pt", weights_only=True)
    assert ckpt["model_name"] == model and ckpt["config"]["model"] == model


def test_pixelrl_trains_with_pa3c_and_predicts(data, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "train", "--data", data, "--model", "pixelrl", "--preset", "small",
                         "--image-size", "32", "--epochs", "2", "--batch-size", "4", "--out", tmp_path / "run")
    assert rc == 0
    run = tmp_path / "run"
    log = read_csv(run / "log.csv")
    assert all(math.isfinite(float(r["loss"])) for r in log)  # PA3C losses, as for PixelDRL-MG
    assert float(log[0]["entropy"]) > 0
    rc, _, _ = run_cli(capsys, "predict", "--checkpoint", run / "checkpoint_best.pt", data / "images",
                       "--out", tmp_path / "pred", "--save-steps")
    assert rc == 0 and len(list((tmp_path / "pred").glob("*.png"))) == 10


def test_unet_checkpoint_predicts_and_evaluates(table2, data, tmp_path, capsys):
    ckpt = table2 / "runs" / "unet" / "e1-seed0" / "checkpoint_best.pt"
    rc, _, _ = run_cli(capsys, "predict", "--checkpoint", ckpt, data / "images", "--out", tmp_path / "pred")
    assert rc == 0 and len(list((tmp_path / "pred").glob("*.png"))) == 10
    rc, out, _ = run_cli(capsys, "evaluate", "--checkpoint", ckpt, "--data", data, "--json")
    assert rc == 0
    summary = json.loads((ckpt.parent / "summary.json").read_text())
    assert json.loads(out)["mean"] == pytest.approx(summary["mean"])


# --------------------------------------------------------------------------- corruptions


def test_corruptions_are_deterministic_and_do_what_they_say():
    rng = np.random.default_rng(0)
    img = (rng.random((40, 48)) * 1000).astype(np.uint16)
    spread = intensity_spread(img)
    for c in CORRUPTIONS:
        a, b = corrupt(img, c, seed=3), corrupt(img, c, seed=3)
        assert a.shape == img.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    noisy = corrupt(img, Corruption("noise", 0.1), seed=1)
    assert np.std(noisy - img) == pytest.approx(0.1 * spread, rel=0.1)
    assert not np.array_equal(noisy, corrupt(img, Corruption("noise", 0.1), seed=2))
    assert np.std(corrupt(img, Corruption("blur", 2.0))) < 0.5 * np.std(img.astype(float))
    biased = corrupt(img + 1, Corruption("bias", 0.3), seed=0)
    ratio = biased / (img + 1.0)  # a smooth multiplicative field
    assert ratio.min() > 0 and ratio.std() > 0.01
    assert np.abs(np.diff(np.log(ratio), axis=1)).max() < 0.4


# --------------------------------------------------------------------------- the runner


def test_k_shot_subset_is_seeded_and_a_subset():
    names = [f"n{i}" for i in range(20)]
    a = k_shot_subset(names, 5, seed=1)
    assert a == k_shot_subset(names, 5, seed=1) and len(set(a)) == 5 and set(a) <= set(names)
    assert a != k_shot_subset(names, 5, seed=2)


def test_table2_has_every_row_and_the_numbers_of_the_run_folders(table2):
    exp = table2 / "table2"
    for f in ("results.md", "results.csv", "bars.png", "comparison.png"):
        assert (exp / f).is_file(), f
    rows = read_csv(exp / "results.csv")
    assert [r["method"] for r in rows] == [LABELS[m] for m in ("pixeldrl", "pixelrl", "unet", "attention-unet",
                                                              "unet++", "swin-unetr")]
    md = (exp / "results.md").read_text()
    for r in rows:
        assert f"| {r['method']} |" in md
        runs = [Path(p) for p in r["runs"].split(";")]
        assert len(runs) == 2 and int(r["n_seeds"]) == 2
        means = [json.loads((run / "summary.json").read_text())["mean"] for run in runs]
        for m in METRIC_NAMES:
            vals = [x[m] for x in means]
            assert float(r[f"{m}_mean"]) == pytest.approx(np.mean(vals), abs=1e-12)
            assert float(r[f"{m}_std"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
        assert int(r["parameters"]) > 0
    # The best DICE is marked in the table.
    best = max(float(r["DICE_mean"]) for r in rows)
    assert f"**{best:.4f}" in md


def test_reproduce_skips_finished_runs_and_resumes_unfinished_ones(table2, data, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in (table2 / "runs").glob("*/*/checkpoint_best.pt")}
    unfinished = table2 / "runs" / "unet" / "e1-seed1"
    (unfinished / "summary.json").unlink()
    rc, out, _ = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table2", "--seeds", "2",
                         "--out", table2, *TINY)
    assert rc == 0
    assert out.count(": skipped") == 11 and out.count(": resumed") == 1, out
    assert (unfinished / "summary.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    # A run folder with other settings is refused, not reused.
    rc, _, err = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table2", "--seeds", "1",
                         "--out", table2, *TINY[:-2], "--epochs", "1", "--batch-size", "2")
    assert rc == 2 and "batch_size" in err
    # So is one trained on another data set.
    other = make_dataset(table2.parent / "other", n=10, seed=1)
    rc, _, err = run_cli(capsys, "reproduce", "--data", other, "--experiment", "table2", "--seeds", "2",
                         "--out", table2, *TINY)
    assert rc == 2 and "not on" in err


def test_robustness_reuses_table2_runs_and_reports_every_condition(table2, data, capsys):
    rc, out, _ = run_cli(capsys, "reproduce", "--data", data, "--experiment", "robustness", "--seeds", "2",
                         "--out", table2, *TINY)
    assert rc == 0 and out.count(": skipped") == 12
    rows = read_csv(table2 / "robustness" / "results.csv")
    conditions = ["clean"] + [c.name for c in CORRUPTIONS]
    assert {(r["method"], r["setting"]) for r in rows} == {(LABELS[m], c) for m in LABELS for c in conditions}
    for r in rows:
        if r["setting"] == "noise-0.2":
            run = Path(r["runs"].split(";")[0])
            assert json.loads((run / "robustness" / "noise-0.2.json").read_text())["n"] == 2
    clean = {r["method"]: r for r in rows if r["setting"] == "clean"}
    t2 = {r["method"]: r for r in read_csv(table2 / "table2" / "results.csv")}
    assert all(clean[m]["DICE_mean"] == t2[m]["DICE_mean"] for m in t2)


def test_table3_and_table4_rows(data, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, _ = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table3", "--out", out, "--seeds", "1",
                       "--preset", "small", "--image-size", "32", "--epochs", "1", "--batch-size", "4")
    assert rc == 0
    rows = read_csv(out / "table3" / "results.csv")
    assert [r["method"] for r in rows] == ["PA3C", "PA3C + SAM", "PA3C + DC", "PA3C + SAM + DC"]
    params = [int(r["parameters"]) for r in rows]
    assert params[0] == params[2] < params[1] == params[3]  # SAM adds parameters, dilation does not
    cfgs = [json.loads((Path(r["runs"]) / "config.json").read_text()) for r in rows]
    assert [(c["use_sam"], c["use_dilation"]) for c in cfgs] == [(False, False), (True, False), (False, True),
                                                                 (True, True)]

    rc, _, _ = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table4", "--out", out, "--seeds", "1",
                       "--shots", "2,4", *TINY)
    assert rc == 0
    rows = read_csv(out / "table4" / "results.csv")
    assert [(r["model"], r["setting"]) for r in rows] == [(m, f"{k}-shot") for k in (2, 4) for m in
                                                         ("pixeldrl", "unet", "attention-unet", "unet++", "swin-unetr")]
    for r in rows:
        splits = json.loads((Path(r["runs"]) / "splits.json").read_text())
        assert len(splits["train"]) == int(r["setting"].split("-")[0])
        assert len(splits["test"]) == 2
    # The same k images for every method of a seed.
    trains = {json.dumps(json.loads((Path(r["runs"]) / "splits.json").read_text())["train"])
              for r in rows if r["setting"] == "2-shot"}
    assert len(trains) == 1
    assert experiment_rows("table4", (2, 4))[0].key == "pixeldrl-k2"
    shutil.rmtree(out)


def test_table4_on_volumes_uses_the_protocols_k_shot(tmp_path):
    """Non-folder layouts (here MSD NIfTI) get k training slices through TrainConfig.k_shot."""
    from synth_datasets import make_msd

    from pixeldrl.data.dataset import load_dataset
    from pixeldrl.experiments.reproduce import Row, Settings, run_config

    data = make_msd(tmp_path / "Task02_Heart", n=4)
    s = Settings(data=str(data), preset="small", image_size=16, epochs=1, seeds=1)
    cfg = run_config(s, Row("unet", "U-Net", k_shot=3), seed=0, out=tmp_path / "rep")
    assert cfg.k_shot == 3 and cfg.data == str(data)
    splits = load_dataset(cfg)
    assert len(splits["train"]) == 3
