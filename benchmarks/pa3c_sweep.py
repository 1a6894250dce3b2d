"""PA3C hyper-parameter sweep on the demo slices: every setting trains in its own process, in parallel.

    python benchmarks/pa3c_sweep.py DATA_DIR [--device cuda] [--epochs 20] [--jobs 10] [--only NAME ...]

DATA_DIR: a folder written by ``pixeldrl.data.demo.make_demo_dataset`` (``pixeldrl demo`` writes one
to ``OUT/data``). Each setting is the demo's training config (``pixeldrl.experiments.demo.DEMO_TRAIN``) with the
overrides in ``RUNS``; the table gives the validation Dice (greedy) after every epoch and the best.
On one GPU the settings share the card; on CPU give each process one thread (``--jobs`` ≤ cores).
"""
import argparse
import csv
import multiprocessing as mp
import os
import time

RUNS = {
    "demo": {},
    "no_norm": dict(norm="none"),  # VGG16 as published: collapses (README, "Training stability")
    "keep0.9": dict(init_keep_prob=0.9),
    "lr3e-3": dict(lr=3e-3),
    "lr1e-3": dict(lr=1e-3),
    "ent0.03": dict(entropy_beta=0.03),
    "batch1_lr1e-3": dict(batch_size=1, lr=1e-3),
    "decay0.5_every10": dict(lr_step=10, lr_decay=0.5),
    "paper_schedule": dict(batch_size=2, lr=1e-3, lr_step=25, lr_decay=0.9),
}


def one(args):
    name, data, device, epochs, out = args
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from pixeldrl.config import make_config
    from pixeldrl.experiments.demo import DEMO_TRAIN
    from pixeldrl.training.train import train

    t0 = time.time()
    kw = {**DEMO_TRAIN, "epochs": epochs, "coarse_epochs": 0, **RUNS[name]}  # every epoch at 128², as swept
    cfg = make_config("small", data=data, out=f"{out}/{name}", device=device, **kw)
    try:
        train(cfg, progress=False, evaluate_test=False)
    except Exception as e:  # a failed setting is a row, not a crash of the sweep
        return name, [], f"failed: {e}", time.time() - t0
    rows = list(csv.DictReader(open(f"{out}/{name}/log.csv")))
    return name, [float(r["val_dice"]) for r in rows], "", time.time() - t0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--out", default="/tmp/pa3c_sweep")
    a = p.parse_args()
    names = a.only or list(RUNS)
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.jobs) as pool:
        for name, vals, err, secs in pool.imap_unordered(one, [(n, a.data, a.device, a.epochs, a.out) for n in names]):
            best = max(vals) if vals else float("nan")
            print(f"{name:16s} best {best:.3f} ({secs:.0f} s) | val: " + " ".join(f"{v:.2f}" for v in vals) + err,
                  flush=True)
