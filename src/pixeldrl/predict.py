"""Prediction: files in, masks out, through the greedy episode (``rl.pa3c.segment``).

``predict_files`` is what ``pixeldrl predict`` runs::

    pixeldrl predict --checkpoint runs/demo/checkpoint_best.pt slices/ --out predictions/

``predict_arrays`` (2-D images) and ``predict_volume`` (one volume, slice by slice) bring each input
to the network's size and the masks back to the input's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pixeldrl.checkpoint import agent_from_checkpoint, load_checkpoint
from pixeldrl.data.images import IMAGE_EXTENSIONS, read_image, write_mask
from pixeldrl.data.layouts import LGG_SLICE, in_nnunet_folder, nnunet_channel, read_lgg_slice
from pixeldrl.data.protocol import cut_slice, network_slice, select_channels
from pixeldrl.data.transforms import from_network, normalize_intensity, to_network
from pixeldrl.data.volumes import is_nifti, nifti_stem, normalize_channels, normalize_volume, read_nifti, write_nifti_mask
from pixeldrl.errors import InputError
from pixeldrl.report import save_steps_strip
from pixeldrl.rl.pa3c import Agent, segment



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
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        chunk = images[start:start + batch_size]
        x = np.stack([to_network(normalise(im), size, order=1) for im in chunk])
        x = torch.from_numpy(x).float().unsqueeze(1).to(device)  # (B, 1, S, S)
        seg = segment(agent, x, t_max, return_steps)
        for i, im in enumerate(chunk):
            shape = im.shape[:2]
            res = {
                "mask": mask_to_shape(seg.mask[i], shape),
                "keep_prob": from_network(seg.keep_prob[i].cpu().numpy().astype(np.float32), shape, order=1),
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


def predict_slices(agent: Agent, images: torch.Tensor, shapes, t_max: int, device: str = "cpu",
                   batch_size: int = 8, progress: bool = True) -> list[np.ndarray]:
    """Segment network-size inputs (N, C, S, S) that are already normalised (a ``SliceDataset``'s)
    and map each mask back to its slice's original (H, W) in ``shapes`` -> N bool arrays."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        seg = segment(agent, images[start:start + batch_size].to(device), t_max)
        out += [mask_to_shape(m, shapes[start + i]) for i, m in enumerate(seg.mask)]
    return out


def _source_format(checkpoint: str | Path) -> str:
    return str(load_checkpoint(checkpoint).get("config", {}).get("source_format", ""))


def predict_files(checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, save_steps: bool = False,
                  device: str = "cpu", batch_size: int = 8, overwrite: bool = False) -> list[Path]:
    """``pixeldrl predict``: write one 8-bit 0/255 mask per input image, with the input's file name.

    NIfTI volumes (and LGG patient folders for a checkpoint trained on LGG) go to
    :func:`predict_volumes`.

    Refuses to write over an input file, and over an existing file unless ``overwrite``.
    With ``save_steps``, also writes ``steps/NAME.png``: the mask after each step, side by side.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    if is_volume_input(inputs) or _source_format(checkpoint) == "lgg":
        if save_steps:
            raise InputError("--save-steps works on 2-D images only, not on volumes")
        return predict_volumes(checkpoint, inputs, out_dir, device, batch_size, overwrite)
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
    check_single_channel(cfg, checkpoint)
    images = [read_image(f) for f in files]  # read everything first: a bad file stops before any write
    results = predict_arrays(agent, images, cfg.image_size, cfg.infer_steps, device, batch_size, return_steps=save_steps,
                             normalise=image_normaliser(cfg))
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, res in zip(targets, results):
        write_mask(target, res["mask"])
    if save_steps:
        (out_dir / "steps").mkdir(exist_ok=True)
        for target, f, im, res in zip(step_targets, files, images, results):
            save_steps_strip(target, im, res["steps"], title=f.name)
    return targets


# --------------------------------------------------------------------------- volumes


def predict_volume(agent: Agent, cfg, image: np.ndarray, device: str = "cpu", batch_size: int = 8,
                   where: object = "volume") -> np.ndarray:
    """Segment a (C, X, Y, Z) volume of stored intensities slice by slice -> (X, Y, Z) bool.

    Uses the run's data settings from ``cfg`` (channels, modality / CT window, axis, image size), so
    the slices are normalised exactly as in training; all slices are segmented (also empty ones).
    """
    image = select_channels(image, cfg.channels, where)
    if image.shape[0] != cfg.in_channels:
        raise InputError(f"{where}: has {image.shape[0]} channel(s) but the checkpoint was trained on "
                         f"{cfg.in_channels}")
    modality = "mri" if cfg.modality == "auto" else cfg.modality
    image, _ = normalize_channels(image, modality, tuple(cfg.ct_window))
    axis, size = cfg.axis, cfg.image_size
    n = image.shape[axis + 1]
    out = np.zeros(image.shape[1:], dtype=bool)
    for start in range(0, n, batch_size):
        ks = range(start, min(n, start + batch_size))
        slices = [cut_slice(image, axis, k) for k in ks]  # each (C, H, W)
        x = torch.from_numpy(np.stack([network_slice(s, size) for s in slices])).to(device)  # (B, C, S, S)
        seg = segment(agent, x, cfg.infer_steps)
        for i, k in enumerate(ks):
            m = mask_to_shape(seg.mask[i], slices[i].shape[1:])
            idx = [slice(None)] * 3
            idx[axis] = k
            out[tuple(idx)] = m
    return out


def _volume_jobs(inputs: list[str | Path], cfg) -> list[dict]:
    """Group the inputs into volumes: NIfTI files (nnU-Net: one file per channel) or LGG patient folders."""
    nifti: list[Path] = []
    lgg: dict[Path, list[Path]] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            found = [p for p in sorted(item.iterdir()) if not p.name.startswith(".")]
            vols = [p for p in found if is_nifti(p)]
            tifs = [p for p in found if LGG_SLICE.match(p.name) and not p.name.endswith("_mask.tif")]
            if vols:
                nifti += vols
            elif tifs and cfg.source_format == "lgg":
                lgg.setdefault(item, []).extend(tifs)
            else:
                raise InputError(f"{item}: folder holds no .nii/.nii.gz volumes"
                                 + (" nor LGG slices" if cfg.source_format == "lgg" else ""))
        elif item.is_file() and is_nifti(item):
            nifti.append(item)
        elif item.is_file() and cfg.source_format == "lgg" and LGG_SLICE.match(item.name):
            lgg.setdefault(item.parent, []).append(item)
        elif not item.exists():
            raise InputError(f"{item}: no such file or folder")
        else:
            raise InputError(f"{item}: not a NIfTI volume (.nii, .nii.gz)")
    jobs = []
    # nnU-Net keeps one file per channel, CASE_0000.nii.gz …, and names the case's labels CASE.nii.gz:
    # the prediction takes the case name whatever the number of channels, so that evaluating it
    # against labelsTs pairs it up. A checkpoint trained on nnU-Net reads only such files.
    nnunet_ckpt = cfg.source_format == "nnunet"
    groups: dict[tuple[Path, str], list[Path]] = {}
    for p in nifti:
        ch = nnunet_channel(p)
        if ch and (nnunet_ckpt or in_nnunet_folder(p)):
            groups.setdefault((p.parent, ch[0]), []).append(p)
        elif nnunet_ckpt and cfg.in_channels > 1:
            raise InputError(f"{p}: expected nnU-Net channel files CASE_0000.nii.gz … (the checkpoint "
                             f"takes {cfg.in_channels} channels)")
        else:
            jobs.append({"kind": "nifti", "files": [p], "outputs": [p.name]})
    for (_, case), files in sorted(groups.items()):
        files = sorted(set(files))
        # With --channels the run kept some of the files' channels; predict_volume checks those.
        if cfg.channels is None and len(files) != cfg.in_channels:
            raise InputError(f"{files[0]}: case {case!r} has {len(files)} channel file(s), the checkpoint "
                             f"takes {cfg.in_channels}")
        ending = files[0].name[len(nifti_stem(files[0])):]
        jobs.append({"kind": "nifti", "files": files, "outputs": [case + ending]})
    for files in lgg.values():
        files = sorted(set(files), key=lambda p: int(LGG_SLICE.match(p.name).group(2)))
        jobs.append({"kind": "lgg", "files": files, "outputs": [p.name for p in files]})
    return jobs


def _read_job(job: dict) -> tuple[np.ndarray, object]:
    if job["kind"] == "lgg":
        imgs = [read_lgg_slice(p) for p in job["files"]]
        for p, a in zip(job["files"], imgs):
            if a.shape != imgs[0].shape:
                raise InputError(f"{p}: shape {a.shape} differs from the patient's first slice {imgs[0].shape}")
        return np.stack(imgs, axis=2).astype(np.float32).transpose(3, 0, 1, 2), None
    vols = [read_nifti(p) for p in job["files"]]
    chans = []
    for v in vols:
        if v.data.shape[:3] != vols[0].data.shape[:3]:
            raise InputError(f"{v.path}: shape {v.data.shape[:3]} differs from {vols[0].path} {vols[0].data.shape[:3]}")
        chans += [v.data] if v.data.ndim == 3 else [v.data[..., c] for c in range(v.data.shape[-1])]
    return np.stack(chans).astype(np.float32), vols[0]


def predict_volumes(checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, device: str = "cpu",
                    batch_size: int = 8, overwrite: bool = False, progress: bool = True) -> list[Path]:
    """``pixeldrl predict`` on volumes: one NIfTI mask per input volume, with its affine and header.

    NIfTI inputs give ``OUT/NAME.nii[.gz]`` (``uint8`` 0/1, the input's file name; nnU-Net channel
    files ``CASE_0000…``, one or several per case, give ``OUT/CASE.nii.gz``: see
    :func:`pixeldrl.data.layouts.in_nnunet_folder`); LGG patient folders (a checkpoint trained on LGG)
    give one 0/255 TIFF per slice with the slice's file name. Every output is checked for clashes
    before anything runs and written atomically, so a failure leaves no partial file.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    agent, cfg = agent_from_checkpoint(checkpoint, device)
    jobs = _volume_jobs(inputs, cfg)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    inputs_resolved = {f.resolve() for j in jobs for f in j["files"]}
    names = [n for j in jobs for n in j["outputs"]]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"two inputs share the output name {sorted(dup)[0]}; predict them into separate folders")
    for n in names:
        t = out_dir / n
        if t.resolve() in inputs_resolved:
            raise InputError(f"{t}: output would overwrite the input; choose another --out")
        if t.exists() and not overwrite:
            raise InputError(f"{t}: already exists; pass --overwrite or choose another --out")
    written = []
    for job in tqdm(jobs, desc="predict", unit="volume", disable=not progress):
        image, like = _read_job(job)
        mask = predict_volume(agent, cfg, image, device, batch_size, where=job["files"][0])
        out_dir.mkdir(parents=True, exist_ok=True)
        if job["kind"] == "nifti":
            written.append(write_nifti_mask(out_dir / job["outputs"][0], mask, like))
        else:
            for k, name in enumerate(job["outputs"]):
                write_mask(out_dir / name, mask[:, :, k])
                written.append(out_dir / name)
    return written


def is_volume_input(inputs: list[str | Path]) -> bool:
    """True when the inputs name NIfTI volumes (files or folders holding them)."""
    for item in map(Path, inputs):
        if item.is_file() and is_nifti(item):
            return True
        if item.is_dir() and any(is_nifti(p) for p in item.iterdir()):
            return True
    return False
