"""The ``pixeldrl`` command, run in-process through ``pixeldrl.cli.main`` on tiny synthetic data.

Everything is small on purpose (6 images of 24x24, preset ``small`` at 16x16, one epoch, one
torch thread) so the whole file runs in well under a minute on two busy cores.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixeldrl.cli import main
from pixeldrl.errors import InputError
from pixeldrl.metrics import METRIC_NAMES
from synth_datasets import disk_image, make_folder, save_png

FAST = ["--preset", "small", "--epochs", "1", "--image-size", "16", "--batch-size", "2"]
N_IMAGES = 6
SIZE = 24
RUN_FILES = ["config.json", "splits.json", "log.csv", "training_curve.png", "checkpoint_best.pt",
             "checkpoint_latest.pt", "checkpoint_final.pt", "summary.json", "test_per_image.csv"]
CHECKPOINTS = ["checkpoint_best.pt", "checkpoint_latest.pt", "checkpoint_final.pt"]


# --------------------------------------------------------------------------- helpers


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_input_error(rc: int, err: str, *names: str) -> None:
    """Exit 2, no traceback, one line on stderr naming every one of ``names``."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read_log(run_dir: Path) -> list[dict]:
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests that only read it."""
    base = tmp_path_factory.mktemp("trained")
    data = make_folder(base / "data")
    run_dir = base / "run"
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["train", "--data", str(data), *FAST, "--out", str(run_dir)])
    assert rc == 0, err.getvalue()
    return {"data": data, "run": run_dir, "ckpt": run_dir / "checkpoint_best.pt", "stdout": out.getvalue()}


# --------------------------------------------------------------------------- end to end


def test_train_writes_the_run_folder(trained):
    run_dir = trained["run"]
    assert f"run folder: {run_dir}" in trained["stdout"]
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name

    cfg = json.loads((run_dir / "config.json").read_text())
    assert (cfg["preset"], cfg["epochs"], cfg["image_size"], cfg["batch_size"]) == ("small", 1, 16, 2)
    splits = json.loads((run_dir / "splits.json").read_text())
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 1, "test": 1}
    assert sorted(sum(splits.values(), [])) == [f"img{k}" for k in range(N_IMAGES)]

    log = read_log(run_dir)
    assert [int(r["epoch"]) for r in log] == [1]
    assert math.isfinite(float(log[0]["loss"]))

    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"n", "mean", "per_image"} <= set(summary)
    assert summary["n"] == 1 and [r["name"] for r in summary["per_image"]] == splits["test"]
    assert set(METRIC_NAMES) <= set(summary["mean"])
    with open(run_dir / "test_per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == splits["test"]
    assert float(rows[0]["DICE"]) == pytest.approx(summary["per_image"][0]["DICE"])

    for name in CHECKPOINTS:
        ckpt = torch.load(run_dir / name, weights_only=True)
        assert ckpt["epoch"] == 1 and "model" in ckpt and ckpt["config"]["preset"] == "small"


def test_predict_writes_one_mask_per_input(trained, tmp_path, capsys):
    # Inputs of two sizes, one of them not square: masks come back at each input's own size.
    rng = np.random.default_rng(1)
    inputs = tmp_path / "inputs"
    sizes = {"a.png": (SIZE, SIZE), "b.png": (20, 30), "c.png": (27, 17)}
    for name, shape in sizes.items():
        save_png(inputs / name, disk_image(rng, shape)[0])
    out_dir = tmp_path / "pred"
    rc, out, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], inputs, "--out", out_dir)
    assert rc == 0, err
    assert "3 masks in" in out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(sizes)
    for name, shape in sizes.items():
        with Image.open(out_dir / name) as im:
            assert im.mode == "L"
            mask = np.array(im)
        assert mask.shape == shape and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}


def test_predict_loads_the_checkpoint_once(trained, tmp_path, capsys, torch_loads):
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], trained["data"] / "images",
                         "--out", tmp_path / "pred")
    assert rc == 0, err
    assert torch_loads == [trained["ckpt"]]


def test_predict_save_steps(trained, tmp_path, capsys):
    out_dir = tmp_path / "pred"
    images = trained["data"] / "images"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], images / "img0.png",
                         images / "img1.png", "--out", out_dir, "--save-steps")
    assert rc == 0, err
    assert (out_dir / "img0.png").is_file() and (out_dir / "img1.png").is_file()
    for name in ("img0.png", "img1.png"):
        with Image.open(out_dir / "steps" / name) as im:
            assert im.format == "PNG" and im.width > im.height > 0


def test_evaluate_folders_json(trained, tmp_path, capsys):
    pred = tmp_path / "pred"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], trained["data"] / "images",
                         "--out", pred)
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", trained["data"] / "masks", "--json")
    assert rc == 0, err
    result = json.loads(out)  # exactly one JSON object and nothing else on stdout
    assert {"n", "mean", "per_image"} <= set(result)
    assert result["n"] == N_IMAGES
    assert [r["name"] for r in result["per_image"]] == [f"img{k}" for k in range(N_IMAGES)]
    for m in METRIC_NAMES:
        assert result["mean"][m] == pytest.approx(np.mean([r[m] for r in result["per_image"]]))
    assert 0 <= result["mean"]["DICE"] <= 1

    # Without --json: the text table.
    rc, out, _ = run_cli(capsys, "evaluate", "--pred", pred, "--gt", trained["data"] / "masks")
    assert rc == 0 and "DICE" in out and "HD95" in out


def test_evaluate_checkpoint_json(trained, capsys):
    rc, out, err = run_cli(capsys, "evaluate", "--checkpoint", trained["ckpt"], "--data", trained["data"],
                           "--split", "test", "--json")
    assert rc == 0, err
    result = json.loads(out)
    summary = json.loads((trained["run"] / "summary.json").read_text())
    assert result["n"] == summary["n"] == 1
    assert [r["name"] for r in result["per_image"]] == [r["name"] for r in summary["per_image"]]
    for m in METRIC_NAMES:
        assert result["mean"][m] == pytest.approx(summary["mean"][m])

    rc, out, err = run_cli(capsys, "evaluate", "--checkpoint", trained["ckpt"], "--data", trained["data"],
                           "--split", "train", "--json")
    assert rc == 0, err
    assert json.loads(out)["n"] == 4


def test_info_paper_json(capsys):
    rc, out, err = run_cli(capsys, "info", "--preset", "paper", "--json")
    assert rc == 0, err
    info = json.loads(out)
    counts = info["parameters"]
    assert abs(counts["total"] - 7.14e6) / 7.14e6 < 0.02
    assert {"trunk", "sam", "policy", "value"} <= set(counts)
    assert counts["total"] == sum(counts[k] for k in ("trunk", "sam", "policy", "value"))


def test_info_small(capsys):
    rc, out, err = run_cli(capsys, "info", "--preset", "small")
    assert rc == 0, err
    assert "small" in out
    for key in ("total", "trunk", "sam", "policy", "value"):
        assert key in out
    rc, out, _ = run_cli(capsys, "info", "--preset", "small", "--json")
    assert rc == 0 and 0 < json.loads(out)["parameters"]["total"] < 1e6


# --------------------------------------------------------------------------- --resume


def test_resume_continues_and_a_second_run_is_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", run_dir)
    assert rc == 0, err
    assert [int(r["epoch"]) for r in read_log(run_dir)] == [1]

    args = [a if a != "1" else "2" for a in FAST]  # --epochs 2
    rc, _, err = run_cli(capsys, "train", "--data", data, *args, "--out", run_dir, "--resume")
    assert rc == 0, err
    assert [int(r["epoch"]) for r in read_log(run_dir)] == [1, 2]
    for name in ("checkpoint_latest.pt", "checkpoint_final.pt"):
        assert torch.load(run_dir / name, weights_only=True)["epoch"] == 2
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2

    # A new run into the same folder without --resume: refused, nothing touched.
    before = snapshot(run_dir)
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", run_dir)
    assert_input_error(rc, err, str(run_dir), "--resume")
    assert snapshot(run_dir) == before


def test_resume_without_a_run_is_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", tmp_path / "run", "--resume")
    assert_input_error(rc, err, "checkpoint_latest.pt")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- bad input: train


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())


def _nan_tiff(path: Path) -> None:
    import tifffile

    a = np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32)
    a[3, 4] = np.nan
    tifffile.imwrite(path, a)


def _break_no_mask(data: Path) -> str:
    (data / "masks" / "img3.png").unlink()
    return "img3.png"


def _break_size_mismatch(data: Path) -> str:
    save_png(data / "masks" / "img2.png", np.zeros((SIZE - 4, SIZE), np.uint8))
    return "img2.png"


def _break_unreadable(data: Path) -> str:
    _garbage(data / "images" / "img1.png")
    return "img1.png"


def _break_empty_file(data: Path) -> str:
    (data / "images" / "img0.png").write_bytes(b"")
    return "img0.png"


def _break_nan(data: Path) -> str:
    (data / "images" / "img4.png").unlink()
    _nan_tiff(data / "images" / "img4.tif")
    return "img4.tif"


def _break_no_images(data: Path) -> str:
    for sub in ("images", "masks"):
        for p in (data / sub).iterdir():
            p.unlink()
    return "images"


@pytest.mark.parametrize("breaker", [_break_no_mask, _break_size_mismatch, _break_unreadable, _break_empty_file,
                                     _break_nan, _break_no_images],
                         ids=["no-mask", "size-mismatch", "unreadable", "empty-file", "nan", "no-images"])
def test_train_bad_data(tmp_path, capsys, breaker):
    data = make_folder(tmp_path / "data")
    name = breaker(data)
    run_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", run_dir)
    assert_input_error(rc, err, name)
    assert not run_dir.exists()  # nothing written for a run that never started


def test_train_missing_data_folder(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "--data", tmp_path / "nope", *FAST, "--out", tmp_path / "run")
    assert_input_error(rc, err, "nope")


def test_train_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    rc, _, err = run_cli(capsys, "train", "--data", make_folder(tmp_path / "data"), *FAST, "--out", target)
    assert_input_error(rc, err, "taken")
    assert target.read_text() == "keep me"


def test_train_single_image(tmp_path, capsys):
    # One image: train split only, no val or test. Training completes; there is no test summary.
    data = make_folder(tmp_path / "data", n=1)
    run_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", run_dir)
    assert rc == 0, err
    for name in CHECKPOINTS:
        assert (run_dir / name).is_file()
    assert not (run_dir / "summary.json").exists()


@pytest.mark.parametrize("command", ["train", "info"])
def test_unknown_preset(tmp_path, capsys, command):
    args = ["train", "--data", make_folder(tmp_path / "data"), "--out", tmp_path / "run"] if command == "train" \
        else ["info"]
    rc, _, err = run_cli(capsys, *args, "--preset", "huge")
    assert_input_error(rc, err, "huge")


@pytest.mark.parametrize("options,names", [(["--shards", "0"], "--shards"),
                                           (["--shards", "2", "--workers", "2"], "--shards and --workers")])
def test_impossible_speed_options(tmp_path, capsys, options, names):
    rc, _, err = run_cli(capsys, "train", "--data", make_folder(tmp_path / "data"), *FAST,
                         "--out", tmp_path / "run", *options)
    assert_input_error(rc, err, names)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options,names", [(["--grad-clip", "-1"], "--grad-clip"),
                                           (["--infer-steps", "11"], "--infer-steps"),
                                           (["--grad-steps", "-2"], "--grad-steps"),
                                           (["--init-keep-prob", "1.5"], "init_keep_prob"),
                                           (["--gamma", "2"], "--gamma"),
                                           (["--t-max", "0"], "--t-max"),
                                           (["--entropy-beta", "-0.1"], "--entropy-beta"),
                                           (["--ema-decay", "1"], "--ema-decay"),
                                           (["--zoom-out", "1"], "--zoom-out")])
def test_impossible_recipe_options(tmp_path, capsys, options, names):
    rc, _, err = run_cli(capsys, "train", "--data", make_folder(tmp_path / "data"), *FAST,
                         "--out", tmp_path / "run", *options)
    assert_input_error(rc, err, names)
    assert not (tmp_path / "run").exists()


def test_recipe_options_reach_the_run_and_its_checkpoint(tmp_path, capsys):
    from pixeldrl.checkpoint import agent_from_checkpoint

    run = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", make_folder(tmp_path / "data"), *FAST, "--out", run,
                         "--returns", "multi_step", "--kernel", "learned", "--policy-gradient", "all_actions",
                         "--alive-only", "--init-keep-prob", "0.9", "--gamma", "0.9", "--entropy-beta", "0.02",
                         "--grad-clip", "1", "--grad-steps", "3", "--infer-steps", "4", "--pixel-done",
                         "--mask-dead", "--ema-decay", "0.9", "--t-max", "6", "--augment", "--zoom-out", "0.3",
                         "--value-loss", "huber", "--coarse-mode", "crop")
    assert rc == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert {k: cfg[k] for k in ("returns", "kernel", "policy_gradient", "alive_only", "init_keep_prob", "gamma",
                                "entropy_beta", "grad_clip", "grad_steps", "infer_steps", "pixel_done", "mask_dead",
                                "ema_decay", "t_max", "augment", "zoom_out", "value_loss", "coarse_mode")} == {
        "returns": "multi_step", "kernel": "learned", "policy_gradient": "all_actions", "alive_only": True,
        "init_keep_prob": 0.9, "gamma": 0.9, "entropy_beta": 0.02, "grad_clip": 1.0, "grad_steps": 3,
        "infer_steps": 4, "pixel_done": True, "mask_dead": True, "ema_decay": 0.9, "t_max": 6, "augment": True,
        "zoom_out": 0.3, "value_loss": "huber", "coarse_mode": "crop"}
    agent, loaded = agent_from_checkpoint(run / "checkpoint_best.pt")
    assert loaded.infer_steps == 4 and agent.return_kernel.mode == "learned"
    assert int(read_log(run)[0]["val_steps"]) == 4


@pytest.mark.parametrize("field,value,name", [("lr_schedule", "linear", "--lr-schedule"), ("norm", "layer", "norm")])
def test_unknown_schedule_or_normalisation_in_a_config_is_refused(field, value, name):
    from pixeldrl.config import make_config

    with pytest.raises(InputError, match=name):
        make_config("small", **{field: value})


def test_schedule_and_normalisation_options_reach_the_run(tmp_path, capsys):
    import torch

    from pixeldrl.checkpoint import agent_from_checkpoint

    run = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", make_folder(tmp_path / "data"), *FAST, "--out", run,
                         "--epochs", "2", "--lr", "0.004", "--lr-schedule", "cosine", "--norm", "batch")
    assert rc == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["lr_schedule"], cfg["norm"]) == ("cosine", "batch")
    # Half a cosine over the 2 epochs: the full rate, then half of it.
    assert [float(r["lr"]) for r in read_log(run)] == pytest.approx([0.004, 0.002])
    agent, _ = agent_from_checkpoint(run / "checkpoint_best.pt")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in agent.modules())


# --------------------------------------------------------------------------- bad input: predict


@pytest.mark.parametrize("breaker", [_break_unreadable, _break_empty_file, _break_nan],
                         ids=["unreadable", "empty-file", "nan"])
def test_predict_bad_image(trained, tmp_path, capsys, breaker):
    data = make_folder(tmp_path / "data")
    name = breaker(data)
    out_dir = tmp_path / "pred"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], data / "images", "--out", out_dir)
    assert_input_error(rc, err, name)
    assert not out_dir.exists() or not any(out_dir.iterdir())  # no partial output


def test_predict_missing_input(trained, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], tmp_path / "nope.png",
                         "--out", tmp_path / "pred")
    assert_input_error(rc, err, "nope.png")


def test_predict_missing_checkpoint(trained, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", tmp_path / "missing.pt", trained["data"] / "images",
                         "--out", tmp_path / "pred")
    assert_input_error(rc, err, "missing.pt")
    assert not (tmp_path / "pred").exists()


def test_predict_corrupt_checkpoint(trained, tmp_path, capsys):
    bad = tmp_path / "corrupt.pt"
    _garbage(bad)
    before = bad.read_bytes()
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", bad, trained["data"] / "images", "--out", tmp_path / "pred")
    assert_input_error(rc, err, "corrupt.pt")
    assert bad.read_bytes() == before
    assert not (tmp_path / "pred").exists()


def test_not_a_pixeldrl_checkpoint(trained, tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", other, trained["data"] / "images", "--out", tmp_path / "p")
    assert_input_error(rc, err, "other.pt")


def test_failing_commands_leave_the_checkpoints_alone(trained, tmp_path, capsys):
    run_dir, data = trained["run"], trained["data"]
    before = {name: (run_dir / name).read_bytes() for name in CHECKPOINTS}
    bad = make_folder(tmp_path / "bad")
    _break_unreadable(bad)
    existing = tmp_path / "existing"
    save_png(existing / "img0.png", np.zeros((4, 4), np.uint8))
    failing = [
        ["train", "--data", data, *FAST, "--out", run_dir],  # run folder taken, no --resume
        ["train", "--data", bad, *FAST, "--out", run_dir, "--resume", "--epochs", "2"],
        ["predict", "--checkpoint", run_dir / "checkpoint_best.pt", bad / "images", "--out", tmp_path / "p1"],
        ["predict", "--checkpoint", run_dir / "checkpoint_best.pt", data / "images", "--out", existing],
        ["predict", "--checkpoint", run_dir / "checkpoint_best.pt", data / "images", "--out", data / "images"],
        ["predict", "--checkpoint", run_dir / "checkpoint_best.pt", run_dir / "checkpoint_final.pt", "--out", run_dir],
        ["evaluate", "--checkpoint", run_dir / "checkpoint_best.pt", "--data", bad],
        ["evaluate", "--checkpoint", run_dir / "checkpoint_best.pt", "--data", data, "--split", "nope"],
    ]
    for args in failing:
        rc, _, err = run_cli(capsys, *args)
        assert_input_error(rc, err)
    assert {name: (run_dir / name).read_bytes() for name in CHECKPOINTS} == before
    assert [int(r["epoch"]) for r in read_log(run_dir)] == [1]


def test_predict_refuses_to_overwrite(trained, tmp_path, capsys):
    out_dir = tmp_path / "pred"
    save_png(out_dir / "img3.png", np.full((5, 5), 7, np.uint8))
    before = snapshot(out_dir)
    args = ["predict", "--checkpoint", trained["ckpt"], trained["data"] / "images", "--out", out_dir]
    rc, _, err = run_cli(capsys, *args)
    assert_input_error(rc, err, "img3.png", "--overwrite")
    assert snapshot(out_dir) == before  # the existing file unchanged, and nothing else written

    rc, _, err = run_cli(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert len(list(out_dir.glob("*.png"))) == N_IMAGES
    with Image.open(out_dir / "img3.png") as im:
        assert im.size == (SIZE, SIZE)


def test_predict_refuses_out_equal_to_input_folder(trained, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    before = snapshot(data)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], data / "images",
                         "--out", data / "images", "--overwrite")
    assert_input_error(rc, err, "img0.png")
    assert snapshot(data) == before


def test_predict_refuses_to_overwrite_steps(trained, tmp_path, capsys):
    out_dir = tmp_path / "pred"
    save_png(out_dir / "steps" / "img1.png", np.zeros((3, 3), np.uint8))
    before = snapshot(out_dir)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], trained["data"] / "images",
                         "--out", out_dir, "--save-steps")
    assert_input_error(rc, err, "img1.png", "--overwrite")
    assert snapshot(out_dir) == before


def test_predict_out_is_a_file(trained, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], trained["data"] / "images",
                         "--out", target)
    assert_input_error(rc, err, "taken")
    assert target.read_text() == "keep me"


def test_predict_bad_batch_size(trained, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], trained["data"] / "images",
                         "--out", tmp_path / "pred", "--batch-size", "0")
    assert_input_error(rc, err, "--batch-size")


# --------------------------------------------------------------------------- bad input: evaluate


def test_evaluate_missing_prediction(trained, tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(trained["data"] / "masks", pred)
    (pred / "img5.png").unlink()
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", trained["data"] / "masks", "--json")
    assert_input_error(rc, err, "img5")
    assert out == ""


def test_evaluate_size_mismatch(trained, tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(trained["data"] / "masks", pred)
    save_png(pred / "img2.png", np.zeros((SIZE, SIZE + 3), np.uint8))
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", trained["data"] / "masks", "--json")
    assert_input_error(rc, err, "img2.png")
    assert out == ""


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_evaluate_missing_folder(trained, tmp_path, capsys, which):
    folders = {"pred": trained["data"] / "masks", "gt": trained["data"] / "masks", which: tmp_path / "nope"}
    rc, _, err = run_cli(capsys, "evaluate", "--pred", folders["pred"], "--gt", folders["gt"])
    assert_input_error(rc, err, "nope")


def test_evaluate_checkpoint_missing_data(trained, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", trained["ckpt"], "--data", tmp_path / "nope")
    assert_input_error(rc, err, "nope")


def test_evaluate_empty_split(trained, tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=2)  # 1 train, 0 val, 1 test
    rc, out, err = run_cli(capsys, "evaluate", "--checkpoint", trained["ckpt"], "--data", data, "--split", "val",
                           "--json")
    assert_input_error(rc, err, "--split val")
    assert out == ""


def test_evaluate_csv(trained, tmp_path, capsys):
    masks = trained["data"] / "masks"
    target = tmp_path / "new" / "dir" / "result.csv"  # folders are created
    rc, out, err = run_cli(capsys, "evaluate", "--pred", masks, "--gt", masks, "--csv", target, "--json")
    assert rc == 0, err
    assert json.loads(target.with_suffix(".json").read_text()) == json.loads(out)
    with open(target, newline="") as f:
        assert len(list(csv.DictReader(f))) == N_IMAGES

    # The JSON is written beside the CSV with the suffix swapped: a name not ending in .csv is refused.
    other = tmp_path / "result.json"
    rc, _, err = run_cli(capsys, "evaluate", "--pred", masks, "--gt", masks, "--csv", other)
    assert_input_error(rc, err, "--csv")
    assert not other.exists()


# --------------------------------------------------------------------------- --device


@pytest.mark.parametrize("device", ["cuda", "gpu"])
@pytest.mark.parametrize("command", ["train", "predict", "evaluate"])
def test_unusable_device(trained, tmp_path, capsys, monkeypatch, command, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine, wherever the test runs
    ckpt, data = trained["ckpt"], trained["data"]
    args = {
        "train": ["train", "--data", data, *FAST, "--out", tmp_path / "run"],
        "predict": ["predict", "--checkpoint", ckpt, data / "images", "--out", tmp_path / "pred"],
        "evaluate": ["evaluate", "--checkpoint", ckpt, "--data", data],
    }[command]
    before = ckpt.read_bytes()
    rc, _, err = run_cli(capsys, *args, "--device", device)
    assert_input_error(rc, err, f"--device {device}")
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "pred").exists()


def test_resume_uses_the_runs_own_config(tmp_path, capsys):
    # The first run used --image-size 16 and --preset small; resuming with only --epochs must keep them.
    data = make_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", run_dir)
    assert rc == 0, err
    # A run from before --compile was retired has the key in its config.json; it still resumes.
    old = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**old, "compile": True}))
    rc, _, err = run_cli(capsys, "train", "--data", data, "--epochs", "2", "--out", run_dir, "--resume")
    assert rc == 0, err
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["preset"] == "small" and cfg["image_size"] == 16 and cfg["epochs"] == 2
    assert "compile" not in cfg
    assert [int(r["epoch"]) for r in read_log(run_dir)] == [1, 2]


def test_resume_refuses_an_option_it_would_ignore(tmp_path, capsys):
    # --resume trains on with the run's stored settings: another --ema-decay or --lr given with it
    # would be silently ignored, so it is refused by name and the run is left as it was.
    data = make_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", run_dir)
    assert rc == 0, err
    before = snapshot(run_dir)
    rc, _, err = run_cli(capsys, "train", "--data", data, "--epochs", "2", "--ema-decay", "0.9", "--lr", "0.001",
                         "--out", run_dir, "--resume")
    assert_input_error(rc, err, "--ema-decay 0.9", "--lr 0.001", str(run_dir / "config.json"))
    assert snapshot(run_dir) == before
    # The run's own values, the budget and TensorBoard may be given.
    own = json.loads((run_dir / "config.json").read_text())["ema_decay"]
    rc, _, err = run_cli(capsys, "train", "--data", data, *[a if a != "1" else "2" for a in FAST], "--ema-decay", own,
                         "--tensorboard", "--out", run_dir, "--resume")
    assert rc == 0, err
    assert [int(r["epoch"]) for r in read_log(run_dir)] == [1, 2]
    assert (run_dir / "tensorboard").is_dir()


def test_predict_save_prob_and_removal_agree_with_the_mask(trained, tmp_path, capsys):
    import tifffile

    out = tmp_path / "pred"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained["ckpt"], trained["data"] / "images", "--out", out,
                         "--save-prob", "--save-steps")
    assert rc == 0, err
    for i in range(N_IMAGES):
        mask = np.array(Image.open(out / f"img{i}.png")) > 0
        prob = tifffile.imread(out / "prob" / f"img{i}.tif")
        removal = np.array(Image.open(out / "removal" / f"img{i}.png"))
        assert prob.dtype == np.float32 and prob.shape == mask.shape == (SIZE, SIZE)
        assert ((prob > 0.5) == mask).all() and ((removal == 0) == mask).all()
        assert removal.max() <= torch.load(trained["ckpt"], weights_only=True)["infer_steps"]


def test_every_option_has_help_and_each_command_an_example():
    import argparse

    from pixeldrl.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert "example:" in (p.epilog or ""), name
        missing = [a.option_strings or a.dest for a in p._actions if not a.help]
        assert not missing, (name, missing)
    groups = [g.title for g in sub.choices["train"]._action_groups]
    assert {"data", "model", "optimisation", "speed (--amp and --workers also change the numbers a run learns; the rest only how fast)", "run"} <= set(groups)


def test_version_and_quiet(capsys):
    from pixeldrl import __version__
    from pixeldrl.progress import bar, set_quiet

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"pixeldrl {__version__}"
    try:
        set_quiet(True)
        assert bar(range(3)).disable
    finally:
        set_quiet(False)
    assert bar(range(3), enabled=False).disable


def test_train_config_reruns_a_runs_settings_and_says_the_device(trained, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "train", "--data", trained["data"], "--config", trained["run"] / "config.json",
                           "--seed", "3", "--out", tmp_path / "again")
    assert rc == 0, err
    assert "device: cpu (--device auto)" in out
    old = json.loads((trained["run"] / "config.json").read_text())
    new = json.loads((tmp_path / "again" / "config.json").read_text())
    assert {k for k in old if old[k] != new[k]} == {"seed", "out"} and new["seed"] == 3


def test_tensorboard_logs_scalars_and_step_images(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_folder(tmp_path / "data")
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--epochs", "2", "--tensorboard", "--out",
                         tmp_path / "run")
    assert rc == 0, err
    ev = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(ev.Tags()["scalars"])
    assert {"loss", "policy_loss", "value_loss", "mean_reward", "train_dice", "val_dice", "optim/lr"} <= scalars
    assert [e.step for e in ev.Scalars("loss")] == [1, 2]
    logged = [e.value for e in ev.Scalars("train_dice")]
    assert logged == pytest.approx([float(r["train_dice"]) for r in read_log(tmp_path / "run")], rel=1e-5)
    (tag,) = ev.Tags()["images"]
    assert len(ev.Images(tag)) == 2


def test_two_phase_training_matches_step_by_step(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    for name, extra in (("steps", []), ("two", ["--two-phase"])):
        rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--epochs", "2", *extra, "--out", tmp_path / name)
        assert rc == 0, err
    a, b = read_log(tmp_path / "steps"), read_log(tmp_path / "two")
    for key in ("loss", "policy_loss", "value_loss", "mean_reward"):
        # (weights are not compared: Adam turns float-rounding differences of near-zero gradients into
        # lr-sized steps; tests/rl/test_pa3c.py compares the gradients themselves)
        assert [float(r[key]) for r in a] == pytest.approx([float(r[key]) for r in b], rel=1e-4, abs=1e-6)
