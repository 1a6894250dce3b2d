"""The package's public API, as the README's Python example uses it."""

import subprocess
import sys

import torch

import pixeldrl
from synth_datasets import make_folder


def test_version_is_importable_without_the_command():
    out = subprocess.run([sys.executable, "-c", "import pixeldrl; print(pixeldrl.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == pixeldrl.__version__ and out.count(".") == 2


def test_readme_python_example_trains_evaluates_and_segments(tmp_path, one_torch_thread):
    data = make_folder(tmp_path / "slices", n=8, size=24)
    cfg = pixeldrl.make_config("small", data=str(data), out=str(tmp_path / "run"), epochs=1, image_size=16,
                               batch_size=4)
    run = pixeldrl.train(cfg, progress=False)
    assert (run / "checkpoint_best.pt").exists() and (run / "summary.json").exists()
    result = pixeldrl.evaluate_checkpoint(run / "checkpoint_best.pt", str(data), split="test", progress=False)
    assert result["n"] == 2 and set(result["mean"]) == {"DICE", "PPV", "SEN", "IoU", "BIoU", "HD95"}
    splits = pixeldrl.load_dataset(pixeldrl.make_config("small", data=str(data), image_size=16))
    agent, run_cfg = pixeldrl.agent_from_checkpoint(run / "checkpoint_best.pt")
    seg = pixeldrl.segment(agent, splits["test"].images, run_cfg.infer_steps)
    assert seg.mask.shape == (2, 16, 16) and seg.mask.dtype == torch.bool
    assert 1 <= seg.n_steps <= run_cfg.infer_steps
