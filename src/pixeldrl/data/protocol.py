"""The paper's data protocol: volumes -> normalised 2-D slices, empty slices removed, 70/10/20, k-shot.

    pixeldrl train --data Task02_Heart --preset paper --image-size 320          # raw volumes
    pixeldrl train --data prepared/heart --k-shot 50                             # a prepared store

For every case of a volume layout (:mod:`pixeldrl.data.layouts`):

1. pick the input channels (``channels``; default all) and normalise each over the whole volume
   (:func:`pixeldrl.data.volumes.normalize_volume`: MRI percentile clip + body z-score mapped onto
   [0, 1]; CT window);
2. make the binary target: voxels whose label is in ``labels`` (default: every nonzero label);
3. cut along ``axis`` (0, 1 or 2 of the stored array; 2 = the third voxel axis, axial for MSD and
   the slice order for LGG) and drop slices without foreground unless ``keep_empty``;
4. map each slice to ``image_size`` × ``image_size`` (:func:`pixeldrl.data.folder.to_network`: zero-pad to
   a square, then resize; bilinear for images, nearest for masks).

Splits: ``split_level="patient"`` (default) shuffles the patients with
``numpy.random.default_rng(split_seed)`` and cuts them 70/10/20 (:mod:`pixeldrl.data.splits`),
so no patient's slices sit on both sides; ``"slice"`` shuffles the slices themselves (the paper's
protocol as written; slices of one patient leak across splits). ``k_shot = K > 0`` then keeps K
training slices drawn without replacement with ``default_rng([split_seed, K])`` (Table 4).

:func:`pixeldrl.data.dataset.load_dataset` is what ``train`` calls: it dispatches on the layout
(2-D folder, raw volumes, prepared store) and uses this module for the volumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pixeldrl.data.folder import SliceDataset
from pixeldrl.data.splits import SPLITS, assign_splits, k_shot_indices
from pixeldrl.data.transforms import to_network
from pixeldrl.errors import InputError
from pixeldrl.data.layouts import VOLUME_FORMATS, Case, dataset_modality, detect_format, list_cases, read_case
from pixeldrl.data.volumes import DEFAULT_CT_WINDOW, MODALITIES, normalize_channels
from pixeldrl.progress import bar

__all__ = ["Protocol", "SliceSet", "select_channels", "binary_target", "cut_slice", "network_slice",
           "cut_volumes", "in_plane_spacings", "datasets_from_sliceset",
           "subset_dataset"]


@dataclass
class Protocol:
    """How volumes become network slices (the data fields of :class:`~pixeldrl.config.TrainConfig`)."""

    format: str = "auto"
    labels: list[int] | None = None
    channels: list[int] | None = None
    axis: int = 2
    keep_empty: bool = False
    modality: str = "auto"
    ct_window: tuple[float, float] = DEFAULT_CT_WINDOW
    image_size: int = 256

    @classmethod
    def from_config(cls, cfg) -> "Protocol":
        return cls(cfg.format, cfg.labels, cfg.channels, cfg.axis, cfg.keep_empty, cfg.modality,
                   tuple(cfg.ct_window), cfg.image_size)

    def check(self) -> None:
        if self.axis not in (0, 1, 2):
            raise InputError(f"--axis {self.axis}: choose 0, 1 or 2")
        if self.modality not in ("auto",) + MODALITIES:
            raise InputError(f"--modality {self.modality}: choose auto, {', '.join(MODALITIES)}")
        if self.labels is not None and (not self.labels or any(int(v) < 1 for v in self.labels)):
            raise InputError(f"--labels {self.labels}: give one or more label values >= 1")
        if self.channels is not None and (not self.channels or any(int(c) < 0 for c in self.channels)):
            raise InputError(f"--channels {self.channels}: give one or more channel indices >= 0")


@dataclass
class SliceSet:
    """Every kept slice of a dataset at network size, before splitting."""

    images: np.ndarray
    """(N, C, S, S) float32 in [0, 1]."""
    masks: np.ndarray
    """(N, S, S) uint8 in {0, 1}."""
    names: list[str]
    patients: list[str]
    case_index: np.ndarray
    """(N,) index into ``cases``."""
    slice_index: np.ndarray
    """(N,) position of the slice along ``axis`` in its volume."""
    shapes: list[tuple[int, int]]
    """In-plane (H, W) of each slice before resizing."""
    cases: list[dict] = field(default_factory=list)
    """Per case: name, patient, files, shape, spacing, affine, normalisation parameters."""
    format: str = ""
    modality: str = "mri"


def select_channels(image: np.ndarray, channels: Sequence[int] | None, where: object) -> np.ndarray:
    """(C, ...) -> the channels asked for (all when ``channels`` is None)."""
    if channels is None:
        return image
    bad = [c for c in channels if not 0 <= int(c) < image.shape[0]]
    if bad:
        raise InputError(f"{where}: has {image.shape[0]} channel(s); --channels {bad[0]} does not exist")
    return image[list(int(c) for c in channels)]


def binary_target(label: np.ndarray, labels: Sequence[int] | None) -> np.ndarray:
    """Voxels whose label is in ``labels`` (every nonzero label when None), as ``uint8`` 0/1."""
    if labels is None:
        return (label > 0).astype(np.uint8)
    return np.isin(label, np.asarray(list(labels), dtype=label.dtype)).astype(np.uint8)


def cut_slice(arr: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Slice ``k`` along spatial ``axis`` of (X, Y, Z) or (C, X, Y, Z) -> (H, W) or (C, H, W)."""
    # Basic indexing gives a view; np.take would copy (and scan) the whole volume for every slice.
    return arr[(slice(None),) * (axis + arr.ndim - 3) + (k,)]


