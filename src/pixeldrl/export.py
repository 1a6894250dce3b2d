"""``pixeldrl export``: a checkpoint's network for other runtimes (TorchScript, ONNX).

    pixeldrl export --checkpoint runs/x/checkpoint_best.pt --format onnx runs/x/pixeldrl.onnx

What is exported is the network for one step, X(t) (B, C, S, S) float32 → ``logits`` (B, 2, S, S)
and, for the PA3C models, ``value`` (B, 1, S, S); S is the run's image size and B any batch size.
The episode is a few lines around it (the greedy episode of ``rl.pa3c.segment``)::

    mask = ones(B, S, S)
    for t in range(steps):                       # steps: "steps" in the JSON beside the file
        logits = net(x * mask[:, None])[0]
        new = mask * (logits.argmax(1) == keep)  # keep: 1 ("do nothing"); 0 sets the pixel to zero
        if (new == mask).all(): break            # later steps would repeat this one
        mask = new

A U-Net baseline is one forward pass: ``mask = logits.argmax(1) == 1``. ``x`` must be prepared as
training prepared it: see ``"input"`` in the JSON (normalisation, zero-padding to a square, resizing
to S × S). The JSON beside the file records all of this.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from pixeldrl.checkpoint import agent_from_checkpoint
from pixeldrl.errors import InputError
from pixeldrl.fileio import atomic_write
from pixeldrl.rl import env

FORMATS = ("torchscript", "onnx")

__all__ = ["FORMATS", "export_checkpoint", "run_episode"]


class _OneStep(nn.Module):
    """The network of an agent (logits, value), or a U-Net's logits, as a plain module."""

    def __init__(self, model: nn.Module, one_shot: bool):
        super().__init__()
        self.model, self.one_shot = model, one_shot

    def forward(self, x: torch.Tensor):
        if self.one_shot:
            return (self.model(x),)
        logits, value = self.model.net(x)
        return logits, value


def _input_note(cfg) -> str:
    if cfg.source_format in ("", "folder"):
        norm = "per image: clip to its 0.5-99.5 percentiles, scale to [0, 1]"
    elif cfg.modality == "ct":
        norm = f"CT window {tuple(cfg.ct_window)} HU onto [0, 1]"
    else:
        norm = "per volume (MRI): clip the body to its 0.5-99.5 percentiles, z-score, map onto [0, 1]"
    return (f"{norm}; zero-pad to a square, resize to {cfg.image_size}x{cfg.image_size} "
            f"(pixeldrl.data.transforms.to_network)")


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "torchscript") -> Path:
    """Write the one-step network of ``checkpoint`` as ``fmt`` to ``out`` and ``out``.json beside it."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
        except ImportError:
            raise InputError("--format onnx: the onnx package is not installed (pip install onnx; "
                             "onnxruntime to run the file)") from None
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give the file to write")
    agent, cfg = agent_from_checkpoint(checkpoint, "cpu")
    one_shot = bool(getattr(agent, "one_shot", False))
    if not one_shot:
        agent.set_fast_paths(channels_last=False)  # plain NCHW layers: what the other runtimes take
    module = _OneStep(agent, one_shot).eval()
    example = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size)
    outputs = ["logits"] if one_shot else ["logits", "value"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # Shape checks in the network are traced as constants: the file takes S x S inputs only.
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace(module, example)
            with atomic_write(out, suffix=".pt") as tmp:
                traced.save(str(tmp))
        else:
            with atomic_write(out, suffix=".onnx") as tmp:
                torch.onnx.export(module, (example,), str(tmp), input_names=["x"], output_names=outputs,
                                  dynamic_axes={k: {0: "batch"} for k in ["x", *outputs]}, dynamo=False)
    meta = {"format": fmt, "checkpoint": str(Path(checkpoint).resolve()), "model": cfg.model,
            "inputs": {"x": ["batch", cfg.in_channels, cfg.image_size, cfg.image_size]}, "outputs": outputs,
            "steps": 1 if one_shot else int(cfg.infer_steps), "keep_action": env.KEEP,
            "episode": "one pass: mask = argmax(logits) == 1" if one_shot else
                       "mask = 1; repeat steps times: mask *= argmax(net(x * mask).logits) == keep_action",
            "input": _input_note(cfg)}
    with atomic_write(out.with_name(out.name + ".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return out


def run_episode(step, x: torch.Tensor, steps: int, one_shot: bool = False) -> torch.Tensor:
    """The greedy episode around an exported one-step network ``step(x) -> logits[, value]``
    (a TorchScript module, or a wrapper of an ONNX session): (B, C, S, S) → (B, S, S) bool."""
    if one_shot:
        return step(x)[0].argmax(1) == 1
    mask = torch.ones(x.shape[0], *x.shape[2:])
    for _ in range(steps):
        new = mask * (step(x * mask[:, None])[0].argmax(1) == env.KEEP)
        if torch.equal(new, mask):
            break
        mask = new
    return mask.bool()
