"""Every volume layout end to end through the CLI: prepare, train (raw and prepared), predict, evaluate.

Tiny on purpose (3-5 volumes of 16 × 16 × 6, preset ``small`` at 16 × 16, one epoch, one torch thread).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from pixeldrl.cli import main
from pixeldrl.errors import InputError
from synth_datasets import AFFINE, SHAPE, make_lgg, make_msd, make_nnunet, make_nnunet_png, make_paired, save_png

FAST = ["--preset", "small", "--epochs", "1", "--image-size", "16", "--batch-size", "4"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


LAYOUTS = {
    # name: (maker, input for predict relative to the root, expected output names)
    # 4 channels in one 4-D file, like Task01_BrainTumour
    "msd": (lambda r: make_msd(r, n=4, channels=4), "imagesTr", [f"la_{k:03d}.nii.gz" for k in range(4)]),
    "nnunet": (lambda r: make_nnunet(r, n=4), "imagesTr", [f"case_{k:03d}.nii.gz" for k in range(4)]),
    "paired": (lambda r: make_paired(r, n=4, ext=".nii"), "images", [f"case{k}.nii" for k in range(4)]),
    "lgg": (lambda r: make_lgg(r, n=4), "kaggle_3m/TCGA_XX_0001", [f"TCGA_XX_0001_{z}.tif" for z in range(1, 7)]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_end_to_end(tmp_path, capsys, torch_loads, layout):
    maker, pred_input, expected = LAYOUTS[layout]
    root = maker(tmp_path / "raw")
    rc, _, err = run(capsys, "train", "--data", root, *FAST, "--out", tmp_path / "run")
    assert rc == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["source_format"] == layout and cfg["modality"] == "mri"
    assert cfg["in_channels"] == {"msd": 4, "nnunet": 2, "paired": 1, "lgg": 3}[layout]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["hd95_unit"] == "mm" and len(summary["per_volume"]) == 1

    ckpt = tmp_path / "run" / "checkpoint_best.pt"
    torch_loads.clear()
    rc, out, err = run(capsys, "predict", "--checkpoint", ckpt, root / pred_input, "--out", tmp_path / "pred")
    assert rc == 0, err
    assert torch_loads == [ckpt]  # the checkpoint is read once per predict (also for LGG's TIFF slices)
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == sorted(expected)
    if layout != "lgg":
        back = nib.load(str(tmp_path / "pred" / expected[0]))
        assert back.shape == SHAPE
        np.testing.assert_allclose(back.affine, AFFINE)
        assert set(np.unique(np.asarray(back.dataobj))) <= {0, 1}

    rc, out, err = run(capsys, "evaluate", "--checkpoint", ckpt, "--data", root, "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["n"] == 4 and len(result["per_volume"]) == 1  # 4 patients -> 3/0/1: one test volume
    assert set(result["volume_mean"]) == {"DICE", "PPV", "SEN", "IoU", "BIoU", "HD95"}


def test_prepared_store_end_to_end(tmp_path, capsys):
    root = make_msd(tmp_path / "raw", n=4)
    rc, out, err = run(capsys, "prepare", root, "--out", tmp_path / "prep", "--image-size", "16",
                       "--split-level", "slice", "--split-seed", "3")
    assert rc == 0, err
    assert "prepared 16 slices from 4 msd cases" in out
    rc, _, err = run(capsys, "train", "--data", tmp_path / "prep", *FAST, "--k-shot", "5", "--out", tmp_path / "run")
    assert rc == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["source_format"] == "msd" and cfg["k_shot"] == 5
    assert (cfg["split_level"], cfg["split_seed"]) == ("slice", 3)  # taken from the store
    assert len(json.loads((tmp_path / "run" / "splits.json").read_text())["train"]) == 5
    rc, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt",
                       "--data", tmp_path / "prep", "--json")
    assert rc == 0, err
    assert json.loads(out)["n"] == 3  # 16 slices split 11/2/3 by slice


def test_prepared_store_needs_no_raw_folder(tmp_path, capsys):
    """A store trains, validates, tests and evaluates with its raw folder gone (it was re-read at the end)."""
    root = make_paired(tmp_path / "raw", n=4)  # 4 patients -> 3/0/1: one test volume, 4 slices
    rc, out, err = run(capsys, "prepare", root, "--out", tmp_path / "prep", "--image-size", "16")
    assert rc == 0, err
    moved = root.rename(tmp_path / "moved")
    rc, _, err = run(capsys, "train", "--data", tmp_path / "prep", *FAST, "--out", tmp_path / "run")
    assert rc == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    test_names = json.loads((tmp_path / "run" / "splits.json").read_text())["test"]
    assert summary["n"] == len(test_names) == 4
    assert [r["name"] for r in summary["per_image"]] == test_names  # the split training used
    assert summary["hd95_unit"] == "mm" and summary["ground_truth"] == "store" and "per_volume" not in summary
    assert (tmp_path / "run" / "test_per_image.csv").is_file()

    ckpt = tmp_path / "run" / "checkpoint_best.pt"
    rc, out, err = run(capsys, "evaluate", "--checkpoint", ckpt, "--data", tmp_path / "prep", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert [r["name"] for r in result["per_image"]] == test_names
    assert result["mean"] == pytest.approx(summary["mean"], nan_ok=True)
    rc, out, err = run(capsys, "evaluate", "--checkpoint", ckpt, "--data", tmp_path / "prep", "--split", "train")
    assert rc == 0, err
    assert "prepared store" in out and "HD95 in mm" in out

    # The store is at the slices' own 16 × 16, so its masks map back exactly: the same per-slice
    # numbers as an evaluation of the raw volumes (which also gives per-volume 3-D metrics).
    rc, out, err = run(capsys, "evaluate", "--checkpoint", ckpt, "--data", moved, "--json")
    assert rc == 0, err
    raw = json.loads(out)
    assert "per_volume" in raw and "ground_truth" not in raw
    assert [r["name"] for r in raw["per_image"]] == test_names
    for a, b in zip(raw["per_image"], result["per_image"]):
        assert a == pytest.approx(b, nan_ok=True)


def test_nnunet_2d_png_end_to_end(tmp_path, capsys, torch_loads):
    root = make_nnunet_png(tmp_path / "raw", n=5)
    rc, _, err = run(capsys, "train", "--data", root, *FAST, "--labels", "1,2", "--out", tmp_path / "run")
    assert rc == 0, err
    ckpt = tmp_path / "run" / "checkpoint_best.pt"
    torch_loads.clear()
    rc, out, err = run(capsys, "predict", "--checkpoint", ckpt, root / "imagesTr" / "c0_0000.png", "--out",
                       tmp_path / "pred")
    assert rc == 0, err
    # the channel file c0_0000.png gives the case's name, like its label labelsTr/c0.png
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["c0.png"]
    assert torch_loads == [ckpt]
    rc, out, err = run(capsys, "predict", "--checkpoint", ckpt, root / "imagesTr", "--out", tmp_path / "all",
                       "--save-steps")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [f"c{k}.png" for k in range(5)] + ["removal", "steps"]
    assert sorted(p.name for p in (tmp_path / "all" / "steps").iterdir()) == [f"c{k}.png" for k in range(5)]
    (tmp_path / "all" / "steps").rename(tmp_path / "steps")
    rc, out, err = run(capsys, "evaluate", "--pred", tmp_path / "all", "--gt", root / "labelsTr", "--json")
    assert rc == 0, err
    assert [r["name"] for r in json.loads(out)["per_image"]] == [f"c{k}" for k in range(5)]
    rc, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt", "--data", root,
                       "--json")
    assert rc == 0, err
    assert json.loads(out)["n"] == 1  # 5 one-slice cases -> 3/1/1


def test_single_channel_nnunet_imagests_predicts_case_names(tmp_path, capsys, umask):
    # nnU-Net's one channel file CASE_0000.nii.gz gives CASE.nii.gz, so evaluate pairs it with labelsTs/CASE.
    root = make_nnunet(tmp_path / "raw", n=3, channels=1)
    ts = make_nnunet(tmp_path / "ts", n=2, channels=1)
    (ts / "imagesTr").rename(root / "imagesTs")
    (ts / "labelsTr").rename(root / "labelsTs")
    rc, _, err = run(capsys, "train", "--data", root, *FAST, "--out", tmp_path / "run")
    assert rc == 0, err
    ckpt = tmp_path / "run" / "checkpoint_best.pt"
    rc, _, err = run(capsys, "predict", "--checkpoint", ckpt, root / "imagesTs", "--out", tmp_path / "pred")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]
    rc, out, err = run(capsys, "evaluate", "--pred", tmp_path / "pred", "--gt", root / "labelsTs", "--json")
    assert rc == 0, err
    assert [v["name"] for v in json.loads(out)["per_volume"]] == ["case_000", "case_001"]
    # written for colleagues too: the umask's mode (0o644 under 0o022), not tempfile's 0600
    assert {oct(p.stat().st_mode & 0o777) for p in [ckpt, *(tmp_path / "pred").iterdir()]} == {"0o644"}


def test_channel_suffix_is_stripped_only_in_nnunet_layout(tmp_path):
    from pixeldrl.data.layouts import image_cases, in_nnunet_folder, nnunet_channel, prediction_names, volume_cases

    make_paired(tmp_path / "raw", n=1)
    src = (tmp_path / "raw" / "images" / "case0.nii.gz").read_bytes()
    for f in ("imagesTs/a_0000.nii.gz", "Task/imagesVal/b_0000.nii", "scans/c_0001.nii.gz", "Task/dataset.json"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(src if "nii" in f else b"{}")
    assert nnunet_channel("x/case_001_0002.nii.gz") == ("case_001", 2) and nnunet_channel("x/c_001.nii") is None
    assert in_nnunet_folder(tmp_path / "imagesTs" / "a_0000.nii.gz")
    assert in_nnunet_folder(tmp_path / "Task" / "imagesVal" / "b_0000.nii")  # under a dataset.json
    assert not in_nnunet_folder(tmp_path / "scans" / "c_0001.nii.gz")
    inputs = [tmp_path / "imagesTs", tmp_path / "Task" / "imagesVal", tmp_path / "scans"]
    outputs = sorted(n for c in volume_cases(inputs, "paired", 1) for n in prediction_names(c))
    assert outputs == ["a.nii.gz", "b.nii", "c_0001.nii.gz"]  # elsewhere the suffix may be part of the name
    assert [prediction_names(c) for c in volume_cases([tmp_path / "scans"], "nnunet", 1)] == [["c.nii.gz"]]
    # 2-D images follow the same rule
    for f in ("imagesTs/d_0000.png", "scans/e_0001.png"):
        save_png(tmp_path / f, np.zeros((4, 4), np.uint8))
    outputs = sorted(n for c in image_cases([tmp_path / "imagesTs", tmp_path / "scans"], "folder", 1)
                     for n in prediction_names(c))
    assert outputs == ["d.png", "e_0001.png"]
    # a case whose channel files do not match the checkpoint's channels is named, unless --channels chose some
    save_png(tmp_path / "imagesTs" / "d_0001.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="case 'd' has 2 channel file"):
        image_cases([tmp_path / "imagesTs"], "nnunet", 1)
    assert [len(c.images) for c in image_cases([tmp_path / "imagesTs"], "nnunet", 1, selected=True)] == [2]


def test_slice_split_and_options_are_stored(tmp_path, capsys):
    root = make_paired(tmp_path / "raw", n=3)
    rc, _, err = run(capsys, "train", "--data", root, *FAST, "--split-level", "slice", "--labels", "2",
                     "--axis", "2", "--keep-empty", "--modality", "mri", "--out", tmp_path / "run")
    assert rc == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["split_level"], cfg["labels"], cfg["keep_empty"]) == ("slice", [2], True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "per_volume" not in summary  # a volume spans splits at slice level


def test_predict_volume_errors(tmp_path, capsys):
    root = make_paired(tmp_path / "raw", n=3)
    assert run(capsys, "train", "--data", root, *FAST, "--out", tmp_path / "run")[0] == 0
    ckpt = tmp_path / "run" / "checkpoint_best.pt"
    bad = tmp_path / "bad.nii.gz"
    data = (root / "images" / "case0.nii.gz").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    rc, _, err = run(capsys, "predict", "--checkpoint", ckpt, bad, "--out", tmp_path / "pred")
    assert rc == 2 and "bad.nii.gz" in err and not (tmp_path / "pred").exists()
    # a 2-D NIfTI where a volume is expected
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), str(tmp_path / "flat.nii.gz"))
    rc, _, err = run(capsys, "predict", "--checkpoint", ckpt, tmp_path / "flat.nii.gz", "--out", tmp_path / "pred")
    assert rc == 2 and "flat.nii.gz" in err and "3-D" in err
    # never over an existing file without --overwrite, never over the input
    assert run(capsys, "predict", "--checkpoint", ckpt, root / "images", "--out", tmp_path / "pred")[0] == 0
    rc, _, err = run(capsys, "predict", "--checkpoint", ckpt, root / "images", "--out", tmp_path / "pred")
    assert rc == 2 and "already exists" in err
    rc, _, err = run(capsys, "predict", "--checkpoint", ckpt, root / "images", "--out", root / "images",
                     "--overwrite")
    assert rc == 2 and "overwrite the input" in err


def test_evaluate_nifti_folders(tmp_path, capsys):
    root = make_paired(tmp_path / "raw", n=2)
    pred = tmp_path / "pred"
    pred.mkdir()
    for k in range(2):
        lab = nib.load(str(root / "labels" / f"case{k}.nii.gz"))
        m = (np.asarray(lab.dataobj) > 0).astype(np.uint8)
        if k == 1:
            m[:, :, 2] = 0  # miss one slice
        nib.save(nib.Nifti1Image(m, lab.affine), str(pred / f"case{k}.nii.gz"))
    rc, out, err = run(capsys, "evaluate", "--pred", pred, "--gt", root / "labels", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["n"] == 8 and res["hd95_unit"] == "mm"
    vols = {v["name"]: v for v in res["per_volume"]}
    assert vols["case0"]["DICE"] == pytest.approx(1.0) and vols["case0"]["HD95"] == 0
    assert vols["case1"]["DICE"] < 1
    # a prediction whose affine differs is refused
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.eye(4)), str(pred / "case0.nii.gz"))
    rc, _, err = run(capsys, "evaluate", "--pred", pred, "--gt", root / "labels")
    assert rc == 2 and "different affines" in err


def test_multichannel_checkpoint_refuses_grayscale_images(tmp_path, capsys):
    root = make_nnunet(tmp_path / "raw", n=3)
    assert run(capsys, "train", "--data", root, *FAST, "--out", tmp_path / "run")[0] == 0
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    rc, _, err = run(capsys, "predict", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt", tmp_path / "a.png",
                     "--out", tmp_path / "pred")
    assert rc == 2 and "takes 2 input channels" in err


def test_volume_hd95_is_in_mm(tmp_path, capsys):
    root = make_paired(tmp_path / "raw", n=1)
    lab = nib.load(str(root / "labels" / "case0.nii.gz"))
    gt = np.asarray(lab.dataobj) > 0
    (tmp_path / "pred").mkdir()
    shifted = np.roll(gt, 1, axis=0).astype(np.uint8)  # one voxel along x: 0.8 mm (AFFINE)
    nib.save(nib.Nifti1Image(shifted, lab.affine), str(tmp_path / "pred" / "case0.nii.gz"))
    rc, out, err = run(capsys, "evaluate", "--pred", tmp_path / "pred", "--gt", root / "labels", "--json")
    assert rc == 0, err
    assert json.loads(out)["per_volume"][0]["HD95"] == pytest.approx(0.8)
    assert json.loads(out)["mean"]["HD95"] == pytest.approx(0.8)  # per-slice, in-plane spacing 0.8 × 0.8


def test_channel_selection_carries_to_predict(tmp_path, capsys):
    root = make_msd(tmp_path / "raw", n=3, channels=4)
    rc, _, err = run(capsys, "train", "--data", root, *FAST, "--channels", "0,2", "--out", tmp_path / "run")
    assert rc == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["channels"], cfg["in_channels"]) == ([0, 2], 2)
    rc, _, err = run(capsys, "predict", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt",
                     root / "imagesTr" / "la_000.nii.gz", "--out", tmp_path / "pred")
    assert rc == 0, err
    assert nib.load(str(tmp_path / "pred" / "la_000.nii.gz")).shape == SHAPE


def test_predict_volumes_save_prob_and_steps(tmp_path, capsys):
    from pixeldrl.predict import masks_from_removal

    root = make_msd(tmp_path / "raw", n=4)
    rc, _, err = run(capsys, "train", "--data", root, *FAST, "--out", tmp_path / "run")
    assert rc == 0, err
    out = tmp_path / "pred"
    rc, _, err = run(capsys, "predict", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt", root / "imagesTr",
                     "--out", out, "--save-prob", "--save-steps")
    assert rc == 0, err
    for k in range(4):
        name = f"la_{k:03d}.nii.gz"
        source = nib.load(root / "imagesTr" / name)
        files = {d: nib.load(out / d / name) for d in ("", "prob", "steps", "removal")}
        for img in files.values():
            assert np.allclose(img.affine, source.affine) and img.shape[:3] == source.shape[:3]
        mask, prob = np.asarray(files[""].dataobj) > 0, np.asarray(files["prob"].dataobj)
        steps, removal = np.asarray(files["steps"].dataobj) > 0, np.asarray(files["removal"].dataobj)
        assert prob.dtype == np.float32 and ((prob > 0.5) == mask).all()
        assert steps.ndim == 4 and (steps[..., -1] == mask).all()
        # the removal map reproduces every step's mask
        assert (masks_from_removal(removal, steps.shape[-1])[1:] == np.moveaxis(steps, -1, 0)).all()
    rc, _, err = run(capsys, "predict", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt", root / "imagesTr",
                     "--out", out, "--save-prob")
    assert rc == 2 and "already exists" in err  # the new outputs are protected like the masks
