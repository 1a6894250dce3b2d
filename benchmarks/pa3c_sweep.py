"""PA3C stability sweep on a prepared demo dataset: prints per-epoch val/train Dice per setting.

    python benchmarks/pa3c_sweep.py DATA_DIR [--device cuda]

DATA_DIR: a folder written by ``pixeldrl.demo_data.make_demo_dataset``. This produced the sweep
quoted in the README's "Known problem" (run on an NVIDIA H100, 15 epochs per setting).
"""
import argparse
import csv

from pixeldrl.config import make_config
from pixeldrl.train import train

RUNS = {
    "lr1e-4": dict(lr=1e-4), "lr3e-5": dict(lr=3e-5), "lr1e-4_keep99": dict(lr=1e-4, init_keep_prob=0.99),
    "lr1e-4_b16": dict(lr=1e-4, batch_size=16), "lr1e-4_all_pixels": dict(lr=1e-4, alive_only=False),
    "lr3e-4_ent0.1": dict(lr=3e-4, entropy_beta=0.1),
}

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=15)
    a = p.parse_args()
    for name, kw in RUNS.items():
        base = dict(image_size=128, epochs=a.epochs, batch_size=4, lr_step=100, val_every=1, **kw)
        cfg = make_config("small", data=a.data, out=f"/tmp/sw_{name}", device=a.device, **base)
        train(cfg, progress=False, evaluate_test=False)
        rows = list(csv.DictReader(open(f"/tmp/sw_{name}/log.csv")))
        print(name, "val_dice:", " ".join(f"{float(r['val_dice']):.3f}" for r in rows),
              "| train:", " ".join(f"{float(r['train_dice']):.2f}" for r in rows), flush=True)
