"""CPU throughput of PA3C training with 1 and N asynchronous workers (``--workers``), one run each.

    python benchmarks/workers.py [--data DIR] [--workers 1 2] [--epochs 2]

Trains the demo's configuration (``pixeldrl.demo.DEMO_TRAIN``, ``small`` preset, 128×128, batch 2)
on the demo slices (written to DIR if missing) and prints training slices/s per worker count, from
the epochs' own timing in ``log.csv`` (the first epoch, which includes process start-up, is dropped
when there are several). ``workers=1`` is the synchronous form with all threads; N workers share them.
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
from pathlib import Path

import torch

from pixeldrl.config import make_config
from pixeldrl.demo import DEMO_TRAIN
from pixeldrl.demo_data import make_demo_dataset
from pixeldrl.train import train


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="runs/demo_data")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--no-channels-last", action="store_true", help="the straightforward NCHW layout")
    a = p.parse_args()
    counts = make_demo_dataset(a.data, size=DEMO_TRAIN["image_size"])
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{counts['train']} training slices, demo config, {a.epochs} epochs per row, "
          f"{'NCHW' if a.no_channels_last else 'channels-last'}")
    print("| workers | train slices/s | s per epoch |")
    print("|---:|---:|---:|")
    for n in a.workers:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = make_config("small", data=a.data, out=str(Path(tmp) / "run"),
                              **{**DEMO_TRAIN, "epochs": a.epochs, "workers": n, "val_every": 1000,
                                 "channels_last": not a.no_channels_last})
            train(cfg, progress=False, evaluate_test=False)
            rows = list(csv.DictReader(open(Path(tmp) / "run" / "log.csv")))
        secs = [float(r["seconds"]) for r in rows]
        secs = secs[1:] if len(secs) > 1 else secs
        per_epoch = sum(secs) / len(secs)
        print(f"| {n} | {counts['train'] / per_epoch:.2f} | {per_epoch:.1f} |", flush=True)


if __name__ == "__main__":
    main()
