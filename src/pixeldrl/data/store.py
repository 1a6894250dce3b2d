"""``pixeldrl prepare``: convert a raw dataset once into a memory-mappable slice store.

    pixeldrl prepare Task02_Heart --out prepared/heart --image-size 320
    pixeldrl train --data prepared/heart --preset paper

The store is a folder::

    manifest.json   {"pixeldrl_store": 1, "format", "source", "settings", "split_level", "split_seed",
                     "n_slices", "in_channels", "image_size", "cases": [...], "slices": [...]}
    images.npy      (N, C, S, S) float32 in [0, 1], the network inputs
    masks.npy       (N, S, S) uint8 in {0, 1}, the binary targets

``cases`` records per case its name, patient, source files, voxel shape, spacing, affine and
normalisation parameters; ``slices`` per slice its name, case, patient, index along the axis,
in-plane shape before resizing and the split it falls in with the store's ``split_level`` /
``split_seed`` (``train`` recomputes the split the same way, so another ``--split-seed`` or
``--split-level`` works on the same store). Arrays are opened with ``np.load(mmap_mode="r",
allow_pickle=False)``: training reads them with no decoding, normalising or resizing.

A store is self-sufficient: training, validation, the end-of-run test evaluation and ``pixeldrl
evaluate --checkpoint CKPT --data STORE`` read only the store (``source`` is a record; the raw
folder may be moved or deleted). Evaluation maps predictions and the stored masks back to each
slice's recorded in-plane ``shape`` and reports HD95 in mm from the case's ``spacing``
(:func:`pixeldrl.evaluate.evaluate_slices`).

The store is written into a hidden temporary folder beside ``--out`` and renamed into place at the
end, so a failed or interrupted ``prepare`` (Ctrl-C, or SIGTERM, which the command turns into the
same clean exit) leaves nothing behind. After a SIGKILL, which no process can catch, the
temporary folder stays; the next ``prepare`` of the same ``--out`` removes it
(``fileio.clear_abandoned``), and it is never opened as a store. A store whose
``pixeldrl_store`` number differs from :data:`STORE_FORMAT` is refused (re-run ``prepare``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from pixeldrl.errors import InputError, check_types
from pixeldrl.fileio import atomic_dir, is_unfinished
from pixeldrl.data.layouts import MANIFEST
from pixeldrl.data.protocol import Protocol, cut_volumes
from pixeldrl.data.splits import assign_splits

STORE_FORMAT = 1
MAX_STORE_SIZE = 2048
"""Largest ``--image-size`` of a store (a 2048² float32 slice is 16 MiB)."""

__all__ = ["STORE_FORMAT", "Store", "prepare", "open_store"]


def _version() -> str:
    try:
        return version("pixeldrl")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


@dataclass
class Store:
    manifest: dict
    images: np.ndarray
    """(N, C, S, S) float32 memory map."""
    masks: np.ndarray
    """(N, S, S) uint8 memory map."""


def prepare(raw: str | os.PathLike, out: str | os.PathLike, proto: Protocol, split_level: str = "patient",
            split_seed: int = 0, progress: bool = True) -> Path:
    """Cut ``raw`` with ``proto`` (:func:`pixeldrl.data.protocol.cut_volumes`) and write the store ``out``."""
    raw, out = Path(raw), Path(out)
    if out.exists():
        raise InputError(f"--out {out}: already exists; choose a new folder (prepare never overwrites)")
    if raw.resolve() == out.resolve() or out.resolve().is_relative_to(raw.resolve()):
        raise InputError(f"--out {out}: must lie outside the raw dataset {raw}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:  # the store appears complete or not at all
        # Each case's slices are appended to raw files as they come (memory: one case), then copied
        # into .npy files once the slice count is known.
        with open(tmp / "images.raw", "wb") as fi, open(tmp / "masks.raw", "wb") as fm:
            def sink(x: np.ndarray, y: np.ndarray) -> None:
                x.tofile(fi)
                y.tofile(fm)

            ss = cut_volumes(raw, proto, progress=progress, sink=sink)
        n, c, size = len(ss.names), int(ss.images.shape[1]), proto.image_size
        _raw_to_npy(tmp / "images.raw", tmp / "images.npy", np.float32, (n, c, size, size))
        _raw_to_npy(tmp / "masks.raw", tmp / "masks.npy", np.uint8, (n, size, size))
        splits = assign_splits(ss.patients, split_level, split_seed)
        manifest = {
            "pixeldrl_store": STORE_FORMAT,
            "pixeldrl_version": _version(),
            "format": ss.format,
            "source": str(raw.resolve()),
            "settings": {"labels": proto.labels, "channels": proto.channels, "axis": proto.axis,
                         "keep_empty": proto.keep_empty, "modality": ss.modality,
                         "ct_window": list(proto.ct_window), "image_size": size},
            "split_level": split_level,
            "split_seed": split_seed,
            "n_slices": n,
            "in_channels": c,
            "image_size": size,
            "cases": ss.cases,
            "slices": [{"name": nm, "case": int(ci), "patient": p, "index": int(k), "shape": list(sh), "split": sp}
                       for nm, ci, p, k, sh, sp in zip(ss.names, ss.case_index, ss.patients, ss.slice_index,
                                                       ss.shapes, splits)],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def _raw_to_npy(raw: Path, dest: Path, dtype, shape: tuple[int, ...], chunk: int = 256) -> None:
    """Copy a headerless array file into a .npy of ``shape`` (written in chunks), then delete it."""
    src = np.memmap(raw, dtype=dtype, mode="r", shape=shape)
    dst = np.lib.format.open_memmap(dest, mode="w+", dtype=dtype, shape=shape)
    for start in range(0, shape[0], chunk):
        dst[start:start + chunk] = src[start:start + chunk]
    dst.flush()
    del src, dst
    raw.unlink()


_MANIFEST_TYPES = {"format": str, "settings": dict, "split_level": str, "split_seed": int, "n_slices": int,
                   "in_channels": int, "image_size": int, "cases": list, "slices": list}
_SETTINGS_TYPES = {"labels": (list, type(None)), "channels": (list, type(None)), "axis": int, "keep_empty": bool,
                   "modality": str, "ct_window": list}
_SLICE_TYPES = {"name": str, "case": int, "patient": str, "index": int, "shape": list, "split": str}


def _check_manifest(man: dict, path: Path) -> None:
    """InputError naming the entry when a (hand-edited) manifest lacks one or has the wrong type."""
    check_types(man, _MANIFEST_TYPES, str(path))
    check_types(man["settings"], _SETTINGS_TYPES, f"{path} (settings)")
    for i, c in enumerate(man["cases"]):
        check_types(c, {"name": str}, f"{path} (cases[{i}])")
        spacing = c.get("spacing")
        if spacing is not None and (not isinstance(spacing, list)
                                    or not all(isinstance(v, (int, float)) for v in spacing)):
            raise InputError(f"{path} (cases[{i}]): entry 'spacing' should be a list of numbers, found {spacing!r:.60}")
    for i, sl in enumerate(man["slices"]):
        check_types(sl, _SLICE_TYPES, f"{path} (slices[{i}])")
        if not 0 <= sl["case"] < len(man["cases"]):
            raise InputError(f"{path} (slices[{i}]): case {sl['case']} is not one of the {len(man['cases'])} cases")
        if len(sl["shape"]) != 2 or not all(isinstance(v, int) and v > 0 for v in sl["shape"]):
            raise InputError(f"{path} (slices[{i}]): entry 'shape' should be two positive integers, found {sl['shape']!r:.60}")


def open_store(root: str | os.PathLike) -> Store:
    """Open a prepared store (arrays memory-mapped); InputError when it is not one we can read."""
    root = Path(root)
    if is_unfinished(root):
        raise InputError(f"{root}: the temporary folder of an unfinished or interrupted prepare, not a store")
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{mpath}: not a readable prepared-store manifest ({e})") from None
    if not isinstance(manifest, dict) or "pixeldrl_store" not in manifest:
        raise InputError(f"{mpath}: not a pixeldrl prepared store (no 'pixeldrl_store' entry)")
    if manifest["pixeldrl_store"] != STORE_FORMAT:
        raise InputError(f"{root}: prepared store format {manifest['pixeldrl_store']!r} written by pixeldrl "
                         f"{manifest.get('pixeldrl_version', '?')}; this version reads format {STORE_FORMAT}. "
                         f"Run pixeldrl prepare again")
    _check_manifest(manifest, mpath)
    arrays = {}
    for name in ("images", "masks"):
        p = root / f"{name}.npy"
        try:
            arrays[name] = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: cannot read the store's array ({' '.join(str(e).split())[:160]})") from None
    n, img, msk = manifest.get("n_slices"), arrays["images"], arrays["masks"]
    if img.ndim != 4 or img.shape[0] != n or msk.shape != (n, *img.shape[2:]) or len(manifest.get("slices", [])) != n:
        raise InputError(f"{root}: store arrays {img.shape} / {msk.shape} do not match the manifest ({n} slices)")
    return Store(manifest, img, msk)
