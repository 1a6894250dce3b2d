"""Prediction: files in, masks out, through the greedy episode (``rl.pa3c.segment``).

``predict_files`` is what ``pixeldrl predict`` runs::

    pixeldrl predict --checkpoint runs/demo/checkpoint_best.pt slices/ --out predictions/

It loads the checkpoint once and asks :mod:`pixeldrl.data.layouts` which cases the inputs form,
how to read them and what their predictions are called (this module knows no file layout).
``predict_arrays`` (2-D images) and ``predict_volume`` (one volume, slice by slice) bring each input
to the network's size and the masks back to the input's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixeldrl.checkpoint import agent_from_checkpoint, resolve_device
from pixeldrl.config import TrainConfig
from pixeldrl.data.layouts import (Case, image_cases, is_volume_input, prediction_names, read_case_image, volume_cases,
                                   write_prediction)
from pixeldrl.data.protocol import cut_slice, network_slice, select_channels
from pixeldrl.data.transforms import from_network, normalize_intensity, to_network
from pixeldrl.data.images import write_float_tiff, write_mask_values
from pixeldrl.data.volumes import normalize_channels, normalize_volume, write_nifti_like
from pixeldrl.errors import InputError
from pixeldrl.progress import bar
from pixeldrl.report import save_steps_strip
from pixeldrl.rl.pa3c import Agent, segment


def check_single_channel(cfg, checkpoint: str | Path) -> None:
    """2-D grayscale images need a one-channel checkpoint; name the mismatch instead of failing in the network."""
    if cfg.in_channels != 1:
        raise InputError(f"{checkpoint}: the checkpoint takes {cfg.in_channels} input channels "
                         f"(trained on {cfg.source_format or 'multi-channel'} data); give it volumes of that layout, "
                         f"not grayscale 2-D images")


def image_normaliser(cfg):
    """How a run normalises one 2-D image: per image (folder format) or as a one-slice volume
    (a run trained on a volume layout, e.g. nnU-Net 2-D PNG cases), so prediction matches training."""
    if cfg.source_format in ("", "folder"):
        return normalize_intensity

    modality = "mri" if cfg.modality == "auto" else cfg.modality
    return lambda im: normalize_volume(im, modality, tuple(cfg.ct_window))[0]


def predict_arrays(agent: Agent, images: list[np.ndarray], size: int, t_max: int, device: str = "cpu",
                   batch_size: int = 8, return_steps: bool = False, progress: bool = True,
                   normalise=normalize_intensity) -> list[dict]:
    """Segment raw 2-D images (any sizes): normalise, map to the network size, segment, map back.

    Returns one dict per image: ``mask`` (H, W) bool, ``keep_prob`` (H, W) float32 and, with
    ``return_steps``, ``steps`` (T+1, H, W) bool, all at the image's own size.
    """
    out = []
    for start in bar(range(0, len(images), batch_size), desc="predict", unit="batch", enabled=progress):
        chunk = images[start:start + batch_size]
        x = np.stack([to_network(normalise(im), size, order=1) for im in chunk])
        x = torch.from_numpy(x).float().unsqueeze(1).to(device)  # (B, 1, S, S)
        seg = segment(agent, x, t_max, return_steps)
        for i, im in enumerate(chunk):
            shape = im.shape[:2]
            res = {
                "mask": mask_to_shape(seg.mask[i], shape),
                # nearest neighbour, as the mask: keep_prob > 0.5 ⇔ in the mask, at any size
                "keep_prob": from_network(seg.keep_prob[i].cpu().numpy().astype(np.float32), shape, order=0),
            }
            if return_steps:
                res["steps"] = np.stack([from_network(s.cpu().numpy().astype(np.uint8), shape, order=0) > 0
                                         for s in seg.steps[:, i]])
            out.append(res)
    return out


def mask_to_shape(mask: torch.Tensor | np.ndarray, shape) -> np.ndarray:
    """A network-size (S, S) binary mask back at its image's own (H, W) size (bool; ``from_network``)."""
    m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return from_network(m.astype(np.uint8), shape, order=0) > 0


def segment_slices(agent: Agent, images, t_max: int, device: str = "cpu", batch_size: int = 8,
                   progress: bool = False) -> np.ndarray:
    """Greedy masks (N, S, S) bool of network-size inputs (N, C, S, S) that are already normalised
    (a ``SliceDataset``'s, tensor or array), in batches."""
    x = torch.as_tensor(images, dtype=torch.float32)
    dev = resolve_device(device)
    masks = [segment(agent, x[i:i + batch_size].to(dev), t_max).mask.cpu().numpy()
             for i in bar(range(0, len(x), batch_size), desc="predict", unit="batch", enabled=progress)]
    return np.concatenate(masks) if masks else np.zeros((0, *x.shape[2:]), dtype=bool)


