"""PixelDRL-MG with a wider network at Table 2's 128² CPU budget: a probe, seeds one after another.

    OMP_NUM_THREADS=1 python benchmarks/wide_network.py --data runs/demo_data --seed 0 --lr 0.002 --out OUT

Trains the PixelDRL-MG run of RESULTS.md's 128² Table 2 (94 epochs of batch 8, the first 24 at 64², zoom-out
0.5, 2-step episodes, gradient clip 1) with the ``small`` preset's topology at twice its width (trunk 16-32-64-128,
heads 96-48-32-16: 1,149,123 parameters, fewer than any U-Net baseline) and prints test DICE and Boundary IoU.
The network is registered here as a preset named ``wide`` for this process only: no preset of the package
has this width yet (the learning rate to give it, and the one the baselines then get, is still open).
Run two seeds side by side, one thread each, as ``reproduce_runs.py`` does; the run folder is OUT/seedN.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pixeldrl import config
from pixeldrl.nets import pixeldrl_mg

WIDE = pixeldrl_mg.NetConfig(widths=(16, 32, 64, 128), head_widths=(96, 48, 32, 16), sam_reduction=4)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    pixeldrl_mg.PRESETS["wide"] = WIDE
    config.TRAIN_PRESETS["wide"] = dict(config.TRAIN_PRESETS["small"])
    from pixeldrl.training.train import train

    cfg = config.make_config("wide", model="pixeldrl", data=a.data, epochs=94, image_size=128, batch_size=8, lr=a.lr,
                             t_max=2, coarse_epochs=24, zoom_out=0.5, grad_clip=1.0, seed=a.seed, device="cpu",
                             out=str(Path(a.out) / f"seed{a.seed}"))
    train(cfg, progress=False)
    m = json.loads((Path(cfg.out) / "summary.json").read_text())["mean"]
    print(f"seed {a.seed}, Adam {a.lr:g}: test DICE {m['DICE']:.4f}, BIoU {m['BIoU']:.4f}")


if __name__ == "__main__":
    main()
