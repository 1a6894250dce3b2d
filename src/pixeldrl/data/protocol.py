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
``numpy.random.default_rng(split_seed)`` and cuts them 70/10/20 (:func:`pixeldrl.data.folder.split_sizes`),
so no patient's slices sit on both sides; ``"slice"`` shuffles the slices themselves (the paper's
protocol as written; slices of one patient leak across splits). ``k_shot = K > 0`` then keeps K
training slices drawn without replacement with ``default_rng([split_seed, K])`` (Table 4).

:func:`load_dataset` is what ``train`` calls: it dispatches on the layout (2-D folder, raw
volumes, prepared store) and returns ``{"train", "val", "test"}`` -> :class:`~pixeldrl.data.folder.SliceDataset`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pixeldrl.data.folder import SPLITS, SliceDataset, load_splits, split_sizes, to_network
from pixeldrl.errors import InputError
from pixeldrl.data.layouts import VOLUME_FORMATS, Case, dataset_modality, detect_format, list_cases, read_case
from pixeldrl.data.volumes import DEFAULT_CT_WINDOW, MODALITIES, normalize_channels

SPLIT_LEVELS = ("patient", "slice")

__all__ = ["Protocol", "SliceSet", "select_channels", "binary_target", "cut_slice", "network_slice",
           "cut_volumes", "assign_splits", "k_shot_indices", "datasets_from_sliceset", "load_dataset",
           "largest_in_plane"]


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
    for ci, case in enumerate(tqdm(cases, desc="read", unit="case", disable=not progress)):
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


def assign_splits(patients: Sequence[str], level: str = "patient", seed: int = 0) -> list[str]:
    """The split (``train``/``val``/``test``) of each slice; see the module docstring."""
    if level not in SPLIT_LEVELS:
        raise InputError(f"--split-level {level}: choose one of {', '.join(SPLIT_LEVELS)}")
    rng = np.random.default_rng(seed)
    units = sorted(set(patients)) if level == "patient" else list(range(len(patients)))
    n_train, n_val, _ = split_sizes(len(units))
    order = rng.permutation(len(units))
    which = {}
    for rank, i in enumerate(order):
        which[units[i]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return [which[p] for p in patients] if level == "patient" else [which[i] for i in range(len(patients))]


def k_shot_indices(n_train: int, k: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``k`` training slices drawn without replacement (Table 4's k-shot)."""
    if k > n_train:
        raise InputError(f"--k-shot {k}: the training split holds only {n_train} slices")
    return np.sort(np.random.default_rng([seed, k]).choice(n_train, size=k, replace=False))


def _subset(ds: SliceDataset, idx: np.ndarray) -> SliceDataset:
    t = torch.as_tensor(idx, dtype=torch.long)
    return SliceDataset(ds.images[t], ds.masks[t], [ds.names[i] for i in idx], [ds.original_shapes[i] for i in idx],
                        [ds.pairs[i] for i in idx], [ds.patients[i] for i in idx])


def datasets_from_sliceset(images, masks, names, patients, shapes, split_level: str = "patient",
                           split_seed: int = 0, k_shot: int = 0, size: int | None = None) -> dict[str, SliceDataset]:
    """Split slices (arrays or memory maps) into the three :class:`SliceDataset`; k-shot on train."""
    split = np.asarray(assign_splits(patients, split_level, split_seed))
    out = {}
    for s in SPLITS:
        idx = np.flatnonzero(split == s)
        if s == "train" and k_shot:
            idx = idx[k_shot_indices(len(idx), k_shot, split_seed)]
        x = torch.from_numpy(np.ascontiguousarray(images[idx], dtype=np.float32))  # (n, C, S, S)
        y = torch.from_numpy(np.ascontiguousarray(masks[idx]).astype(np.float32))  # (n, S, S)
        if size is not None and x.shape[-1] != size and len(idx):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            y = torch.nn.functional.interpolate(y[:, None], size=(size, size), mode="nearest")[:, 0]
        out[s] = SliceDataset(x, y, [names[i] for i in idx], [shapes[i] for i in idx],
                              patients=[patients[i] for i in idx])
    return out


def load_dataset(cfg, progress: bool = False) -> dict[str, SliceDataset]:
    """``{"train", "val", "test"}`` datasets for ``cfg.data`` in any layout (what ``train`` reads).

    Records what it resolved in ``cfg`` so the run's config.json holds it (``predict`` on a volume
    reuses it): ``source_format`` (the raw layout), ``modality``; for a prepared store also the
    store's ``labels``, ``channels``, ``axis``, ``keep_empty`` and ``ct_window``.
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
            splits["train"] = _subset(splits["train"], k_shot_indices(len(splits["train"]), cfg.k_shot, cfg.split_seed))
        return splits
    if fmt == "prepared":
        from pixeldrl.data.store import open_store

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
        return datasets_from_sliceset(store.images, store.masks, [s["name"] for s in sl],
                                      [s["patient"] for s in sl], [tuple(s["shape"]) for s in sl],
                                      cfg.split_level, cfg.split_seed, cfg.k_shot, cfg.image_size)
    ss = cut_volumes(cfg.data, Protocol.from_config(cfg), progress=progress)
    cfg.source_format, cfg.modality = ss.format, ss.modality
    return datasets_from_sliceset(ss.images, ss.masks, ss.names, ss.patients, ss.shapes,
                                  cfg.split_level, cfg.split_seed, cfg.k_shot)


def _image_side(path: Path) -> int:
    """The larger side of a 2-D image file: from the PNG header, else by reading the file."""
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as im:
                return int(max(im.size))
        except Exception:  # unreadable: let the reader name the problem
            pass
    from pixeldrl.data.images import read_image

    return int(max(read_image(path).shape))


def _case_side(case: Case, axis: int) -> int:
    """The larger in-plane side of a case's slices along ``axis`` (NIfTI: from the header)."""
    if case.kind == "lgg":
        from pixeldrl.data.layouts import read_lgg_slice

        shape = tuple(read_lgg_slice(case.images[0]).shape[:2]) + (len(case.images),)
    elif case.kind == "png":
        shape = (_image_side(case.images[0]),) * 2 + (1,)
    else:
        import nibabel as nib

        try:
            shape = tuple(int(v) for v in nib.load(str(case.images[0])).shape[:3])
        except Exception:  # unreadable header: read_case names the problem
            shape = tuple(read_case(case).label.shape)
        if len(shape) < 3:
            shape = tuple(read_case(case).label.shape)
    return int(max(v for a, v in enumerate(shape) if a != axis))


def largest_in_plane(root: str | os.PathLike, fmt: str = "auto", axis: int = 2) -> int:
    """The largest in-plane side (max of H and W over every image or slice) of a dataset in any layout.

    2-D folders: every image (PNG from its header); volumes: every case along ``axis`` (NIfTI from
    its header, LGG from a patient's first slice); a prepared store: its slices' original sides,
    at most the store's own size (its slices are stored at that size).
    """
    root = Path(root)
    fmt = detect_format(root, fmt)
    if fmt == "folder":
        from pixeldrl.data.folder import find_pairs

        return max(_image_side(p.image_path) for pairs in find_pairs(root).values() for p in pairs)
    if fmt == "prepared":
        from pixeldrl.data.store import open_store

        man = open_store(root).manifest
        return min(max(max(s["shape"]) for s in man["slices"]), int(man["image_size"]))
    cases = list_cases(root, fmt)
    if not cases:
        raise InputError(f"{root}: no cases found")
    return max(_case_side(c, axis) for c in cases)
