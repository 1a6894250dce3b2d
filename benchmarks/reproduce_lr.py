"""Each method of a ``reproduce`` table at several Adam learning rates, paired by seed: which rate suits it.

    python benchmarks/reproduce_lr.py --rates 0.004 0.002 --seeds 0 1 2 -- \
        --data runs/demo_data --preset small --image-size 128 --epochs 94 ... --models unet,swin-unetr --out OUT

Train the runs of each rate first (``benchmarks/reproduce_runs.py ... -- ... --lr RATE``, same ``--out``: runs of
several rates live side by side). For every method of ``--models`` this reads the runs of the given seeds that
are finished at every rate (a seed missing at one rate is left out for that method) and prints, per rate, the
mean ± sample std over those seeds of the best validation DICE (the checkpoint's selection score, ``log.csv``)
and of the test DICE and Boundary IoU (``summary.json``), then the rate that validation picks: the rate a fair
table gives that method (``reproduce --method-lr``). Trains nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from machine import cpu_name
from reproduce_runs import best_val_dice, settings_from_args


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main() -> None:
    from pixeldrl.experiments.reproduce import experiment_rows, run_config, select_rows

    p = argparse.ArgumentParser()
    p.add_argument("--rates", type=float, nargs="+", required=True, help="Adam learning rates to compare")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("reproduce_args", nargs=argparse.REMAINDER, help="-- then pixeldrl reproduce's options")
    a = p.parse_args()
    base = settings_from_args(a.reproduce_args, "table2")
    out = Path(base.out)
    lines = [f"Table 2 runs at each Adam rate, paired by seed; {cpu_name()}; "
             f"`python benchmarks/reproduce_lr.py {' '.join(sys.argv[1:])}`", "",
             "| method | Adam lr | seeds | best val DICE | test DICE | test BIoU |", "|---|---:|---|---:|---:|---:|"]
    picks = []
    for row in select_rows(experiment_rows("table2"), base.models, "table2"):
        runs = {}
        for lr in a.rates:
            s = dataclasses.replace(base, lr=lr, method_lr={})
            runs[lr] = {seed: Path(run_config(s, row, seed, out).out) for seed in a.seeds}
        seeds = [seed for seed in a.seeds if all((runs[lr][seed] / "summary.json").is_file() for lr in a.rates)]
        if not seeds:
            lines.append(f"| {row.label} | – | none finished at every rate | | | |")
            continue
        val = {}
        for lr in a.rates:
            folders = [runs[lr][seed] for seed in seeds]
            val[lr] = [best_val_dice(f) for f in folders]
            test = [json.loads((f / "summary.json").read_text())["mean"] for f in folders]
            lines.append(f"| {row.label} | {lr:g} | {' '.join(map(str, seeds))} | {mean_std(val[lr])} | "
                         f"{mean_std([m['DICE'] for m in test])} | {mean_std([m['BIoU'] for m in test])} |")
        best = max(val, key=lambda lr: np.mean(val[lr]))
        picks.append(f"{row.label}: {best:g} (best validation DICE over {len(seeds)} seed(s))")
    print("\n".join(lines + ["", "Rate picked on validation:"] + [f"- {x}" for x in picks]))


if __name__ == "__main__":
    main()
