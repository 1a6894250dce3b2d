"""The 2-D folder data format: pairing, splits, and each split in memory at network size.

Folder format
-------------
A data set is a folder ``DATA`` holding 2-D images and binary masks paired by file stem::

    DATA/images/NAME.png|.tif|.tiff      DATA/masks/NAME.png|.tif|.tiff

or, with the split given explicitly, the same two subfolders inside ``DATA/train/``, ``DATA/val/``
and ``DATA/test/``. The extension is ignored when pairing (``images/a.png`` pairs with
``masks/a.tif``); extensions are matched case-insensitively, hidden files (``.name``) and
subfolders inside ``images/`` and ``masks/`` are ignored, and any other file there is an error.

* Flat layout (``DATA/images``): the sorted names are shuffled with ``numpy.random.default_rng(seed)``
  and cut 70 / 10 / 20 % into train / val / test (sizes rounded half up, every image in exactly one
  split). With tiny data sets train is never empty, test gets one image as soon as N >= 2 and val
  one as soon as N >= 3 (N = 10 -> 7/1/2, N = 3 -> 1/1/1, N = 2 -> 1/0/1, N = 1 -> 1/0/0).
* Split layout (``DATA/train`` ...): ``train/`` is required and must not be empty; ``val/`` and
  ``test/`` may be missing (their split is then empty), but a split folder that exists must hold
  ``images/`` and ``masks/`` with at least one pair. Giving both ``DATA/images`` and split folders
  is rejected as ambiguous.

Every problem is reported as an :class:`~pixeldrl.errors.InputError` naming the folder or files.

Images are scaled and brought to the network's size by :mod:`pixeldrl.data.transforms`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pixeldrl.errors import InputError
from pixeldrl.data.images import IMAGE_EXTENSIONS, read_image, read_mask
from pixeldrl.data.splits import SPLITS, assign_splits
from pixeldrl.data.transforms import normalize_intensity, to_network


__all__ = [
    "Pair",
    "find_pairs",
    "SliceDataset",
    "load_splits",
]


@dataclass(frozen=True)
class Pair:
    """One image and its mask."""

    name: str
    image_path: Path
    mask_path: Path


# --------------------------------------------------------------------------- pairing and splits


def _list_images(folder: Path) -> dict[str, Path]:
    """Map stem -> path for the image files in ``folder``; reject duplicates and stray files."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if entry.suffix.lower() not in IMAGE_EXTENSIONS:
            raise InputError(
                f"{entry}: unsupported file type {entry.suffix or '(no extension)'!r} in {folder}; "
                f"expected one of {', '.join(IMAGE_EXTENSIONS)}"
            )
        stem = entry.stem
        if stem in found:
            raise InputError(
                f"{folder}: duplicate name {stem!r} with different extensions "
                f"({found[stem].name} and {entry.name})"
            )
        found[stem] = entry
    return found