def network_slice(img: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) normalised slice -> (C, size, size) network input."""
    return np.stack([to_network(ch, size, order=1) for ch in img])


def _resolve_modality(proto: Protocol, root: Path, fmt: str) -> str:
    return dataset_modality(root, fmt) if proto.modality == "auto" else proto.modality


def cut_volumes(root: str | os.PathLike, proto: Protocol, progress: bool = False,
                cases: list[Case] | None = None, index_only: bool = False, sink=None) -> SliceSet:
    """Read every case of a volume layout and cut it into network slices (steps 1-4 above).

    ``index_only``: find the kept slices (names, patients, positions) without building the network
    inputs; ``images`` and ``masks`` are then empty (evaluation uses it to recompute the split).
    ``sink(images (n, C, S, S), masks (n, S, S))``: receives each case's slices instead of keeping
    them (``prepare`` streams them to disk, so memory holds one case at a time); the returned
    ``images`` and ``masks`` are then empty too.
    """
    proto.check()
    root = Path(root)
    fmt = detect_format(root, proto.format)
    if fmt not in VOLUME_FORMATS:
        raise InputError(f"{root}: is a {fmt} dataset, not volumes ({', '.join(VOLUME_FORMATS)}); "
                         f"train reads it directly, there is nothing to prepare")
    modality = _resolve_modality(proto, root, fmt)
    cases = list_cases(root, fmt) if cases is None else cases
    size = proto.image_size
    images, masks, names, patients, case_idx, slice_idx, shapes, info = [], [], [], [], [], [], [], []
    present: set[int] = set()
    n_channels = None
    for ci, case in enumerate(bar(cases, desc="read", unit="case", enabled=progress)):
        data = read_case(case)
        image = select_channels(data.image, proto.channels, case.images[0])
        if n_channels is None:
            n_channels = image.shape[0]
        elif image.shape[0] != n_channels:
            raise InputError(f"{case.images[0]}: has {image.shape[0]} channels, earlier cases {n_channels}")
        present.update(int(v) for v in np.flatnonzero(np.bincount(data.label.ravel())))  # labels are >= 0
        target = binary_target(data.label, proto.labels)
        norm = []
        if not index_only:
            image, norm = normalize_channels(image, modality, proto.ct_window)
        case_images, case_masks = [], []
        for k in range(target.shape[proto.axis]):
            m = cut_slice(target, proto.axis, k)
            if not proto.keep_empty and not m.any():
                continue
            if not index_only:
                case_images.append(network_slice(cut_slice(image, proto.axis, k), size))
                case_masks.append(to_network(m, size, order=0).astype(np.uint8))
            names.append(f"{case.name}_{'xyz'[proto.axis]}{k:03d}")
            patients.append(case.patient)
            case_idx.append(ci)
            slice_idx.append(k)
            shapes.append(tuple(int(v) for v in m.shape))
        if case_images:
            x, y = np.stack(case_images).astype(np.float32), np.stack(case_masks)  # (n, C, S, S), (n, S, S)
            if sink is not None:
                sink(x, y)
            else:
                images.append(x)
                masks.append(y)
        info.append({"name": case.name, "patient": case.patient, "kind": case.kind,
                     "images": [str(p) for p in case.images] if case.kind != "lgg" else [str(case.images[0].parent)],
                     "labels": [str(p) for p in case.labels] if case.kind != "lgg" else [],
                     "shape": [int(v) for v in data.label.shape], "spacing": list(data.spacing),
                     "affine": data.geometry.affine.tolist() if data.geometry is not None else None,
                     "normalisation": {"modality": modality, "channels": norm}})
    if proto.labels is not None:
        missing = sorted(set(int(v) for v in proto.labels) - present)
        if missing:
            raise InputError(f"{root}: label value {missing[0]} (--labels) never occurs in any label file "
                             f"(values present: {sorted(present)})")
    if not names:
        raise InputError(f"{root}: no slices left after removing slices without foreground "
                         f"(labels {proto.labels or 'nonzero'}, axis {proto.axis}); check --labels or pass "
                         f"--keep-empty")
    if index_only or sink is not None:
        images, masks = np.zeros((0, n_channels, size, size), np.float32), np.zeros((0, size, size), np.uint8)
    else:
        images, masks = np.concatenate(images), np.concatenate(masks)
    return SliceSet(images, masks, names, patients,
                    np.asarray(case_idx, dtype=np.int64), np.asarray(slice_idx, dtype=np.int64), shapes,
                    info, fmt, modality)


def subset_dataset(ds: SliceDataset, idx: np.ndarray) -> SliceDataset:
    t = torch.as_tensor(idx, dtype=torch.long)
    return SliceDataset(ds.images[t], ds.masks[t], [ds.names[i] for i in idx], [ds.original_shapes[i] for i in idx],
                        [ds.pairs[i] for i in idx], [ds.patients[i] for i in idx], [ds.spacings[i] for i in idx])


def in_plane_spacings(cases: Sequence[dict], case_index: Sequence[int], axis: int) -> list[list[float] | None]:
    """Per slice, the (row, column) pixel size in mm: its case's voxel ``spacing`` without ``axis``."""
    per_case = [None if c.get("spacing") is None else [float(v) for a, v in enumerate(c["spacing"]) if a != axis]
                for c in cases]
    return [per_case[int(ci)] for ci in case_index]


