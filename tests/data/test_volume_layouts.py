"""Dataset layouts, the paper's slice protocol, the prepared store, and bad input (layouts.py, protocol.py,
prepare.py, volumes.py) on tiny synthetic volumes (16 × 16 × 6, see ``synth_datasets``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from pixeldrl.cli import main
from pixeldrl.config import TrainConfig
from pixeldrl.errors import InputError
from pixeldrl.data.layouts import detect_format, list_cases, read_case
from pixeldrl.data.store import open_store, prepare
from pixeldrl.data.dataset import load_dataset
from pixeldrl.data.protocol import Protocol, cut_volumes
from pixeldrl.data.splits import assign_splits, k_shot_indices
from pixeldrl.data.volumes import normalize_volume, read_nifti, write_nifti_mask
from synth_datasets import (AFFINE, FG_SLICES, SHAPE, make_lgg, make_msd, make_nnunet, make_nnunet_png,
                            make_paired, save_nifti, volume)

MAKERS = {"paired": make_paired, "msd": make_msd, "nnunet": make_nnunet, "lgg": make_lgg}


def cfg_for(root, **kw) -> TrainConfig:
    return TrainConfig(data=str(root), image_size=16, **kw)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_detect_and_read_each_layout(tmp_path, fmt):
    root = MAKERS[fmt](tmp_path / fmt)
    assert detect_format(root) == fmt
    cases = list_cases(root, fmt)
    assert len(cases) == 3
    data = read_case(cases[0])
    channels = {"paired": 1, "msd": 1, "nnunet": 2, "lgg": 3}[fmt]
    assert data.image.shape == (channels, *SHAPE) and data.label.shape == SHAPE
    assert data.label.dtype == np.int64


def test_detect_other_layouts(tmp_path):
    assert detect_format(make_nnunet_png(tmp_path / "png")) == "nnunet"
    (tmp_path / "folder" / "images").mkdir(parents=True)
    assert detect_format(tmp_path / "folder") == "folder"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no known dataset layout"):
        detect_format(tmp_path / "nothing")


def test_lgg_root_may_hold_kaggle_3m_or_be_it(tmp_path):
    make_lgg(tmp_path)
    assert detect_format(tmp_path) == detect_format(tmp_path / "kaggle_3m") == "lgg"
    assert [c.name for c in list_cases(tmp_path / "kaggle_3m", "lgg")] == [f"TCGA_XX_{k:04d}" for k in range(3)]


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_slice_counts_after_filtering(tmp_path, fmt):
    root = MAKERS[fmt](tmp_path / fmt)
    assert len(cut_volumes(root, Protocol(image_size=16)).names) == 3 * FG_SLICES
    assert len(cut_volumes(root, Protocol(image_size=16, keep_empty=True)).names) == 3 * SHAPE[2]


def test_slice_counts_along_another_axis(tmp_path):
    root = make_paired(tmp_path)
    expected = sum(int(np.count_nonzero(volume(k)[1].any(axis=(1, 2)))) for k in range(3))
    ss = cut_volumes(root, Protocol(image_size=16, axis=0))
    assert len(ss.names) == expected and ss.shapes[0] == (SHAPE[1], SHAPE[2])


def test_label_selection(tmp_path):
    root = make_msd(tmp_path)
    core = cut_volumes(root, Protocol(image_size=16, labels=[2]))
    assert len(core.names) == 3 * 2  # label 2 lives in slices 2-3
    both = cut_volumes(root, Protocol(image_size=16))
    one = cut_volumes(root, Protocol(image_size=16, labels=[1]))
    assert len(both.names) == len(one.names) == 3 * FG_SLICES
    # the default target (every nonzero label) covers label 1's
    assert (both.masks >= one.masks).all() and both.masks.sum() > one.masks.sum()


def test_channel_handling(tmp_path):
    root = make_msd(tmp_path, channels=4)  # like Task01_BrainTumour: one 4-D file
    full = cut_volumes(root, Protocol(image_size=16))
    assert full.images.shape[1] == 4
    pick = cut_volumes(root, Protocol(image_size=16, channels=[0, 2]))
    np.testing.assert_array_equal(pick.images, full.images[:, [0, 2]])
    with pytest.raises(InputError, match="--channels 7"):
        cut_volumes(root, Protocol(image_size=16, channels=[7]))


def test_normalisation_is_non_negative_with_background_darkest():
    img, _ = volume(0)
    out, params = normalize_volume(img, "mri")
    assert out.min() == 0.0 and out.max() == 1.0
    assert (out[img == 0] == 0).all()  # zeroed / background pixels read as darkest
    assert params["std"] > 0 and params["lo"] < params["hi"]
    ct, p = normalize_volume(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]), "ct")
    np.testing.assert_allclose(ct, [0, 0, 0.5, 1, 1])
    assert p == {"window": [-160.0, 240.0]}


def test_patient_split_has_no_leak(tmp_path):
    root = make_paired(tmp_path, n=10)
    splits = load_dataset(cfg_for(root))
    patients = {s: set(ds.patients) for s, ds in splits.items()}
    assert [len(patients[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert sum(len(ds) for ds in splits.values()) == 10 * FG_SLICES


def test_slice_split_for_parity(tmp_path):
    patients = [f"p{i // 4}" for i in range(40)]
    which = assign_splits(patients, "slice", 0)
    assert [which.count(s) for s in ("train", "val", "test")] == [28, 4, 8]
    assert assign_splits(patients, "slice", 0) == which
    leaked = {p for p, s in zip(patients, which) if s == "train"} & {p for p, s in zip(patients, which) if s == "test"}
    assert leaked  # the reason patient level is the default


def test_k_shot_sizes_and_determinism(tmp_path):
    root = make_paired(tmp_path, n=10)
    a = load_dataset(cfg_for(root, k_shot=5))
    b = load_dataset(cfg_for(root, k_shot=5))
    full = load_dataset(cfg_for(root))
    assert len(a["train"]) == 5 and a["train"].names == b["train"].names
    assert set(a["train"].names) <= set(full["train"].names)
    assert len(a["test"]) == len(full["test"])  # only train is subsampled
    assert list(k_shot_indices(28, 5, 1)) != list(k_shot_indices(28, 5, 0))
    with pytest.raises(InputError, match="--k-shot 99"):
        load_dataset(cfg_for(root, k_shot=99))


def test_load_dataset_returns_what_it_resolved_and_leaves_the_config_alone(tmp_path):
    cfg = cfg_for(make_msd(tmp_path, modality="CT"))
    before = cfg.to_dict()
    splits = load_dataset(cfg)
    assert cfg.to_dict() == before
    assert splits.resolved == {"source_format": "msd", "modality": "ct", "in_channels": 1}
    assert splits["train"].images.dtype == torch.float32 and splits["train"].images.min() >= 0


def test_folder_format_unchanged_and_k_shot(tmp_path):
    from PIL import Image

    for k in range(10):
        img, lab = volume(k)
        for sub, arr in (("images", np.clip(img[..., 2], 0, 255).astype(np.uint8)), ("masks", lab[..., 2] * 255)):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(arr.astype(np.uint8)).save(tmp_path / sub / f"s{k}.png")
    from pixeldrl.data.folder import load_splits

    old = load_splits(tmp_path, 16, 0)
    new = load_dataset(cfg_for(tmp_path))
    for s in old:
        assert torch.equal(old[s].images, new[s].images) and old[s].names == new[s].names
    assert len(load_dataset(cfg_for(tmp_path, k_shot=2))["train"]) == 2


# --------------------------------------------------------------------------- prepared store


@pytest.mark.parametrize("fmt", ["msd", "lgg"])
def test_prepared_store_gives_the_same_tensors(tmp_path, fmt):
    root = MAKERS[fmt](tmp_path / "raw", n=5)
    store = prepare(root, tmp_path / "prep", Protocol(image_size=16), progress=False)
    raw = load_dataset(cfg_for(root))
    prep = load_dataset(cfg_for(store))
    for s in raw:
        assert raw[s].names == prep[s].names
        assert torch.equal(raw[s].images, prep[s].images) and torch.equal(raw[s].masks, prep[s].masks)
    man = open_store(store).manifest
    assert man["format"] == fmt and man["n_slices"] == 5 * FG_SLICES
    row = man["slices"][0]
    assert {"name", "case", "patient", "index", "split", "shape"} <= set(row)
    case = man["cases"][0]
    assert {"images", "spacing", "normalisation", "patient"} <= set(case)
    assert isinstance(open_store(store).images, np.memmap)


def test_prepared_store_resizes_to_another_image_size(tmp_path):
    store = prepare(make_paired(tmp_path / "raw"), tmp_path / "prep", Protocol(image_size=16), progress=False)
    assert load_dataset(TrainConfig(data=str(store), image_size=8))["train"].images.shape[-1] == 8


def test_prepare_spacing_in_manifest(tmp_path):
    store = prepare(make_paired(tmp_path / "raw"), tmp_path / "prep", Protocol(image_size=16), progress=False)
    np.testing.assert_allclose(open_store(store).manifest["cases"][0]["spacing"], [0.8, 0.8, 2.5])


class _EmptyAgent(torch.nn.Module):
    """Segments nothing, in one pass (a ``one_shot`` model, as the U-Net baselines): background wins."""

    one_shot = True

    def forward(self, images):
        logits = torch.zeros(images.shape[0], 2, *images.shape[2:])  # (B, 2, H, W)
        logits[:, 0] = 1.0
        return logits


def test_store_evaluates_from_itself_at_original_size(tmp_path):
    """A store evaluates its recorded split without the raw folder, at the slices' own size, HD95 in mm."""
    from pixeldrl.evaluate import evaluate_store

    store = prepare(make_paired(tmp_path / "raw", n=5), tmp_path / "prep", Protocol(image_size=8), progress=False)
    (tmp_path / "raw").rename(tmp_path / "gone")
    test = load_dataset(TrainConfig(data=str(store), image_size=8), only=("test",))
    assert list(test) == ["test"]
    ds = test["test"]
    recorded = [s["name"] for s in open_store(store).manifest["slices"] if s["split"] == "test"]
    assert ds.names == recorded and len(ds) == FG_SLICES  # 5 patients -> 4/0/1
    assert ds.images.shape[-1] == 8 and set(ds.original_shapes) == {(16, 16)}
    assert np.allclose(ds.spacings, 0.8)  # AFFINE's in-plane voxel size (axis 2 cut away)
    result = evaluate_store(_EmptyAgent(), TrainConfig(data=str(store), image_size=8), store, "test")
    assert [r["name"] for r in result["per_image"]] == recorded
    assert (result["hd95_unit"], result["ground_truth"]) == ("mm", "store") and "per_volume" not in result
    # empty predictions: HD95 is the diagonal of the 16 × 16 slice of 0.8 mm pixels, not of the 8 × 8 input
    assert result["mean"]["HD95"] == pytest.approx(16 * 0.8 * np.sqrt(2))
    assert result["mean"]["DICE"] < 1e-3 and result["hd95_one_empty"] == FG_SLICES
    with pytest.raises(InputError, match="--split"):
        evaluate_store(_EmptyAgent(), TrainConfig(data=str(store), image_size=8), store, "tset")