def _pairs_in(folder: Path) -> list[Pair]:
    """The image/mask pairs of one folder holding ``images/`` and ``masks/``."""
    img_dir, mask_dir = folder / "images", folder / "masks"
    if not img_dir.is_dir():
        raise InputError(f"{folder}: no images/ subfolder")
    if not mask_dir.is_dir():
        raise InputError(f"{folder}: no masks/ subfolder")
    images, masks = _list_images(img_dir), _list_images(mask_dir)
    if not images:
        raise InputError(f"{img_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    for stem, path in images.items():
        if stem not in masks:
            raise InputError(f"{path}: no mask for this image (expected {mask_dir / stem}.png|.tif|.tiff)")
    for stem, path in masks.items():
        if stem not in images:
            raise InputError(f"{path}: mask has no image (expected {img_dir / stem}.png|.tif|.tiff)")
    return [Pair(stem, images[stem], masks[stem]) for stem in sorted(images)]


def find_pairs(data_dir: str | os.PathLike, seed: int = 0) -> dict[str, list[Pair]]:
    """Find the image/mask pairs of a data folder, split into ``train``/``val``/``test``.

    Each split's list is sorted by name. See the module docstring for the layout and the rules.
    """
    root = Path(data_dir)
    if not root.exists():
        raise InputError(f"{root}: data folder not found")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if split_dirs:
        if (root / "images").exists():
            raise InputError(
                f"{root}: holds both images/ and split folders ({', '.join(split_dirs)}/); "
                f"use one layout"
            )
        if "train" not in split_dirs:
            raise InputError(f"{root}: has {', '.join(s + '/' for s in split_dirs)} but no train/ folder")
        return {s: (_pairs_in(split_dirs[s]) if s in split_dirs else []) for s in SPLITS}
    if not (root / "images").is_dir():
        raise InputError(
            f"{root}: no images/ subfolder (expected images/ and masks/, or train/ val/ test/ "
            f"folders each holding them)"
        )
    pairs = _pairs_in(root)  # sorted by name: the split depends on the names and the seed only
    which = assign_splits([p.name for p in pairs], "slice", seed)
    parts = {s: [p for p, w in zip(pairs, which) if w == s] for s in SPLITS}
    return {s: sorted(parts[s], key=lambda p: p.name) for s in SPLITS}


# --------------------------------------------------------------------------- datasets


class SliceDataset(torch.utils.data.Dataset):
    """A whole split in memory at network size.

    Attributes: ``images`` (N, C, S, S) float32 in [0, 1] (C = 1 for the folder format);
    ``masks`` (N, S, S) float32 in {0, 1};
    ``names`` (list of str); ``original_shapes`` (list of (H, W)); ``pairs`` (the source files, or
    ``None`` entries when built from arrays); ``patients`` (the patient of each slice; the name
    itself for 2-D images); ``spacings`` (the in-plane (row, column) pixel size in mm of each slice
    at its original size, ``None`` entries where unknown, e.g. 2-D images).
    ``ds[i]`` returns ``(image (C, S, S), mask (S, S))``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        names: Sequence[str],
        original_shapes: Sequence[tuple[int, int]],
        pairs: Sequence[Pair | None] | None = None,
        patients: Sequence[str] | None = None,
        spacings: Sequence[Sequence[float] | None] | None = None,
    ):
        n = len(names)
        if images.ndim != 4 or images.shape[1] < 1 or images.shape[0] != n:
            raise ValueError(f"images must be (N, C, S, S) with N={n}, got {tuple(images.shape)}")
        if masks.shape != (n, images.shape[2], images.shape[3]):
            raise ValueError(f"masks must be {(n, *images.shape[2:])}, got {tuple(masks.shape)}")
        if len(original_shapes) != n:
            raise ValueError("original_shapes must have one entry per image")
        self.images = images.to(torch.float32)
        self.masks = masks.to(torch.float32)
        self.names = list(names)
        self.original_shapes = [tuple(int(v) for v in s) for s in original_shapes]
        self.pairs = list(pairs) if pairs is not None else [None] * n
        self.patients = list(patients) if patients is not None else list(self.names)
        if spacings is not None and len(spacings) != n:
            raise ValueError("spacings must have one entry per image")
        self.spacings = [None if sp is None else tuple(float(v) for v in sp) for sp in spacings] \
            if spacings is not None else [None] * n

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i]

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair], size: int) -> "SliceDataset":
        """Read, check, normalise and map each pair to ``size x size``."""
        imgs = np.zeros((len(pairs), 1, size, size), dtype=np.float32)
        masks = np.zeros((len(pairs), size, size), dtype=np.float32)
        shapes = []
        for i, p in enumerate(pairs):
            img = read_image(p.image_path)
            mask = read_mask(p.mask_path)
            if img.shape != mask.shape:
                raise InputError(
                    f"{p.image_path} has shape {img.shape} but its mask {p.mask_path} has shape "
                    f"{mask.shape}"
                )
            imgs[i, 0] = to_network(normalize_intensity(img), size, order=1)
            masks[i] = to_network(mask, size, order=0)
            shapes.append(img.shape)
        return cls(
            torch.from_numpy(imgs),
            torch.from_numpy(masks),
            [p.name for p in pairs],
            shapes,
            list(pairs),
        )


def load_splits(data_dir: str | os.PathLike, size: int, seed: int = 0) -> dict[str, SliceDataset]:
    """:func:`find_pairs` then :meth:`SliceDataset.from_pairs` for each split.

    The train split is never empty (find_pairs guarantees it); val/test may be empty when the data
    set is tiny (< 3 images) or, in the split layout, when ``val/`` or ``test/`` is not given.
    """
    pairs = find_pairs(data_dir, seed=seed)
    return {s: SliceDataset.from_pairs(pairs[s], size) for s in SPLITS}
