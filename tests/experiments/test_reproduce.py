"""Baselines, corruptions and the ``pixeldrl reproduce`` runner on tiny data with tiny budgets.

Data: 10 disks of 24×24 (7 train / 1 val / 2 test), networks at 64×64 (the smallest size
Swin-UNETR takes), one epoch, one torch thread. The table2 run is shared by the tests of this
module (built once), so the whole file takes about a minute on two busy cores.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pixeldrl.cli import main
from pixeldrl.config import MODELS, make_config
from pixeldrl.errors import InputError
from pixeldrl.experiments.corruptions import CORRUPTIONS, Corruption, corrupt, intensity_spread
from pixeldrl.metrics import METRIC_NAMES
from pixeldrl.data.dataset import load_dataset
from pixeldrl.experiments.reproduce import LABELS, auto_image_size, experiment_rows
from pixeldrl.metrics import evaluate_pairs
from pixeldrl.rl.pa3c import segment
from pixeldrl.checkpoint import agent_from_checkpoint
from synth_datasets import disk_image, make_folder, save_png
from test_cli import RUN_FILES, run_cli

TINY = ["--preset", "small", "--image-size", "64", "--batch-size", "4", "--epochs", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("disks") / "data", n=10)


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
    (["train", "--data", "{data}", "--model", "unet", "--image-size", "24", "--epochs", "1"], "multiple of 16"),
    (["train", "--data", "{data}", "--model", "unet++", "--image-size", "24", "--epochs", "1"], "at least 32"),
    (["reproduce", "--data", "{data}", "--experiment", "table4", "--shots", "50", *TINY], "only 7 slices"),
    (["reproduce", "--data", "{data}", "--experiment", "table4", "--shots", "a,b"], "comma-separated"),
    (["reproduce", "--data", "{data}", "--experiment", "table2", "--seeds", "0"], "--seeds"),
    (["reproduce", "--data", "{data}", "--experiment", "table2", "--lr", "-1", *TINY], "--lr must be"),
    (["reproduce", "--data", "{data}", "--experiment", "table3", "--t-max", "0", *TINY], "--t-max must be"),
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
    rc, _, _ = run_cli(capsys, "train", "--data", data, "--model", "pixelrl", "--preset", "small",
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
    ckpt = table2 / "runs" / "unet" / "e1-lr0.004-seed0" / "checkpoint_best.pt"
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
    unfinished = table2 / "runs" / "unet" / "e1-lr0.004-seed1"
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
    other = make_folder(table2.parent / "other", n=10, seed=1)
    rc, _, err = run_cli(capsys, "reproduce", "--data", other, "--experiment", "table2", "--seeds", "2",
                         "--out", table2, *TINY)
    assert rc == 2 and "not on" in err


def test_a_pa3c_run_with_another_recipe_is_not_reused(tmp_path):
    # The PA3C methods' stored t_max / weight average must match the preset's; the U-Nets ignore them.
    from pixeldrl.experiments.reproduce import _check_same

    run = tmp_path / "run"
    run.mkdir()
    for model, refused in (("pixeldrl", True), ("pixelrl", True), ("unet", False)):
        cfg = make_config("small", model=model, data=str(tmp_path), epochs=1)
        for key, value in (("t_max", cfg.t_max + 7), ("preset", "medium")):
            (run / "config.json").write_text(json.dumps({**cfg.to_dict(), key: value}))
            if refused:
                with pytest.raises(InputError, match=key):
                    _check_same(cfg, run)
            else:
                _check_same(cfg, run)
    # A stored config from before the weight average existed trained without it.
    cfg = make_config("small", data=str(tmp_path), epochs=1, ema_decay=0.95)
    stored = cfg.to_dict()
    del stored["ema_decay"]
    (run / "config.json").write_text(json.dumps(stored))
    with pytest.raises(InputError, match="ema_decay"):
        _check_same(cfg, run)


def test_presets_and_rates_share_one_out_and_each_method_takes_its_own_rate(data, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["reproduce", "--data", data, "--experiment", "table2", "--seeds", "1", "--models", "pixeldrl,unet",
            "--out", out, "--image-size", "64", "--batch-size", "4", "--epochs", "1"]
    rc, _, _ = run_cli(capsys, *base, "--preset", "small")  # small's own rate, 4e-3, for both
    assert rc == 0
    # Another preset, PixelDRL-MG at its own rate: the U-Net run is shared.
    rc, printed, _ = run_cli(capsys, *base, "--preset", "medium", "--lr", "0.004", "--method-lr", "pixeldrl=0.002")
    assert rc == 0
    assert "U-Net full seed 0: skipped" in printed and "PixelDRL-MG full seed 0: trained" in printed, printed
    runs = out / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["pixeldrl-medium", "pixeldrl-small", "unet"]
    cfg = json.loads((runs / "pixeldrl-medium" / "e1-lr0.002-seed0" / "config.json").read_text())
    assert (cfg["preset"], cfg["lr"]) == ("medium", 0.002)
    rows = {r["method"]: r for r in read_csv(out / "table2" / "results.csv")}
    assert int(rows["PixelDRL-MG"]["parameters"]) == 1_149_123
    assert "Adam lr 0.002 (PixelDRL-MG) and 0.004 (U-Net)" in (out / "table2" / "results.md").read_text()
    # Another rate for the U-Net: a run beside the first, which stays.
    rc, printed, _ = run_cli(capsys, *base, "--preset", "medium", "--lr", "0.002")
    assert rc == 0 and "U-Net full seed 0: trained" in printed and "PixelDRL-MG full seed 0: skipped" in printed
    assert sorted(p.name for p in (runs / "unet").iterdir()) == ["e1-lr0.002-seed0", "e1-lr0.004-seed0"]
    # A folder named without preset and rate (an --out of an earlier version) is reused for its own settings.
    (runs / "pixeldrl-small" / "e1-lr0.004-seed0").rename(runs / "pixeldrl-small" / "old")
    (runs / "pixeldrl").mkdir()
    (runs / "pixeldrl-small" / "old").rename(runs / "pixeldrl" / "e1-seed0")
    rc, printed, _ = run_cli(capsys, *base, "--preset", "small")
    assert rc == 0 and "PixelDRL-MG full seed 0: skipped" in printed, printed
    assert not (runs / "pixeldrl-small" / "e1-lr0.004-seed0").exists()
    for bad in ("pixeldrl", "segformer=0.002", "unet=-1", "unet=fast"):
        rc, _, err = run_cli(capsys, *base, "--method-lr", bad)
        assert rc == 2 and "--method-lr" in err and "not METHOD=RATE" in err, err


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
    # Every condition, clean included, is scored on the test split at network size (64×64 here), so
    # the clean column is the greedy segmentation of the network-size test slices.
    clean = {r["method"]: r for r in rows if r["setting"] == "clean"}
    assert set(clean) == set(LABELS.values())
    run = Path(clean["U-Net"]["runs"].split(";")[0])
    stored = json.loads((run / "robustness" / "clean.json").read_text())
    assert stored["resolution"] == "network 64x64" and stored["n"] == 2
    assert float(clean["U-Net"]["DICE_mean"]) == pytest.approx(
        np.mean([json.loads((Path(r) / "robustness" / "clean.json").read_text())["mean"]["DICE"]
                 for r in clean["U-Net"]["runs"].split(";")]), abs=1e-12)
    agent, cfg = agent_from_checkpoint(run / "checkpoint_best.pt")
    test = load_dataset(cfg)["test"]
    preds = segment(agent, test.images, cfg.infer_steps).mask.numpy()
    direct = evaluate_pairs(list(preds), list(test.masks.numpy() > 0.5), test.names)
    assert stored["mean"] == pytest.approx(direct["mean"])
    assert "64×64 input size" in (table2 / "robustness" / "results.md").read_text()


def test_models_limits_the_rows_and_says_which_are_left_out(data, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, _ = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table2", "--seeds", "1",
                       "--models", "unet,pixeldrl", "--out", out, *TINY)
    assert rc == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["pixeldrl-small", "unet"]
    rows = read_csv(out / "table2" / "results.csv")
    assert [r["method"] for r in rows] == ["PixelDRL-MG", "U-Net"]  # table order, not the option's
    md = (out / "table2" / "results.md").read_text()
    assert "PixelRL, Attention U-Net, UNet++, Swin-UNETR not trained or shown" in md
    for args, message in ((("--experiment", "table2", "--models", "unet,segformer"), "unknown method 'segformer'"),
                          (("--experiment", "table3", "--models", "unet"), "table3 has no row")):
        rc, _, err = run_cli(capsys, "reproduce", "--data", data, "--out", out, *args, *TINY)
        assert rc == 2 and message in err, err


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


def test_table4_uses_the_protocols_k_shot_for_every_layout(tmp_path):
    """Volumes (here MSD NIfTI) and 2-D folders alike get k training slices through TrainConfig.k_shot:
    one draw, the same k slices for every method and seed."""
    from synth_datasets import make_msd

    from pixeldrl.data.dataset import load_dataset
    from pixeldrl.experiments.reproduce import Row, Settings, run_config

    data = make_msd(tmp_path / "Task02_Heart", n=4)
    s = Settings(data=str(data), preset="small", image_size=32, epochs=1, seeds=1)
    cfg = run_config(s, Row("unet", "U-Net", k_shot=3), seed=0, out=tmp_path / "rep")
    assert cfg.k_shot == 3 and cfg.data == str(data)
    splits = load_dataset(cfg)
    assert len(splits["train"]) == 3
    folder = make_folder(tmp_path / "disks", n=10)
    names = []
    for seed, model in ((0, "unet"), (1, "pixeldrl")):
        s = Settings(data=str(folder), preset="small", image_size=32, epochs=1, seeds=2)
        cfg = run_config(s, Row(model, LABELS[model], k_shot=2), seed=seed, out=tmp_path / "rep2")
        assert cfg.k_shot == 2 and cfg.data == str(folder)
        names.append(load_dataset(cfg)["train"].names)
    assert len(names[0]) == 2 and names[0] == names[1]  # same k slices for every method and seed


def test_recipe_options_set_every_row_and_default_to_the_presets(tmp_path):
    """``--lr``, ``--coarse-epochs``, ``--coarse-mode``, ``--zoom-out`` and ``--grad-clip`` reach every method
    alike (the shared budget), ``--t-max`` the PA3C methods' episodes; without them each run keeps the preset's
    values, and a stored run trained with other values is not reused."""
    from pixeldrl.experiments.reproduce import Row, Settings, ensure_run, run_config

    folder = make_folder(tmp_path / "disks", n=10)
    preset = make_config("small")
    tuned = Settings(data=str(folder), preset="small", image_size=64, epochs=1, seeds=1, lr=6e-3, t_max=2,
                     coarse_epochs=1, coarse_mode="crop", zoom_out=0.5, grad_clip=1.0)
    for model in ("pixeldrl", "pixelrl", "unet", "attention-unet"):
        cfg = run_config(tuned, Row(model, LABELS[model]), seed=0, out=tmp_path / "rep")
        assert (cfg.lr, cfg.t_max, cfg.coarse_epochs, cfg.zoom_out, cfg.grad_clip) == (6e-3, 2, 1, 0.5, 1.0)
        assert cfg.coarse_mode == "crop"
        plain = run_config(Settings(data=str(folder), preset="small", image_size=64, epochs=1, seeds=1),
                           Row(model, LABELS[model]), seed=0, out=tmp_path / "rep")
        recipe = ("lr", "t_max", "coarse_epochs", "zoom_out", "grad_clip", "coarse_mode")
        assert ([getattr(plain, k) for k in recipe] == [getattr(preset, k) for k in recipe]
                != [6e-3, 2, 1, 0.5, 1.0, "crop"])
    run, how = ensure_run(run_config(tuned, Row("pixeldrl", "PixelDRL-MG"), seed=0, out=tmp_path / "rep"),
                          progress=False)
    assert how == "trained" and json.loads((run / "config.json").read_text())["t_max"] == 2
    longer = dataclasses.replace(tuned, t_max=3)
    with pytest.raises(InputError, match="t_max=2"):
        ensure_run(run_config(longer, Row("pixeldrl", "PixelDRL-MG"), seed=0, out=tmp_path / "rep"), progress=False)
    unzoomed = dataclasses.replace(tuned, zoom_out=None)
    with pytest.raises(InputError, match="zoom_out=0.5"):
        ensure_run(run_config(unzoomed, Row("pixeldrl", "PixelDRL-MG"), seed=0, out=tmp_path / "rep"), progress=False)
    unclipped = dataclasses.replace(tuned, grad_clip=5.0)
    with pytest.raises(InputError, match="grad_clip=1.0"):
        ensure_run(run_config(unclipped, Row("pixeldrl", "PixelDRL-MG"), seed=0, out=tmp_path / "rep"), progress=False)
    shrunk = dataclasses.replace(tuned, coarse_mode="shrink")
    with pytest.raises(InputError, match="coarse_mode='crop'"):
        ensure_run(run_config(shrunk, Row("pixeldrl", "PixelDRL-MG"), seed=0, out=tmp_path / "rep"), progress=False)


# --------------------------------------------------------------------------- volumes and the input size


def make_sized_dataset(root: Path, shapes, seed: int = 0) -> Path:
    """A flat 2-D folder with one disk image per (H, W) in ``shapes``."""
    rng = np.random.default_rng(seed)
    for k, shape in enumerate(shapes):
        img, mask = disk_image(rng, shape)
        save_png(root / "images" / f"img{k}.png", img)
        save_png(root / "masks" / f"img{k}.png", mask)
    return root


def test_auto_image_size_follows_the_data_and_caps_at_the_preset(tmp_path):
    from synth_datasets import make_msd

    cases = [([(64, 64)] * 3, "paper", 64),  # already fine: kept
             ([(40, 50), (30, 30)], "paper", 64),  # the largest side, at least 64
             ([(100, 90), (20, 20)], "paper", 128),  # rounded up to a multiple of 32
             ([(300, 200)], "paper", 256),  # capped at the preset's size
             ([(300, 200)], "small", 128)]
    for i, (shapes, preset, want) in enumerate(cases):
        size, why = auto_image_size(make_sized_dataset(tmp_path / f"d{i}", shapes), preset)
        assert size == want, (shapes, preset, why)
        assert str(max(max(sh) for sh in shapes)) in why
    size, why = auto_image_size(make_msd(tmp_path / "Task02_Heart", n=2), "small")  # 16 × 16 in-plane
    assert size == 64 and "16" in why and "Swin-UNETR" in why


def test_largest_in_plane_reads_every_layout(tmp_path):
    from synth_datasets import make_lgg, make_msd, make_nnunet, make_nnunet_png, make_paired

    from pixeldrl.data.dataset import largest_in_plane
    from pixeldrl.data.protocol import Protocol
    from pixeldrl.data.store import prepare

    msd = make_msd(tmp_path / "msd", n=2)
    for root in (msd, make_nnunet(tmp_path / "nnunet", n=2), make_nnunet_png(tmp_path / "png", n=2),
                 make_lgg(tmp_path / "lgg", n=2), make_paired(tmp_path / "paired", n=2)):
        assert largest_in_plane(root) == 16, root  # volumes of 16 × 16 × 6
    assert largest_in_plane(msd, axis=0) == 16  # (Y, Z) = (16, 6)
    store = prepare(msd, tmp_path / "store", Protocol(image_size=24), progress=False)
    assert largest_in_plane(store) == 16  # the slices' original side, not the store's 24
    store = prepare(msd, tmp_path / "store8", Protocol(image_size=8), progress=False)
    assert largest_in_plane(store) == 8  # never more than the store holds
    assert largest_in_plane(make_sized_dataset(tmp_path / "folder", [(20, 30), (50, 10)])) == 50


def test_reproduce_without_image_size_uses_the_data_size(tmp_path, capsys):
    """64×64 images train at 64×64, not at the preset's size (small: 128, paper: 256), and it is said.

    (The small preset keeps this fast; the paper preset's cap is checked above.)
    """
    data = make_sized_dataset(tmp_path / "data", [(64, 64)] * 6)
    out = tmp_path / "out"
    rc, printed, _ = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table3", "--seeds", "1",
                             "--preset", "small", "--epochs", "1", "--batch-size", "4", "--out", out)
    assert rc == 0
    note = [line for line in printed.splitlines() if "NOTE" in line]
    assert len(note) == 1 and "64×64" in note[0] and "largest in-plane side is 64" in note[0], printed
    runs = sorted((out / "runs").glob("*/e1-lr0.004-seed0"))
    assert len(runs) == 4
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        assert (cfg["image_size"], cfg["preset"]) == (64, "small")
    assert "64×64 input (chosen from the data" in (out / "table3" / "results.md").read_text()


def test_reproduce_on_volumes_writes_results_and_robustness(tmp_path, capsys):
    """An MSD data set (NIfTI volumes) end to end: the figure and robustness read the protocol's slices."""
    from synth_datasets import make_msd

    from pixeldrl.experiments.reproduce import load_test_split, robustness_results

    data = make_msd(tmp_path / "Task02_Heart", n=4)  # 4 patients of 16 × 16 × 6: 2 / 1 / 1 split, 4 test slices
    out = tmp_path / "out"
    rc, printed, err = run_cli(capsys, "reproduce", "--data", data, "--experiment", "table3", "--seeds", "1",
                               "--preset", "small", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                               "--out", out)
    assert rc == 0, err
    assert "NOTE" not in printed  # an explicit --image-size is used as given
    exp = out / "table3"
    for f in ("results.md", "results.csv", "bars.png", "comparison.png"):
        assert (exp / f).is_file(), f
    md = (exp / "results.md").read_text()
    assert "32×32 input (from --image-size)" in md and "HD95 in mm" in md
    rows = read_csv(exp / "results.csv")
    assert [r["method"] for r in rows] == ["PA3C", "PA3C + SAM", "PA3C + DC", "PA3C + SAM + DC"]

    # The robustness step on one of these runs (the whole robustness experiment trains six models).
    run = Path(rows[-1]["runs"])
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["image_size"], cfg["source_format"]) == (32, "msd")
    test = load_test_split(make_config("small", data=str(data), image_size=32), str(data))
    assert len(test) == 4 and test.images.shape[1:] == (1, 32, 32)
    noise = Corruption("noise", 0.2)
    res = robustness_results(run, test, [noise])
    assert set(res) == {"clean", "noise-0.2"}
    for r in res.values():
        assert r["n"] == 4 and r["resolution"] == "network 32x32" and 0 <= r["mean"]["DICE"] <= 1
    stamp = (run / "robustness" / "noise-0.2.json").stat().st_mtime_ns
    assert robustness_results(run, test, [noise]) == res  # cached
    assert (run / "robustness" / "noise-0.2.json").stat().st_mtime_ns == stamp
