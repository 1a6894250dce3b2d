"""The one entry to the data: any layout -> ``{"train", "val", "test"}`` network-size slices.

    pixeldrl train --data slices/            # 2-D folder format (data/folder.py)
    pixeldrl train --data Task02_Heart       # raw volumes (data/layouts.py, data/protocol.py)
    pixeldrl train --data prepared/heart     # a prepared store (data/store.py)

:func:`load_dataset` detects the layout and returns :class:`~pixeldrl.data.folder.SliceDataset` per
split; training, validation and the test evaluation all read through it.
"""

from __future__ import annotations

from typing import Sequence

from pixeldrl.data.folder import SPLITS, SliceDataset, load_splits
from pixeldrl.data.layouts import detect_format
from pixeldrl.data.protocol import (Protocol, cut_volumes, datasets_from_sliceset, in_plane_spacings, k_shot_indices,
                                    subset_dataset)
from pixeldrl.data.store import open_store
from pixeldrl.errors import InputError


def load_dataset(cfg, progress: bool = False, only: Sequence[str] = SPLITS) -> dict[str, SliceDataset]:
    """``{"train", "val", "test"}`` datasets for ``cfg.data`` in any layout (what ``train`` reads).

    Records what it resolved in ``cfg`` so the run's config.json holds it (``predict`` on a volume
    reuses it): ``source_format`` (the raw layout), ``modality``; for a prepared store also the
    store's ``labels``, ``channels``, ``axis``, ``keep_empty`` and ``ct_window``. Volume slices
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
        cfg.source_format = "folder"
        if cfg.k_shot:
            splits["train"] = subset_dataset(splits["train"], k_shot_indices(len(splits["train"]), cfg.k_shot, cfg.split_seed))
        return splits
    if fmt == "prepared":
        store = open_store(cfg.data)
        st = store.manifest["settings"]
        for opt, mine, theirs in (("--labels", cfg.labels, st["labels"]), ("--channels", cfg.channels, st["channels"])):
            if mine is not None and mine != theirs:
                raise InputError(f"{opt} {mine}: the prepared store {cfg.data} was made with {theirs}; "
                                 f"prepare the raw data again with {opt}")
        cfg.source_format, cfg.modality = store.manifest["format"], st["modality"]
        cfg.labels, cfg.channels, cfg.axis = st["labels"], st["channels"], st["axis"]
        cfg.keep_empty, cfg.ct_window = st["keep_empty"], list(st["ct_window"])
        sl = store.manifest["slices"]
        spacings = in_plane_spacings(store.manifest["cases"], [s["case"] for s in sl], st["axis"])
        return datasets_from_sliceset(store.images, store.masks, [s["name"] for s in sl],
                                      [s["patient"] for s in sl], [tuple(s["shape"]) for s in sl],
                                      cfg.split_level, cfg.split_seed, cfg.k_shot, cfg.image_size, spacings, only)
    ss = cut_volumes(cfg.data, Protocol.from_config(cfg), progress=progress)
    cfg.source_format, cfg.modality = ss.format, ss.modality
    return datasets_from_sliceset(ss.images, ss.masks, ss.names, ss.patients, ss.shapes,
                                  cfg.split_level, cfg.split_seed, cfg.k_shot,
                                  spacings=in_plane_spacings(ss.cases, ss.case_index, cfg.axis), only=only)