def datasets_from_sliceset(images, masks, names, patients, shapes, split_level: str = "patient",
                           split_seed: int = 0, k_shot: int = 0, size: int | None = None, spacings=None,
                           only: Sequence[str] = SPLITS) -> dict[str, SliceDataset]:
    """Split slices (arrays or memory maps) into the :class:`SliceDataset` of each split in ``only``
    (default all three); k-shot on train. ``spacings``: per slice its in-plane spacing, or None."""
    split = np.asarray(assign_splits(patients, split_level, split_seed))
    out = {}
    for s in only:
        idx = np.flatnonzero(split == s)
        if s == "train" and k_shot:
            idx = idx[k_shot_indices(len(idx), k_shot, split_seed)]
        x = torch.from_numpy(np.ascontiguousarray(images[idx], dtype=np.float32))  # (n, C, S, S)
        y = torch.from_numpy(np.ascontiguousarray(masks[idx]).astype(np.float32))  # (n, S, S)
        if size is not None and x.shape[-1] != size and len(idx):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            y = torch.nn.functional.interpolate(y[:, None], size=(size, size), mode="nearest")[:, 0]
        out[s] = SliceDataset(x, y, [names[i] for i in idx], [shapes[i] for i in idx],
                              patients=[patients[i] for i in idx],
                              spacings=None if spacings is None else [spacings[i] for i in idx])
    return out
