"""Train the runs of ``pixeldrl reproduce`` experiments in parallel processes, one thread each.

    python benchmarks/reproduce_runs.py --jobs 2 --experiments table2 table3 -- \
        --data runs/demo_data --preset small --image-size 64 --batch-size 4 --epochs 36 --seeds 2 \
        --out runs/reproduce_cpu

``pixeldrl reproduce`` trains its runs one after the other in one process; on a small CPU, two
single-threaded processes side by side finish sooner than one with two threads (the networks are
small, the cores idle between layers). This script trains the same run folders, with the same
settings (``reproduce.run_config``), ``--jobs`` at a time, each in a fresh process with one torch
thread; finished runs are skipped. Then the ``pixeldrl reproduce`` commands (the arguments after
``--``, plus ``--experiment``) find every run finished and only write the tables and figures.
Experiments' runs go in the order given (a time limit then cuts the last), within each the longest
first (``ORDER``), so the pool ends together.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ORDER = ("pixelrl", "unet++", "swin-unetr", "attention-unet", "pixeldrl", "unet")
"""Models by decreasing cost per run on a CPU. Seconds per epoch at 128², batch 8, one thread, on an Intel Xeon
(the ``seconds`` of epoch 2 in ``log.csv`` of ``OMP_NUM_THREADS=1 pixeldrl train --model M --preset small
--image-size 128 --batch-size 8 --t-max 2 --epochs 2``): PixelRL 62, UNet++ 31, Swin-UNETR 17.5; PixelDRL-MG,
the Attention U-Net and the U-Net a few."""


def _train(args: tuple) -> str:
    settings, row, seed = args
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from pixeldrl.experiments.reproduce import ensure_run, output_dir, run_config

    torch.set_num_threads(1)
    t0 = time.time()
    run, what = ensure_run(run_config(settings, row, seed, output_dir(settings)), progress=False)
    return f"{row.key} seed {seed}: {what} in {time.time() - t0:.0f} s ({run})"


def settings_from_args(reproduce_args: list[str], experiment: str, shots: str = "50,100"):
    """``pixeldrl reproduce``'s settings from its command-line options (``--`` dropped), with the image size
    chosen as ``reproduce`` chooses it and no progress bars."""
    import dataclasses

    from pixeldrl.cli import build_parser, reproduce_settings
    from pixeldrl.experiments.reproduce import auto_image_size

    rest = [x for x in reproduce_args if x != "--"]
    r = build_parser().parse_args(["reproduce", "--experiment", experiment, "--shots", shots, *rest])
    s = dataclasses.replace(reproduce_settings(r), progress=False)
    if s.image_size is None:
        s.image_size = auto_image_size(s.data, s.preset)[0]
    return s


def best_val_dice(run: Path) -> float:
    """The best validation DICE in a run's ``log.csv``: the score that picked its checkpoint."""
    with open(run / "log.csv", newline="") as f:
        values = [float(r["val_dice"]) for r in csv.DictReader(f) if r["val_dice"] not in ("", "nan")]
    return max(values) if values else math.nan


def finished_runs(s, experiment: str = "table2") -> dict:
    """``{row label: [run folder of seed 0, 1, …]}`` of an experiment's rows in ``s.models``, found the way
    ``reproduce`` names them; exits naming the first run that is not finished (this trains nothing)."""
    from pixeldrl.experiments.reproduce import experiment_rows, output_dir, run_config, select_rows

    runs = {}
    for row in select_rows(experiment_rows(experiment, s.shots), s.models, experiment):
        folders = [Path(run_config(s, row, seed, output_dir(s)).out) for seed in range(s.seeds)]
        missing = [f for f in folders if not (f / "summary.json").is_file()]
        if missing:
            sys.exit(f"{missing[0]}: no finished run (train it with pixeldrl reproduce or benchmarks/reproduce_runs.py)")
        runs[row.label] = folders
    return runs


def with_preset_row(s, runs: dict, preset: str) -> dict:
    """``runs`` (:func:`finished_runs`) with PixelDRL-MG's runs of another ``preset`` in the same ``--out``, at
    that preset's own Adam rate, as one more row after PixelDRL-MG's; both rows' labels name their preset."""
    from pixeldrl.config import make_config

    other = dataclasses.replace(s, preset=preset, method_lr={"pixeldrl": make_config(preset).lr}, models=("pixeldrl",))
    label, *_ = runs
    return {f"{label} ({s.preset})": runs.pop(label), f"{label} ({preset})": finished_runs(other)[label], **runs}


def main() -> None:
    from pixeldrl.experiments.reproduce import experiment_rows, select_rows

    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--experiments", nargs="+", default=["table2"])
    p.add_argument("--models", nargs="+", default=list(ORDER), help="train only these methods' runs")
    p.add_argument("--only-seeds", type=int, nargs="+", help="train only these seeds' runs")
    p.add_argument("--shots", default="50,100", help="table4's k-shot sizes (as reproduce's --shots)")
    p.add_argument("reproduce_args", nargs=argparse.REMAINDER, help="-- then pixeldrl reproduce's options")
    a = p.parse_args()
    s = settings_from_args(a.reproduce_args, a.experiments[0], a.shots)
    shots = s.shots
    jobs, seen = [], set()
    for exp in a.experiments:
        for row in select_rows(experiment_rows(exp, shots), s.models, exp):  # reproduce's own --models
            for seed in range(s.seeds):
                wanted = row.model in a.models and (a.only_seeds is None or seed in a.only_seeds)
                if wanted and (row, seed) not in seen:
                    seen.add((row, seed))
                    jobs.append((a.experiments.index(exp), ORDER.index(row.model), s, row, seed))
    jobs = [j[2:] for j in sorted(jobs, key=lambda j: j[:2])]
    print(f"{len(jobs)} runs, {a.jobs} at a time", flush=True)
    t0 = time.time()
    with mp.get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        for line in pool.imap_unordered(_train, jobs):
            print(f"[{time.time() - t0:5.0f} s] {line}", flush=True)


if __name__ == "__main__":
    main()
