"""Greedy inference: the agents act by argmax for ``t_max`` steps; files in, masks out.

``segment`` is the tensor-level call (used by validation, evaluation and the demo);
``predict_files`` is what ``pixeldrl predict`` runs::

    pixeldrl predict --checkpoint runs/demo/checkpoint_best.pt slices/ --out predictions/

Inference stops as soon as a step changes no pixel: the next state would equal the current one, so
every later greedy step would repeat it; the result is exactly that of running all ``t_max`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import env
from .checkpoint import agent_from_checkpoint
from .data import from_network, normalize_intensity, to_network
from .errors import InputError
from .imageio import IMAGE_EXTENSIONS, read_image, write_mask
from .pa3c import Agent


@dataclass
class Segmentation:
    mask: torch.Tensor
    """f(t_max) (B, H, W) bool."""
    keep_prob: torch.Tensor
    """(B, H, W): π(keep|s) at the step that decided each pixel — the step it was zeroed, or the
    last step for survivors — so ``keep_prob > 0.5`` ⇔ in the mask, and the distance from 0.5 is
    the policy's own confidence."""
    steps: torch.Tensor | None
    """m(0) … m(t_max) (T+1, B, H, W) bool when asked for, else None."""
    n_steps: int
    """Forward passes actually run (≤ t_max, fewer when the mask stopped changing)."""


@torch.no_grad()
def segment(agent: Agent, images: torch.Tensor, t_max: int = env.T_MAX, return_steps: bool = False) -> Segmentation:
    """Greedy episode on images (B, C, H, W) → :class:`Segmentation`.

    A supervised baseline (``baselines.Segmenter``, ``one_shot``) segments in one forward pass.
    """
    if getattr(agent, "one_shot", False):
        return agent.segment(images, t_max, return_steps)
    mask = env.initial_mask(images)  # (B, H, W)
    keep_prob = torch.zeros_like(mask)
    steps = [mask.bool()] if return_steps else None
    n = 0
    for n in range(1, t_max + 1):
        action, _, _, _, p_keep = agent.get_action_and_value(env.observe(images, mask), greedy=True)
        new_mask = env.update_mask(mask, action)
        # Alive pixels record this step's π(keep): a pixel zeroed now keeps it for good, a survivor
        # ends with the last step's.
        keep_prob = torch.where(mask > 0, p_keep, keep_prob)
        changed = bool((new_mask != mask).any())
        mask = new_mask
        if return_steps:
            steps.append(mask.bool())
        if not changed:
            break
    if return_steps:
        # The remaining steps would repeat the last mask exactly.
        steps += [mask.bool()] * (t_max + 1 - len(steps))
        steps = torch.stack(steps)
    return Segmentation(mask.bool(), keep_prob, steps, n)


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders into the 2-D image files they name (sorted, no duplicates)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{item}: folder holds no {'/'.join(IMAGE_EXTENSIONS)} images")
            files += found
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_EXTENSIONS:
                raise InputError(f"{item}: unsupported file type; expected one of {', '.join(IMAGE_EXTENSIONS)}")
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def predict_arrays(agent: Agent, images: list[np.ndarray], size: int, t_max: int, device: str = "cpu",
                   batch_size: int = 8, return_steps: bool = False, progress: bool = True) -> list[dict]:
    """Segment raw 2-D images (any sizes): normalise, map to the network size, segment, map back.

    Returns one dict per image: ``mask`` (H, W) bool, ``keep_prob`` (H, W) float32 and, with
    ``return_steps``, ``steps`` (T+1, H, W) bool, all at the image's own size.
    """
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        chunk = images[start:start + batch_size]
        x = np.stack([to_network(normalize_intensity(im), size, order=1) for im in chunk])
        x = torch.from_numpy(x).float().unsqueeze(1).to(device)  # (B, 1, S, S)
        seg = segment(agent, x, t_max, return_steps)
        for i, im in enumerate(chunk):
            shape = im.shape[:2]
            res = {
                "mask": from_network(seg.mask[i].cpu().numpy().astype(np.uint8), shape, order=0) > 0,
                "keep_prob": from_network(seg.keep_prob[i].cpu().numpy().astype(np.float32), shape, order=1),
            }
            if return_steps:
                res["steps"] = np.stack([from_network(s.cpu().numpy().astype(np.uint8), shape, order=0) > 0
                                         for s in seg.steps[:, i]])
            out.append(res)
    return out


def predict_files(checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, save_steps: bool = False,
                  device: str = "cpu", batch_size: int = 8, overwrite: bool = False) -> list[Path]:
    """``pixeldrl predict``: write one 8-bit 0/255 mask per input image, with the input's file name.

    Refuses to write over an input file, and over an existing file unless ``overwrite``.
    With ``save_steps``, also writes ``steps/NAME.png``: the mask after each step, side by side.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    files = collect_inputs(inputs)
    out_dir = Path(out_dir)
    for folder in [out_dir] + ([out_dir / "steps"] if save_steps else []):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder}: exists and is not a folder; choose another --out")
    targets = [out_dir / f.name for f in files]
    step_targets = [out_dir / "steps" / (f.stem + ".png") for f in files] if save_steps else []
    for group in (targets, step_targets):
        names = [t.name for t in group]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise InputError(f"two inputs share the output name {sorted(dup)[0]}; predict them into separate folders")
    inputs_resolved = {f.resolve() for f in files}
    for t in targets + step_targets:
        if t.resolve() in inputs_resolved:
            raise InputError(f"{t}: output would overwrite the input image; choose another --out")
        if t.exists() and not overwrite:
            raise InputError(f"{t}: already exists; pass --overwrite or choose another --out")
    agent, cfg = agent_from_checkpoint(checkpoint, device)
    images = [read_image(f) for f in files]  # read everything first: a bad file stops before any write
    results = predict_arrays(agent, images, cfg.image_size, cfg.t_max, device, batch_size, return_steps=save_steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, res in zip(targets, results):
        write_mask(target, res["mask"])
    if save_steps:
        from .report import save_steps_strip

        (out_dir / "steps").mkdir(exist_ok=True)
        for target, f, im, res in zip(step_targets, files, images, results):
            save_steps_strip(target, im, res["steps"], title=f.name)
    return targets
