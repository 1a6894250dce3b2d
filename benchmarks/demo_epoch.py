"""CPU seconds per demo epoch: the straightforward version against each fast path, one run.

    python benchmarks/demo_epoch.py [--data DIR] [--epochs 4] [--repeats 1] [--variants plain cl bf16 shards2 ...]

Trains the demo's configuration (``pixeldrl.experiments.demo.DEMO_TRAIN``: ``small`` preset, 128×128, batch 8)
on the demo slices (written to DIR if missing) for a few epochs per variant and prints seconds per
epoch from each run's ``log.csv`` and the speed-up over ``plain``. Validation is switched off so the
epoch is pure training; the first epoch (process start-up, one-off allocation) and the last (which
always validates) are dropped. Variants run one after another; with ``--repeats N`` the whole list runs
N times in turn and each row gives the median (and the range) of its N runs, so slow drifts of a
shared machine hit every variant alike. Compare ratios within one table.

Variants (``VARIANTS`` below): ``plain`` is the straightforward version (NCHW, float32, one process
with all threads); ``cl`` channels-last; ``bf16`` bfloat16 autocast; ``shardsN`` splits each batch
into N shards on N threads (exact); ``workersN`` asynchronous Hogwild workers (changes the updates);
``torchrunN`` N gloo ranks of one thread with the global batch kept at 2 (exact); ``gradsteps1``
back-propagates through one of the demo's two steps per update, drawn at random (changes the updates).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from machine import cpu_name

from pixeldrl.config import make_config
from pixeldrl.experiments.demo import DEMO_TRAIN
from pixeldrl.data.demo import make_demo_dataset
from pixeldrl.training.train import train

# name → (TrainConfig overrides, torchrun ranks or 0). Everything not named is the demo's setting.
VARIANTS: dict[str, tuple[dict, int]] = {
    "plain": ({"channels_last": False}, 0),
    "cl": ({}, 0),
    "bf16": ({"amp": "bf16"}, 0),
    "shards2": ({"shards": 2}, 0),
    "shards2,bf16": ({"shards": 2, "amp": "bf16"}, 0),
    "workers2": ({"workers": 2}, 0),
    "workers2,bf16": ({"workers": 2, "amp": "bf16"}, 0),
    "torchrun2,bf16": ({"amp": "bf16", "batch_size": 1}, 2),
    "gradsteps1": ({"grad_steps": 1}, 0),
}


def run_variant(name: str, data: str, epochs: int, tmp: Path) -> float:
    """Seconds per epoch of one variant (mean over epochs after the first)."""
    overrides, ranks = VARIANTS[name]
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / name
    # Every epoch at the demo's 128² (no coarse epochs): this times the full-size epoch.
    settings = {**DEMO_TRAIN, "epochs": epochs, "coarse_epochs": 0, "val_every": 1000, **overrides}
    if ranks:
        # The same command line behind torchrun; each rank gets one thread.
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "pixeldrl.cli", "train", "--data", data, "--preset", "small", "--out", str(out),
               "--image-size", str(settings["image_size"]), "--epochs", str(epochs),
               "--batch-size", str(settings["batch_size"]), "--lr", str(settings["lr"]),
               "--val-every", "1000", "--amp", settings.get("amp", "none")]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:  # the progress bars go to stderr; show it only when a rank failed
            sys.exit(f"torchrun variant {name} failed:\n{done.stderr[-3000:]}")
    else:
        cfg = make_config("small", data=data, out=str(out), **settings)
        train(cfg, progress=False, evaluate_test=False)
    rows = list(csv.DictReader(open(out / "log.csv")))
    secs = [float(r["seconds"]) for r in rows]
    secs = secs[1:-1] if len(secs) > 2 else secs  # the first: start-up; the last: it validates
    return sum(secs) / len(secs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="runs/demo_data")
    p.add_argument("--epochs", type=int, default=4, help="epochs per variant (the first and last are dropped)")
    p.add_argument("--repeats", type=int, default=1, help="runs of the whole variant list, in turn (median reported)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = p.parse_args()
    counts = make_demo_dataset(a.data, size=DEMO_TRAIN["image_size"])
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{counts['train']} training slices, demo config, {a.epochs} epochs per run (first and last dropped), "
          f"{a.repeats} run(s) per variant in turn")
    secs: dict[str, list[float]] = {name: [] for name in a.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for name in a.variants:
                secs[name].append(run_variant(name, a.data, a.epochs, Path(tmp) / f"r{r}"))
                print(f"# run {r + 1}: {name} {secs[name][-1]:.1f} s per epoch", file=sys.stderr, flush=True)
    print("| variant | s per epoch (median) | range | train slices/s | speed-up vs plain |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(secs["plain"]) if "plain" in secs else None
    for name, values in secs.items():
        sec = statistics.median(values)
        ratio = f"{base / sec:.2f}×" if base else "–"
        print(f"| {name} | {sec:.1f} | {min(values):.1f}–{max(values):.1f} | {counts['train'] / sec:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
