"""The best score any method can reach when it segments at a smaller network size than the slices'.

    python benchmarks/resolution_cap.py --data runs/demo_data --size 64 [--split test]

Each ground-truth mask of the split is mapped to the network's ``size`` × ``size`` and back to its own
size with the masks' nearest-neighbour rule (``pixeldrl.data.transforms.to_network`` /
``from_network``, as training and evaluation map masks), then scored against itself: a model whose
network-size mask were perfect would score exactly this at the slice's own size. Prints the mean
DICE and Boundary IoU, and both per label-area band (pixels at the slices' size).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from demo_seeds import AREA_BANDS

from pixeldrl.data.images import read_mask
from pixeldrl.data.transforms import from_network, to_network
from pixeldrl.metrics import boundary_iou, dice

def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="a folder dataset (SPLIT/masks/*.png)")
    p.add_argument("--size", type=int, required=True, help="the network's input side")
    p.add_argument("--split", default="test")
    a = p.parse_args()
    rows = []
    for f in sorted((Path(a.data) / a.split / "masks").glob("*.png")):
        gt = read_mask(f) > 0
        back = from_network(to_network(gt.astype(np.float32), a.size, order=0) > 0.5, gt.shape, order=0)
        rows.append((int(gt.sum()), float(dice(back, gt)), float(boundary_iou(back, gt))))
    area, d, b = map(np.array, zip(*rows))
    print(f"{a.data} {a.split}: {len(rows)} masks, to {a.size}² and back: DICE {d.mean():.3f}, BIoU {b.mean():.3f}")
    for lo, hi in AREA_BANDS:
        sel = (area >= lo) & ((area < hi) if hi else True)
        if sel.any():
            name = f"{lo}–{hi} px" if hi else f">= {lo} px"
            print(f"  {name:>12}: {sel.sum():2d} masks, DICE {d[sel].mean():.3f}, BIoU {b[sel].mean():.3f}")


if __name__ == "__main__":
    main()