def predict_slices(agent: Agent, images, shapes, t_max: int, device: str = "cpu", batch_size: int = 8,
                   progress: bool = True) -> list[np.ndarray]:
    """:func:`segment_slices`, each mask mapped back to its slice's original (H, W) in ``shapes``."""
    masks = segment_slices(agent, images, t_max, device, batch_size, progress)
    return [mask_to_shape(m, shape) for m, shape in zip(masks, shapes)]


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")


def _check_outputs(cases: list[Case], targets: list[Path], overwrite: bool, what: str = "input",
                   skip_existing: bool = False) -> None:
    """Refuse two outputs of one name, writing over an input, and over an existing file unless
    ``overwrite`` or ``skip_existing`` (the caller then leaves the finished ones alone)."""
    if overwrite and skip_existing:
        raise InputError("--overwrite and --skip-existing contradict each other; give one")
    names = [t.name for t in targets]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"two inputs share the output name {sorted(dup)[0]}; predict them into separate folders")
    inputs_resolved = {f.resolve() for c in cases for f in c.images}
    for t in targets:
        if t.resolve() in inputs_resolved:
            raise InputError(f"{t}: output would overwrite the {what}; choose another --out")
        if t.exists() and not (overwrite or skip_existing):
            raise InputError(f"{t}: already exists; pass --overwrite (replace), --skip-existing (keep finished "
                             f"masks, do the rest) or choose another --out")


def _channel_count(cfg: TrainConfig) -> dict:
    """What the layouts check channel files against: the checkpoint's channels, all of them unless
    the run kept some with ``--channels`` (``predict_volume`` checks those)."""
    return {"n_channels": cfg.in_channels, "selected": cfg.channels is not None}


# Extra outputs of ``predict``: sub-folder of --out -> the file ending for 2-D cases (volumes keep
# their NIfTI name). ``prob``: π(keep) at the step that decided each pixel (float32); ``steps``: the
# mask after each step (2-D: a figure; volumes: a 4-D NIfTI, the last axis the step 1 … T);
# ``removal``: the step each pixel was set to zero, 0 = kept to the end (uint8).
EXTRA_OUTPUTS_2D = {"prob": ".tif", "steps": ".png", "removal": ".png"}


def _extras(save_steps: bool, save_prob: bool) -> list[str]:
    return (["prob"] if save_prob else []) + (["steps", "removal"] if save_steps else [])


def removal_steps(steps: np.ndarray) -> np.ndarray:
    """The step at which each pixel was set to zero (uint8; 0 = kept to the end, k = at step k) from
    the masks m(0) … m(T) (T+1, …) bool. One map holds the whole episode, since a zeroed pixel stays
    zero: m(t) = (map == 0) | (map > t) (:func:`masks_from_removal`)."""
    steps = np.asarray(steps, dtype=bool)
    return np.where(steps[-1], 0, steps[1:].sum(0) + 1).astype(np.uint8)


def masks_from_removal(removal: np.ndarray, n_steps: int) -> np.ndarray:
    """Invert :func:`removal_steps`: the masks m(0) … m(n_steps) (n_steps+1, …) bool."""
    r = np.asarray(removal)
    return np.stack([(r == 0) | (r > t) for t in range(n_steps + 1)])


