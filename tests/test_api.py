"""The package's public API, as the README's Python example uses it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import pixeldrl
from pixeldrl.errors import InputError
from pixeldrl.predict import masks_from_removal, predict_volume
from synth_datasets import make_folder, make_msd

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_importable_without_the_command():
    out = subprocess.run([sys.executable, "-c", "import pixeldrl; print(pixeldrl.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == pixeldrl.__version__ and out.count(".") == 2


def test_readme_python_example_trains_evaluates_and_segments(tmp_path, one_torch_thread):
    data = make_folder(tmp_path / "slices", n=8, size=24)
    cfg = pixeldrl.make_config("small", data=str(data), out=str(tmp_path / "run"), epochs=1, image_size=16,
                               batch_size=4)
    run = pixeldrl.train(cfg, progress=False).folder
    assert (run / "checkpoint_best.pt").exists() and (run / "summary.json").exists()
    result = pixeldrl.evaluate_checkpoint(run / "checkpoint_best.pt", str(data), split="test", progress=False)
    assert result["n"] == 2 and set(result["mean"]) == {"DICE", "PPV", "SEN", "IoU", "BIoU", "HD95"}
    splits = pixeldrl.load_dataset(pixeldrl.make_config("small", data=str(data), image_size=16))
    agent, run_cfg = pixeldrl.agent_from_checkpoint(run / "checkpoint_best.pt")
    seg = pixeldrl.segment(agent, splits["test"].images, run_cfg.infer_steps)
    assert seg.mask.shape == (2, 16, 16) and seg.mask.dtype == torch.bool
    assert 1 <= seg.n_steps <= run_cfg.infer_steps


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    data = make_folder(base / "slices", n=8, size=24)
    torch.set_num_threads(1)
    return pixeldrl.train(data=data, preset="small", epochs=1, image_size=16, batch_size=4, out=base / "run",
                          device="cpu", progress=False)


def test_train_in_one_call_returns_the_summary(folder_run):
    assert folder_run.summary == json.loads((folder_run.folder / "summary.json").read_text())
    assert folder_run.summary["n"] == 2 and folder_run.best.is_file()
    cfg = json.loads((folder_run.folder / "config.json").read_text())
    assert cfg["epochs"] == 1 and cfg["image_size"] == 16 and cfg["preset"] == "small"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_model_segments_an_array_of_any_dtype(folder_run, dtype):
    model = pixeldrl.load(folder_run.best, device="cpu")
    rng = np.random.default_rng(0)
    image = (rng.random((30, 20)) * 200).astype(dtype)
    out = model.segment(image)
    t = model.config.infer_steps
    assert out.mask.shape == out.keep_prob.shape == (30, 20) and out.steps.shape == (t, 30, 20)
    assert out.mask.dtype == bool and out.keep_prob.dtype == np.float32
    assert ((out.keep_prob > 0.5) == out.mask).all()  # greedy: kept ⇔ π(keep) > 0.5
    assert (out.steps[-1] == out.mask).all()
    assert (masks_from_removal(out.removal_step, t)[1:] == out.steps).all()
    assert (model.segment(image[None]).mask == out.mask).all()  # (C, H, W) with C = 1


def test_model_refuses_what_it_cannot_segment(folder_run):
    model = pixeldrl.load(folder_run.best, device="cpu")
    for bad in (np.zeros((2, 8, 8)), np.zeros((4,)), np.full((8, 8), np.nan), np.array([["a"]])):
        with pytest.raises(InputError):
            model.segment(bad)


def test_model_segments_and_saves_a_volume_with_its_geometry(folder_run, tmp_path):
    model = pixeldrl.load(folder_run.best, device="cpu")
    rng = np.random.default_rng(1)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(rng.random((20, 18, 3)).astype(np.float32), affine), tmp_path / "case.nii.gz")
    vol = model.segment_volume(tmp_path / "case.nii.gz")
    assert vol.mask.shape == (20, 18, 3) and vol.steps.shape[1:] == (20, 18, 3)
    written = vol.save(tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [
        "case.nii.gz", "prob/case.nii.gz", "steps/case.nii.gz", "removal/case.nii.gz"]
    for p in written:
        assert np.allclose(nib.load(p).affine, affine)
    assert (np.asarray(nib.load(written[0]).dataobj) == vol.mask).all()


def test_a_volume_checkpoint_normalises_an_array_as_its_volumes(tmp_path):
    raw = make_msd(tmp_path / "raw", n=4, modality="CT")
    torch.set_num_threads(1)
    run = pixeldrl.train(data=raw, preset="small", epochs=1, image_size=16, batch_size=4, out=tmp_path / "run",
                         device="cpu", progress=False)
    model = pixeldrl.load(run.best, device="cpu")
    assert model.config.modality == "ct"
    image = nib.load(sorted((raw / "imagesTr").iterdir())[0]).get_fdata()[:, :, 2].astype(np.float32)
    # A CT run windows Hounsfield units; the same slice as a one-slice volume is the reference.
    want = predict_volume(model.agent, model.config, image[None, :, :, None], "cpu")[..., 0]
    assert (model.segment(image).mask == want).all()


def test_python_m_pixeldrl_and_version():
    out = subprocess.run([sys.executable, "-m", "pixeldrl", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pixeldrl {pixeldrl.__version__}"


def test_docs_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "python_api.py"), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "test DICE:" in proc.stdout and "removal/case.nii.gz" in proc.stdout
