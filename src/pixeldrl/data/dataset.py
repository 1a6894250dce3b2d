"""The one entry to the data: any layout -> ``{"train", "val", "test"}`` network-size slices.

    pixeldrl train --data slices/            # 2-D folder format (data/folder.py)
    pixeldrl train --data Task02_Heart       # raw volumes (data/layouts.py, data/protocol.py)
    pixeldrl train --data prepared/heart     # a prepared store (data/store.py)

:func:`load_dataset` detects the layout and returns :class:`~pixeldrl.data.folder.SliceDataset` per
split; training, validation and the test evaluation all read through it. :func:`largest_in_plane`
gives a dataset's largest in-plane side, whatever its layout (``reproduce`` sizes its runs by it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import nibabel as nib
from PIL import Image

from pixeldrl.data.folder import SliceDataset, find_pairs, load_splits
from pixeldrl.data.images import read_image
from pixeldrl.data.layouts import Case, detect_format, list_cases, read_case, read_lgg_slice
from pixeldrl.data.protocol import Protocol, cut_volumes, datasets_from_sliceset, in_plane_spacings, subset_dataset
from pixeldrl.data.splits import SPLITS, k_shot_indices
from pixeldrl.data.store import open_store
from pixeldrl.errors import InputError


class Splits(dict):
    """``{"train", "val", "test"}`` -> :class:`SliceDataset`, and ``resolved``: the config fields the
    data itself decided (``source_format``, ``modality``, ``in_channels``; for a prepared store also
    its ``labels``, ``channels``, ``axis``, ``keep_empty`` and ``ct_window``), for the caller to
    record (``dataclasses.replace(cfg, **splits.resolved)``) so a run's config.json holds them."""

    def __init__(self, splits: dict[str, SliceDataset], resolved: dict):
        super().__init__(splits)
        some = next(iter(splits.values()), None)
        self.resolved = {**resolved, **({"in_channels": int(some.images.shape[1])} if some is not None else {})}


def load_dataset(cfg, progress: bool = False, only: Sequence[str] = SPLITS) -> Splits:
    """``{"train", "val", "test"}`` datasets for ``cfg.data`` in any layout (what ``train`` reads).

    ``cfg`` is only read; what the data resolved comes back in :attr:`Splits.resolved` (``predict``
    on a volume reuses it through the run's config.json). Volume slices
    carry their in-plane spacing (``SliceDataset.spacings``, from the case's voxel spacing).
    ``only``: build just these splits of a prepared store or raw volumes (evaluation of one split
    of a store reads no more of it); the 2-D folder format always gives all three.
    """
    fmt = detect_format(cfg.data, cfg.format)
    if cfg.k_shot < 0:
        raise InputError(f"--k-shot {cfg.k_shot}: must be >= 0")
    if fmt == "folder":
        if cfg.labels is not None or cfg.channels is not None:
            raise InputError(f"{cfg.data}: --labels and --channels apply to volume layouts; the 2-D folder "
                             f"format has one-channel images and binary masks")
        splits = load_splits(cfg.data, cfg.image_size, cfg.split_seed)
        if cfg.k_shot:
            splits["train"] = subset_dataset(splits["train"], k_shot_indices(len(splits["train"]), cfg.k_shot, cfg.split_seed))
        return Splits(splits, {"source_format": "folder"})
    if fmt == "prepared":
        store = open_store(cfg.data)
        st = store.manifest["settings"]
        for opt, mine, theirs in (("--labels", cfg.labels, st["labels"]), ("--channels", cfg.channels, st["channels"])):
            if mine is not None and mine != theirs:
                raise InputError(f"{opt} {mine}: the prepared store {cfg.data} was made with {theirs}; "
                                 f"prepare the raw data again with {opt}")
        resolved = {"source_format": store.manifest["format"], "modality": st["modality"], "labels": st["labels"],
                    "channels": st["channels"], "axis": st["axis"], "keep_empty": st["keep_empty"],
                    "ct_window": list(st["ct_window"])}
        sl = store.manifest["slices"]
        spacings = in_plane_spacings(store.manifest["cases"], [s["case"] for s in sl], st["axis"])
        return Splits(datasets_from_sliceset(store.images, store.masks, [s["name"] for s in sl],
                                             [s["patient"] for s in sl], [tuple(s["shape"]) for s in sl],
                                             cfg.split_level, cfg.split_seed, cfg.k_shot, cfg.image_size, spacings,
                                             only), resolved)
    ss = cut_volumes(cfg.data, Protocol.from_config(cfg), progress=progress)
    return Splits(datasets_from_sliceset(ss.images, ss.masks, ss.names, ss.patients, ss.shapes,
                                         cfg.split_level, cfg.split_seed, cfg.k_shot,
                                         spacings=in_plane_spacings(ss.cases, ss.case_index, cfg.axis), only=only),
                  {"source_format": ss.format, "modality": ss.modality})


def _image_side(path: Path) -> int:
    """The larger side of a 2-D image file: from the PNG header, else by reading the file."""
    if path.suffix.lower() == ".png":
        try:
            with Image.open(path) as im:
                return int(max(im.size))
        except Exception:  # unreadable: let the reader name the problem
            pass
    return int(max(read_image(path).shape))


def _case_side(case: Case, axis: int) -> int:
    """The larger in-plane side of a case's slices along ``axis`` (NIfTI: from the header)."""
    if case.kind == "lgg":
        shape = tuple(read_lgg_slice(case.images[0]).shape[:2]) + (len(case.images),)
    elif case.kind == "png":
        shape = (_image_side(case.images[0]),) * 2 + (1,)
    else:
        try:
            shape = tuple(int(v) for v in nib.load(str(case.images[0])).shape[:3])
        except Exception:  # unreadable header: read_case names the problem
            shape = tuple(read_case(case).label.shape)
        if len(shape) < 3:
            shape = tuple(read_case(case).label.shape)
    return int(max(v for a, v in enumerate(shape) if a != axis))


def largest_in_plane(root: str | os.PathLike, axis: int = 2) -> int:
    """The largest in-plane side (max of H and W over every image or slice) of a dataset in any layout.

    2-D folders: every image (PNG from its header); volumes: every case along ``axis`` (NIfTI from
    its header, LGG from a patient's first slice); a prepared store: its slices' original sides,
    at most the store's own size (its slices are stored at that size).
    """
    root = Path(root)
    fmt = detect_format(root, "auto")
    if fmt == "folder":
        return max(_image_side(p.image_path) for pairs in find_pairs(root).values() for p in pairs)
    if fmt == "prepared":
        man = open_store(root).manifest
        return min(max(max(s["shape"]) for s in man["slices"]), int(man["image_size"]))
    cases = list_cases(root, fmt)
    if not cases:
        raise InputError(f"{root}: no cases found")
    return max(_case_side(c, axis) for c in cases)