def predict_files(checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, save_steps: bool = False,
                  device: str = "auto", batch_size: int = 8, overwrite: bool = False,
                  skip_existing: bool = False, save_prob: bool = False) -> list[Path]:
    """``pixeldrl predict``: write one 8-bit 0/255 mask per input image, named after its case
    (:func:`pixeldrl.data.layouts.prediction_names`: the input's file name; nnU-Net 2-D channel files
    ``CASE_0000.png`` give ``CASE.png``, like their labels).

    NIfTI volumes (and LGG patient folders for a checkpoint trained on LGG) go to
    :func:`predict_volumes`. The checkpoint is read once.

    Refuses to write over an input file, and over an existing file unless ``overwrite``; with
    ``skip_existing`` an input whose outputs all exist is left alone (continuing an interrupted run:
    masks are written batch by batch, each atomically). ``save_prob`` also writes
    ``prob/NAME.tif``, π(keep) as float32 (> 0.5 exactly where the mask is set); ``save_steps``
    ``steps/NAME.png`` (the mask after each step, side by side) and ``removal/NAME.png`` (the step
    each pixel was zeroed, 0 = kept). Returns every input's mask path.
    """
    _check_batch_size(batch_size)
    device = resolve_device(device)
    agent, cfg = agent_from_checkpoint(checkpoint, device)
    if is_volume_input(inputs, cfg.source_format):
        return _predict_volumes(agent, cfg, inputs, out_dir, device, batch_size, overwrite, skip_existing=skip_existing,
                                save_steps=save_steps, save_prob=save_prob)
    cases = image_cases(inputs, cfg.source_format, **_channel_count(cfg))
    out_dir = Path(out_dir)
    extras = _extras(save_steps, save_prob)
    for folder in [out_dir] + [out_dir / e for e in extras]:
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder}: exists and is not a folder; choose another --out")
    targets = [out_dir / prediction_names(c)[0] for c in cases]
    outputs = [[t] + [out_dir / e / (Path(t).stem + EXTRA_OUTPUTS_2D[e]) for e in extras] for t in targets]
    for k in range(1 + len(extras)):
        _check_outputs(cases, [o[k] for o in outputs], overwrite, "input image", skip_existing)
    check_single_channel(cfg, checkpoint)
    todo = [i for i, o in enumerate(outputs) if not (skip_existing and all(f.exists() for f in o))]
    images = {i: _read_2d(cases[i]) for i in todo}  # read everything first: a bad file stops before any write
    for folder in [out_dir] + [out_dir / e for e in extras]:
        folder.mkdir(parents=True, exist_ok=True)
    normalise = image_normaliser(cfg)
    # Written batch by batch: an interruption keeps what is done (--skip-existing continues from there).
    for start in bar(range(0, len(todo), batch_size), desc="predict", unit="batch"):
        chunk = todo[start:start + batch_size]
        results = predict_arrays(agent, [images[i] for i in chunk], cfg.image_size, cfg.infer_steps, device,
                                 batch_size, return_steps=save_steps, normalise=normalise, progress=False)
        for i, res in zip(chunk, results):
            write_prediction(cases[i], res["mask"][..., None], out_dir)
            paths = dict(zip(extras, outputs[i][1:]))
            if save_prob:
                write_float_tiff(paths["prob"], res["keep_prob"])
            if save_steps:
                save_steps_strip(paths["steps"], images[i], res["steps"], title=cases[i].images[0].name)
                write_mask_values(paths["removal"], removal_steps(res["steps"]))
    return targets


def _read_2d(case: Case) -> np.ndarray:
    image, _ = read_case_image(case)  # (C, H, W, 1)
    if image.shape[0] != 1:
        raise InputError(f"{case.images[0]}: case {case.name!r} has {image.shape[0]} channel files; "
                         f"2-D images are predicted one channel at a time")
    return image[0, :, :, 0]


# --------------------------------------------------------------------------- volumes


def segment_volume(agent: Agent, cfg, image: np.ndarray, device: str = "cpu", batch_size: int = 8,
                   where: object = "volume", return_steps: bool = False) -> dict:
    """Segment a (C, X, Y, Z) volume of stored intensities slice by slice.

    Uses the run's data settings from ``cfg`` (channels, modality / CT window, axis, image size), so
    the slices are normalised exactly as in training; all slices are segmented (also empty ones).
    Returns ``mask`` (X, Y, Z) bool, ``keep_prob`` (X, Y, Z) float32 (π(keep) at the step that
    decided each voxel, mapped back with the mask's nearest-neighbour rule, so > 0.5 ⇔ in the mask)
    and, with ``return_steps``, ``steps`` (T+1, X, Y, Z) bool, the masks m(0) … m(T).
    """
    image = select_channels(image, cfg.channels, where)
    if image.shape[0] != cfg.in_channels:
        raise InputError(f"{where}: has {image.shape[0]} channel(s) but the checkpoint was trained on "
                         f"{cfg.in_channels}")
    modality = "mri" if cfg.modality == "auto" else cfg.modality
    image, _ = normalize_channels(image, modality, tuple(cfg.ct_window))
    axis, size = cfg.axis, cfg.image_size
    n = image.shape[axis + 1]
    out = {"mask": np.zeros(image.shape[1:], dtype=bool), "keep_prob": np.zeros(image.shape[1:], dtype=np.float32)}
    if return_steps:
        out["steps"] = np.ones((cfg.infer_steps + 1, *image.shape[1:]), dtype=bool)
    for start in range(0, n, batch_size):
        ks = range(start, min(n, start + batch_size))
        slices = [cut_slice(image, axis, k) for k in ks]  # each (C, H, W)
        x = torch.from_numpy(np.stack([network_slice(s, size) for s in slices])).to(device)  # (B, C, S, S)
        seg = segment(agent, x, cfg.infer_steps, return_steps)
        for i, k in enumerate(ks):
            shape = slices[i].shape[1:]
            idx = [slice(None)] * 3
            idx[axis] = k
            out["mask"][tuple(idx)] = mask_to_shape(seg.mask[i], shape)
            out["keep_prob"][tuple(idx)] = from_network(seg.keep_prob[i].float().cpu().numpy(), shape, order=0)
            if return_steps:
                for t in range(seg.steps.shape[0]):
                    out["steps"][(t, *idx)] = mask_to_shape(seg.steps[t, i], shape)
    return out


