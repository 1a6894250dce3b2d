"""``pixeldrl export``: the exported one-step network gives the checkpoint's actions (TorchScript,
and ONNX through onnxruntime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixeldrl.checkpoint import agent_from_checkpoint
from pixeldrl.export import run_episode
from pixeldrl.rl.pa3c import segment
from synth_datasets import make_folder
from test_cli import FAST, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from pixeldrl.cli import main

    base = tmp_path_factory.mktemp("export")
    data = make_folder(base / "data", size=32)
    out = {}
    for model, size in (("pixeldrl", "16"), ("unet", "32")):
        args = [a if a != "16" else size for a in FAST]
        assert main(["train", "--data", str(data), *args, "--model", model, "--out", str(base / model)]) == 0
        out[model] = base / model / "checkpoint_best.pt"
    return out


@pytest.mark.parametrize("model", ["pixeldrl", "unet"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_network_gives_the_checkpoints_actions(runs, tmp_path, capsys, model, fmt):
    ckpt = runs[model]
    out = tmp_path / f"net.{'pt' if fmt == 'torchscript' else 'onnx'}"
    rc, _, err = run_cli(capsys, "export", "--checkpoint", ckpt, "--format", fmt, out)
    assert rc == 0, err
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    agent, cfg = agent_from_checkpoint(ckpt, "cpu")
    size = cfg.image_size
    assert meta["inputs"]["x"] == ["batch", 1, size, size] and meta["steps"] == (1 if model == "unet" else cfg.infer_steps)
    if fmt == "torchscript":
        step = torch.jit.load(str(out))
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out))
        step = lambda x: [torch.from_numpy(o) for o in session.run(None, {"x": x.numpy().astype(np.float32)})]
    x = torch.rand(5, 1, size, size, generator=torch.Generator().manual_seed(0))  # batch 5: any batch size works
    want = segment(agent, x, cfg.infer_steps).mask
    got = run_episode(step, x, meta["steps"], one_shot=model == "unet")
    assert torch.equal(got, want)


def test_export_refuses_bad_requests(runs, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "export", "--checkpoint", tmp_path / "none.pt", tmp_path / "x.pt")
    assert rc == 2 and "checkpoint not found" in err
    rc, _, err = run_cli(capsys, "export", "--checkpoint", runs["pixeldrl"], tmp_path)
    assert rc == 2 and "is a folder" in err


def test_export_to_a_format_that_is_not_installed(runs, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the onnx package were not installed
    rc, _, err = run_cli(capsys, "export", "--checkpoint", runs["pixeldrl"], "--format", "onnx", tmp_path / "n.onnx")
    assert rc == 2 and "onnx package is not installed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "n.onnx").exists()
