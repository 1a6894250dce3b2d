"""What a demo epoch spends outside its updates: validation, the training curve, the checkpoint.

    python benchmarks/epoch_overheads.py [--data DIR] [--repeats 5]

On the demo slices (written to DIR if missing) and the demo's network (``small`` preset, 128×128,
channels-last as training runs it on CPU, the torch default of threads), times in turn, ``--repeats``
times each, median and range: one PA3C update of the demo's batch of 8 (an epoch holds 12 of them),
the greedy validation of the 16 validation slices (``validate_dice``, every epoch in the demo),
drawing ``training_curve.png`` from a log of the demo's length (``plot_training_curve``) and writing one
checkpoint (``save_checkpoint``, twice an epoch when validation improves). Prints a table with each
item's share of a training epoch (12 updates + the item).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name

from pixeldrl.checkpoint import save_checkpoint
from pixeldrl.config import make_config
from pixeldrl.data.dataset import load_dataset
from pixeldrl.data.demo import make_demo_dataset
from pixeldrl.experiments.demo import DEMO_TRAIN
from pixeldrl.models import build_agent
from pixeldrl.report import plot_training_curve
from pixeldrl.training.run import LOG_FIELDS, validate_dice, write_log
from pixeldrl.training.update import pa3c_update


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="runs/demo_data")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    data = Path(a.data)
    make_demo_dataset(data, size=DEMO_TRAIN["image_size"])
    cfg = make_config("small", data=str(data), out="unused", **DEMO_TRAIN)
    splits = load_dataset(cfg, progress=False)
    train_ds, val_ds = splits["train"], splits["val"]
    torch.manual_seed(0)
    agent = build_agent(cfg)
    agent.set_fast_paths(cfg.channels_last, amp=cfg.amp, recompute=cfg.recompute)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(1)
    # (8, 1, 128, 128), (8, 128, 128): the demo's batch
    images, masks = train_ds.images[: cfg.batch_size], train_ds.masks[: cfg.batch_size]
    device = torch.device("cpu")
    tmp = Path(tempfile.mkdtemp(prefix="pixeldrl_overheads_"))
    # A log of the demo's length with plausible values, as the demo's curve is drawn from at its end.
    row = {k: 0.5 for k in LOG_FIELDS}
    write_log(tmp / "log.csv", [{**row, "epoch": e, "val_steps": 2} for e in range(1, DEMO_TRAIN["epochs"] + 1)])
    state = {"model": agent.state_dict(), "optimizer": opt.state_dict(), "config": cfg.to_dict()}

    def update():
        agent.train()
        pa3c_update(agent, opt, images, masks, cfg, gen)

    items = {
        "one update (batch 8)": update,
        "validation (16 slices)": lambda: validate_dice(agent, val_ds, cfg.t_max, device, cfg.infer_steps),
        "training_curve.png": lambda: plot_training_curve(tmp / "log.csv", tmp / "curve.png"),
        "one checkpoint": lambda: save_checkpoint(tmp / "checkpoint.pt", state),
    }
    times: dict[str, list[float]] = {k: [] for k in items}
    for fn in items.values():  # warm-up: oneDNN primitives, matplotlib's fonts
        fn()
    for _ in range(a.repeats):
        for name, fn in items.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    epoch = med["one update (batch 8)"] * len(train_ds) / cfg.batch_size
    print(f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | small preset, "
          f"{cfg.image_size}², channels-last | median (range) of {a.repeats}, items in turn")
    print("| item | s | range | share of an epoch (12 updates + the item) |")
    print("|---|---:|---:|---:|")
    for name, v in times.items():
        share = "—" if name.startswith("one update") else f"{med[name] / (epoch + med[name]):.1%}"
        print(f"| {name} | {med[name]:.3f} | {min(v):.3f}–{max(v):.3f} | {share} |")
    print(f"12 updates: {epoch:.2f} s")


if __name__ == "__main__":
    main()