def predict_volume(agent: Agent, cfg, image: np.ndarray, device: str = "cpu", batch_size: int = 8,
                   where: object = "volume") -> np.ndarray:
    """The (X, Y, Z) bool mask of :func:`segment_volume`."""
    return segment_volume(agent, cfg, image, device, batch_size, where)["mask"]


def predict_volumes(checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, device: str = "auto",
                    batch_size: int = 8, overwrite: bool = False, progress: bool = True,
                    skip_existing: bool = False, save_steps: bool = False, save_prob: bool = False) -> list[Path]:
    """``pixeldrl predict`` on volumes: one NIfTI mask per input volume, with its affine and header.

    NIfTI inputs give ``OUT/NAME.nii[.gz]`` (``uint8`` 0/1, the input's file name; nnU-Net channel
    files ``CASE_0000…``, one or several per case, give ``OUT/CASE.nii.gz``: see
    :func:`pixeldrl.data.layouts.in_nnunet_folder`); LGG patient folders (a checkpoint trained on LGG)
    give one 0/255 TIFF per slice with the slice's file name. Every output is checked for clashes
    before anything runs and written atomically, so a failure leaves no partial file; with
    ``skip_existing`` the cases whose outputs all exist are left alone. For NIfTI cases
    ``save_prob`` also writes ``prob/NAME.nii.gz`` (π(keep), float32) and ``save_steps``
    ``steps/NAME.nii.gz`` (uint8, 4-D: the mask after step 1 … T on the last axis) and
    ``removal/NAME.nii.gz`` (uint8: the step each voxel was zeroed, 0 = kept), all with the input's
    geometry.
    """
    _check_batch_size(batch_size)
    device = resolve_device(device)
    agent, cfg = agent_from_checkpoint(checkpoint, device)
    return _predict_volumes(agent, cfg, inputs, out_dir, device, batch_size, overwrite, progress, skip_existing,
                            save_steps, save_prob)


def _predict_volumes(agent: Agent, cfg: TrainConfig, inputs: list[str | Path], out_dir: str | Path, device: str,
                     batch_size: int, overwrite: bool, progress: bool = True, skip_existing: bool = False,
                     save_steps: bool = False, save_prob: bool = False) -> list[Path]:
    """:func:`predict_volumes` with the checkpoint already loaded."""
    cases = volume_cases(inputs, cfg.source_format, **_channel_count(cfg))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    extras = _extras(save_steps, save_prob)
    if extras and any(c.kind != "nifti" for c in cases):
        raise InputError("--save-prob and --save-steps work on 2-D images and NIfTI volumes, not on LGG patient folders")
    for e in [""] + extras:
        if (out_dir / e).exists() and not (out_dir / e).is_dir():
            raise InputError(f"{out_dir / e}: exists and is not a folder; choose another --out")
    outputs = {c.name: [out_dir / e / n for e in [""] + extras for n in prediction_names(c)] for c in cases}
    for e in [""] + extras:
        _check_outputs(cases, [out_dir / e / n for c in cases for n in prediction_names(c)], overwrite,
                       skip_existing=skip_existing)
    written = []
    for case in bar(cases, desc="predict", unit="volume", enabled=progress):
        mask_files = [out_dir / n for n in prediction_names(case)]
        written += mask_files
        if skip_existing and all(p.exists() for p in outputs[case.name]):
            continue
        image, like = read_case_image(case)
        res = segment_volume(agent, cfg, image, device, batch_size, where=case.images[0], return_steps=save_steps)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_prediction(case, res["mask"], out_dir, like)
        name = prediction_names(case)[0]
        if save_prob:
            write_nifti_like(out_dir / "prob" / name, res["keep_prob"], like)
        if save_steps:
            write_nifti_like(out_dir / "steps" / name, np.moveaxis(res["steps"][1:], 0, -1).astype(np.uint8), like)
            write_nifti_like(out_dir / "removal" / name, removal_steps(res["steps"]), like)
    return written
