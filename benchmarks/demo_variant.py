"""The demo's whole training (20 epochs, validation, test metrics) with other execution options.

    python benchmarks/demo_variant.py --workers 2 --amp bf16 [--out DIR] [--keep benchmarks/results/NAME]

Writes the demo slices to runs/demo_data (if missing), trains ``pixeldrl.experiments.demo.DEMO_TRAIN`` with the
given options into DIR, and prints the wall time and the test split's metrics; ``--keep`` copies the
run's ``config.json``, ``log.csv`` and ``summary.json`` (plus ``wall.txt``) into a results folder. It
answers "does the faster configuration still learn as well?", which the per-epoch timings of
``demo_epoch.py`` cannot. Single runs are noisy (README, Demo): compare with that in mind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from machine import cpu_name

from pixeldrl.config import make_config
from pixeldrl.experiments.demo import DEMO_TRAIN
from pixeldrl.data.demo import make_demo_dataset
from pixeldrl.training.train import train


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--out", default="/tmp/demo_variant")
    p.add_argument("--keep", help="results folder to copy the run's config, log and summary into")
    a = p.parse_args()
    make_demo_dataset("runs/demo_data", size=DEMO_TRAIN["image_size"])
    cfg = make_config("small", data="runs/demo_data", out=a.out,
                      **{**DEMO_TRAIN, "workers": a.workers, "shards": a.shards, "amp": a.amp,
                         # the asynchronous workers hold one copy of the slices: no coarse epochs with them
                         **({"coarse_epochs": 0} if a.workers > 1 else {})})
    t0 = time.time()
    run = train(cfg, progress=False)
    wall = time.time() - t0
    mean = json.load(open(run / "summary.json"))["mean"]
    line = (f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}: "
            f"workers={a.workers} shards={a.shards} amp={a.amp}: wall {wall:.0f} s")
    print(line)
    print(json.dumps(mean, indent=1))
    if a.keep:
        keep = Path(a.keep)
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "log.csv", "summary.json"):
            shutil.copy(run / name, keep / name)
        (keep / "wall.txt").write_text(line + "\n")


if __name__ == "__main__":
    main()
