"""How fast ``train`` gets its slices: from a prepared store versus from raw NIfTI volumes.

    python benchmarks/read_speed.py                     # 10 volumes 256×256×40, network size 256
    python benchmarks/read_speed.py --volumes 4 --depth 20 --repeats 1

Writes a synthetic NIfTI-pairs dataset (``images/`` + ``labels/``, gzip-compressed like MSD) into a
temporary folder, runs ``pixeldrl prepare`` on it once, then times
:func:`pixeldrl.data.dataset.load_dataset` — the call ``train`` makes, returning the train/val/test
tensors — on the raw folder and on the store (best of ``--repeats``; the OS file cache is warm in
both cases). Prints slices/s for both, the one-time cost of ``prepare``, and the CPU (``lscpu``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from machine import cpu_name
from pixeldrl.config import TrainConfig
from pixeldrl.data.store import prepare
from pixeldrl.data.dataset import load_dataset
from pixeldrl.data.protocol import Protocol


def make_dataset(root: Path, n: int, size: int, depth: int, seed: int = 0) -> None:
    """Paired NIfTI volumes: a noisy body with an ellipsoid of foreground through the middle 60 % of slices."""
    rng = np.random.default_rng(seed)
    x, y, z = np.mgrid[:size, :size, :depth].astype(np.float32)
    body = ((x - size / 2) ** 2 + (y - size / 2) ** 2) <= (0.45 * size) ** 2
    affine = np.diag([1.25, 1.25, 2.7, 1.0])
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        cx, cy = rng.uniform(0.4, 0.6, size=2) * size
        fg = (((x - cx) / (0.12 * size)) ** 2 + ((y - cy) / (0.09 * size)) ** 2
              + ((z - depth / 2) / (0.3 * depth)) ** 2) <= 1
        img = (body * rng.normal(300, 40, body.shape) + 400 * fg).astype(np.int16)
        nib.save(nib.Nifti1Image(img, affine), str(root / "images" / f"case{k:02d}.nii.gz"))
        nib.save(nib.Nifti1Image(fg.astype(np.uint8), affine), str(root / "labels" / f"case{k:02d}.nii.gz"))


def timed_load(data: Path, size: int, repeats: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeats):
        cfg = TrainConfig(data=str(data), image_size=size)
        t0 = time.perf_counter()
        splits = load_dataset(cfg)
        best = min(best, time.perf_counter() - t0)
        n = sum(len(ds) for ds in splits.values())
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", type=int, default=10)
    ap.add_argument("--size", type=int, default=256, help="in-plane voxels of the synthetic volumes")
    ap.add_argument("--depth", type=int, default=40, help="slices per volume")
    ap.add_argument("--image-size", type=int, default=256, help="network size (as train --image-size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (as the tests; the machine is shared)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        raw, store = Path(tmp) / "raw", Path(tmp) / "prepared"
        make_dataset(raw, a.volumes, a.size, a.depth)
        t0 = time.perf_counter()
        prepare(raw, store, Protocol(image_size=a.image_size), progress=False)
        t_prep = time.perf_counter() - t0
        t_raw, n_raw = timed_load(raw, a.image_size, a.repeats)
        t_store, n_store = timed_load(store, a.image_size, a.repeats)
        assert n_raw == n_store
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {a.threads} thread(s)")
    print(f"data: {a.volumes} NIfTI volumes {a.size}x{a.size}x{a.depth} (.nii.gz), {n_raw} slices with foreground, "
          f"network size {a.image_size}")
    print(f"{'source':<22}{'seconds':>10}{'slices/s':>12}")
    print(f"{'raw NIfTI':<22}{t_raw:>10.3f}{n_raw / t_raw:>12.1f}")
    print(f"{'prepared store':<22}{t_store:>10.3f}{n_store / t_store:>12.1f}")
    print(f"speed-up {t_raw / t_store:.1f}x; prepare itself (once) took {t_prep:.2f} s")


if __name__ == "__main__":
    main()