def test_store_of_another_version_is_refused(tmp_path, capsys):
    store = prepare(make_paired(tmp_path / "raw"), tmp_path / "prep", Protocol(image_size=16), progress=False)
    man = json.loads((store / "manifest.json").read_text())
    man["pixeldrl_store"] = 999
    (store / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(InputError, match="format 999"):
        open_store(store)
    rc = main(["train", "--data", str(store), "--preset", "small", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert rc == 2 and "format 999" in capsys.readouterr().err


def test_interrupted_prepare_leaves_nothing(tmp_path, monkeypatch):
    import pixeldrl.data.protocol

    root = make_paired(tmp_path / "raw")
    out = tmp_path / "out" / "prep"
    real_read, calls = pixeldrl.data.protocol.read_case, []

    def interrupted(case):  # Ctrl-C while the second case is read, after the first was written
        calls.append(case)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_read(case)

    monkeypatch.setattr(pixeldrl.data.protocol, "read_case", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(root, out, Protocol(image_size=16), progress=False)
    assert len(calls) == 2 and list(out.parent.iterdir()) == []


def test_prepare_never_overwrites(tmp_path, capsys):
    root = make_paired(tmp_path / "raw")
    (tmp_path / "prep").mkdir()
    assert main(["prepare", str(root), "--out", str(tmp_path / "prep")]) == 2
    assert "already exists" in capsys.readouterr().err


# --------------------------------------------------------------------------- NIfTI out


def test_write_nifti_mask_keeps_geometry(tmp_path):
    img, lab = volume(0)
    src = save_nifti(tmp_path / "in.nii.gz", img)
    like = read_nifti(src)
    out = write_nifti_mask(tmp_path / "out" / "in.nii.gz", lab > 0, like)
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, AFFINE)
    assert back.shape == SHAPE and back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(back.dataobj), (lab > 0).astype(np.uint8))
    assert [p.name for p in out.parent.iterdir()] == ["in.nii.gz"]  # no temporary file left


# --------------------------------------------------------------------------- bad input -> exit 2


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _first(root: Path, sub: str) -> Path:
    return sorted((root / sub).iterdir())[0]


def bad_truncated_nifti(root):
    p = _first(root, "images")
    _truncate(p)
    return p.name


def bad_corrupt_nifti(root):
    p = _first(root, "images")
    p.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    return p.name


def bad_shape_mismatch(root):
    p = _first(root, "labels")
    save_nifti(p, np.zeros((16, 16, 5), np.uint8))
    return "shape"


def bad_affine_mismatch(root):
    p = _first(root, "labels")
    save_nifti(p, volume(0)[1], affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    return "different affines"


def bad_non_integer_labels(root):
    p = _first(root, "labels")
    save_nifti(p, volume(0)[1].astype(np.float32) * 0.5)
    return "non-integer"


def bad_negative_labels(root):
    p = _first(root, "labels")
    lab = volume(0)[1].astype(np.int16)
    lab[0, 0, 0] = -1
    save_nifti(p, lab)
    return "negative"


def bad_nan_voxels(root):
    p = _first(root, "images")
    img = volume(0)[0]
    img[3, 3, 3] = np.nan
    save_nifti(p, img)
    return "non-finite"


def bad_2d_nifti(root):
    p = _first(root, "images")
    save_nifti(p, volume(0)[0][..., 0])
    return "3-D or 4-D"


def bad_missing_label(root):
    _first(root, "labels").unlink()
    return "no label volume"


def bad_empty_after_filtering(root):
    for p in (root / "labels").iterdir():
        save_nifti(p, np.zeros(SHAPE, np.uint8))
    return "no slices left"


PAIRED_BREAKERS = [bad_truncated_nifti, bad_corrupt_nifti, bad_shape_mismatch, bad_affine_mismatch,
                   bad_non_integer_labels, bad_negative_labels, bad_nan_voxels, bad_2d_nifti, bad_missing_label,
                   bad_empty_after_filtering]


def _check_fails_cleanly(tmp_path, capsys, root, *expected, extra=()):
    out = tmp_path / "prepared"
    capsys.readouterr()
    rc = main(["prepare", str(root), "--out", str(out), "--image-size", "16", *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]  # (the progress bar also writes to stderr)
    assert len(lines) == 1 and lines[0].startswith("pixeldrl prepare: error:") and "Traceback" not in err
    for e in expected:
        assert e in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".prepared")]


@pytest.mark.parametrize("breaker", PAIRED_BREAKERS, ids=lambda f: f.__name__)
def test_bad_volume_input_exits_2(tmp_path, capsys, breaker):
    root = make_paired(tmp_path / "raw")
    expected = breaker(root)
    _check_fails_cleanly(tmp_path, capsys, root, expected)


def test_label_value_never_occurring(tmp_path, capsys):
    root = make_paired(tmp_path / "raw")
    _check_fails_cleanly(tmp_path, capsys, root, "label value 5", "never occurs", extra=["--labels", "1,5"])


def test_msd_case_listed_but_missing(tmp_path, capsys):
    root = make_msd(tmp_path / "raw")
    (root / "labelsTr" / "la_001.nii.gz").unlink()
    _check_fails_cleanly(tmp_path, capsys, root, "la_001.nii.gz", "listed in", "missing")


def test_nnunet_channel_file_missing(tmp_path, capsys):
    root = make_nnunet(tmp_path / "raw")
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    _check_fails_cleanly(tmp_path, capsys, root, "case_001_0001.nii.gz", "missing")


def test_lgg_corrupt_tiff(tmp_path, capsys):
    root = make_lgg(tmp_path / "raw")
    p = root / "kaggle_3m" / "TCGA_XX_0001" / "TCGA_XX_0001_3.tif"
    _truncate(p)
    _check_fails_cleanly(tmp_path, capsys, root, "TCGA_XX_0001_3.tif")


def test_lgg_slice_without_mask(tmp_path, capsys):
    root = make_lgg(tmp_path / "raw")
    (root / "kaggle_3m" / "TCGA_XX_0002" / "TCGA_XX_0002_2_mask.tif").unlink()
    _check_fails_cleanly(tmp_path, capsys, root, "TCGA_XX_0002_2.tif", "no mask")


def test_3d_where_2d_expected(tmp_path, capsys):
    root = make_nnunet_png(tmp_path / "raw")
    (tmp_path / "folder" / "images").mkdir(parents=True)
    (tmp_path / "folder" / "masks").mkdir()
    for sub in ("images", "masks"):
        tifffile.imwrite(tmp_path / "folder" / sub / "a.tif", np.zeros((4, 16, 16), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match="2-D"):
        load_dataset(cfg_for(tmp_path / "folder"))
    assert len(load_dataset(cfg_for(root))["train"]) >= 1  # the 2-D nnU-Net cases themselves are fine


def test_nnunet_v1_task_folder_reads_as_msd(tmp_path):
    root = make_msd(tmp_path, channels=1)
    for p in (root / "imagesTr").iterdir():  # v1 stores CASE_0000.nii.gz, dataset.json lists CASE.nii.gz
        p.rename(p.with_name(p.name.replace(".nii.gz", "_0000.nii.gz")))
    assert detect_format(root) == "msd"
    assert len(cut_volumes(root, Protocol(image_size=16)).names) == 3 * FG_SLICES


def test_prepared_store_rejects_other_labels(tmp_path):
    store = prepare(make_msd(tmp_path / "raw"), tmp_path / "prep", Protocol(image_size=16), progress=False)
    with pytest.raises(InputError, match="--labels"):
        load_dataset(cfg_for(store, labels=[2]))


def test_paired_duplicate_names_and_folder_options(tmp_path):
    root = make_paired(tmp_path / "raw")
    save_nifti(root / "images" / "case0.nii", volume(0)[0])
    with pytest.raises(InputError, match="two volumes named 'case0'"):
        list_cases(root, "paired")
    (tmp_path / "folder" / "images").mkdir(parents=True)
    (tmp_path / "folder" / "masks").mkdir()
    with pytest.raises(InputError, match="--labels and --channels apply to volume layouts"):
        load_dataset(cfg_for(tmp_path / "folder", labels=[1]))
