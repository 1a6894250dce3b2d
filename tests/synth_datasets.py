"""Tiny synthetic datasets in every layout ``pixeldrl`` reads: 2-D folders (PNG disks, :func:`make_folder`)
and volumes (NIfTI through nibabel, TIFF through tifffile).

Each volume is 16 × 16 × 6: a body (values ~100) with a bright blob (label 1, ~200) in slices 1-4 and
a smaller label-2 core in slices 2-3; slices 0 and 5 have no foreground. So every volume keeps 4
slices after empty-slice removal (2 with ``labels=[2]``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
import torch
from PIL import Image

SHAPE = (16, 16, 6)
FG_SLICES = 4
AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
AFFINE[:3, 3] = [-10.0, 5.0, 3.0]


def volume(seed: int, shape=SHAPE, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(image (X, Y, Z[, C]) float32, labels (X, Y, Z) uint8 with values 0, 1, 2)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    cx, cy = rng.integers(6, 10, size=2)
    label = np.zeros(shape, np.uint8)
    blob = ((x - cx) ** 2 + (y - cy) ** 2 <= 9) & (z >= 1) & (z <= 4)
    label[blob] = 1
    label[blob & ((x - cx) ** 2 + (y - cy) ** 2 <= 2) & (z >= 2) & (z <= 3)] = 2
    body = (x - 8) ** 2 + (y - 8) ** 2 <= 49
    chans = []
    for c in range(channels):
        img = np.where(body, 100.0 + 10 * c, 0.0) + 100.0 * (label > 0) + rng.normal(0, 5, shape) * body
        chans.append(img.astype(np.float32))
    img = chans[0] if channels == 1 else np.stack(chans, axis=-1)
    return img, label


def save_nifti(path: Path, arr: np.ndarray, affine=AFFINE, dtype=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(arr.astype(dtype or arr.dtype), affine)
    nib.save(img, str(path))
    return path


def make_paired(root: Path, n: int = 3, ext: str = ".nii.gz") -> Path:
    for k in range(n):
        img, lab = volume(k)
        save_nifti(root / "images" / f"case{k}{ext}", img)
        save_nifti(root / "labels" / f"case{k}{ext}", lab)
    return root


def make_msd(root: Path, n: int = 3, channels: int = 1, modality: str = "MRI") -> Path:
    training = []
    for k in range(n):
        img, lab = volume(k, channels=channels)
        name = f"la_{k:03d}.nii.gz"
        save_nifti(root / "imagesTr" / name, img)
        save_nifti(root / "labelsTr" / name, lab)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "imagesTs").mkdir(exist_ok=True)
    meta = {"name": "Synthetic", "modality": {str(c): modality for c in range(channels)},
            "labels": {"0": "background", "1": "outer", "2": "core"}, "numTraining": n,
            "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def make_nnunet(root: Path, n: int = 3, channels: int = 2) -> Path:
    for k in range(n):
        img, lab = volume(k, channels=channels)
        for c in range(channels):
            save_nifti(root / "imagesTr" / f"case_{k:03d}_{c:04d}.nii.gz", img[..., c] if channels > 1 else img)
        save_nifti(root / "labelsTr" / f"case_{k:03d}.nii.gz", lab)
    meta = {"channel_names": {str(c): f"MR{c}" for c in range(channels)},
            "labels": {"background": 0, "outer": 1, "core": 2}, "numTraining": n, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def make_nnunet_png(root: Path, n: int = 4) -> Path:
    from PIL import Image

    for k in range(n):
        img, lab = volume(k)
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img[..., 2], 0, 255).astype(np.uint8)).save(root / "imagesTr" / f"c{k}_0000.png")
        Image.fromarray(lab[..., 2]).save(root / "labelsTr" / f"c{k}.png")
    meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "fg": 1, "core": 2},
            "numTraining": n, "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def make_lgg(root: Path, n: int = 3) -> Path:
    """kaggle_3m/TCGA_XX_000K/TCGA_XX_000K_N.tif (H, W, 3) uint8 + _N_mask.tif 0/255."""
    for k in range(n):
        img, lab = volume(k, channels=3)
        pid = f"TCGA_XX_{k:04d}"
        d = root / "kaggle_3m" / pid
        d.mkdir(parents=True, exist_ok=True)
        for z in range(SHAPE[2]):
            tifffile.imwrite(d / f"{pid}_{z + 1}.tif", np.clip(img[:, :, z], 0, 255).astype(np.uint8))
            tifffile.imwrite(d / f"{pid}_{z + 1}_mask.tif", ((lab[:, :, z] > 0) * 255).astype(np.uint8))
    return root


def disk_image(rng: np.random.Generator, shape=(24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """A bright disk on a noisy dark background: (uint8 image, uint8 0/255 mask)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.integers(h // 3, h - h // 3), rng.integers(w // 3, w - w // 3)
    r = rng.integers(min(h, w) // 6, min(h, w) // 4 + 1)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = np.clip(rng.normal(30, 10, shape) + 170 * mask, 0, 255).astype(np.uint8)
    return img, (mask * 255).astype(np.uint8)


def save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_folder(root: Path, n: int = 6, size: int = 24, seed: int = 0) -> Path:
    """The 2-D folder format: root/images/imgK.png + root/masks/imgK.png, K = 0 … n-1 (8-bit
    grayscale ``size``² disks on noise, masks 0/255)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img, mask = disk_image(rng, (size, size))
        save_png(root / "images" / f"img{k}.png", img)
        save_png(root / "masks" / f"img{k}.png", mask)
    return root


def random_batch(n: int = 2, size: int = 24, seed: int = 0):
    """Network-ready tensors without files: uniform images (N, 1, S, S) and their > 0.6 masks (N, S, S)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)  # (N, 1, S, S)
    return images, (images[:, 0] > 0.6).float()  # (N, S, S)
