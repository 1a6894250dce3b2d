"""Table 2 of ``pixeldrl reproduce``, seed by seed: PixelDRL-MG against each other method, paired by seed.

    python benchmarks/reproduce_paired.py [--keep FILE] [--metrics DICE BIoU] -- \
        --data runs/demo_data --preset small --image-size 128 --epochs 94 ... --seeds 10 \
        --models pixeldrl,swin-unetr --out runs/reproduce_cpu_128

Takes the same options as ``pixeldrl reproduce`` (after ``--``) and finds each finished Table 2 run the way
``reproduce`` names it; trains nothing. Runs of the same seed share the split and the order of the
training slices, so the per-seed difference is the comparison with the least noise. For each metric: every
seed's test mean per method, PixelDRL-MG minus the other method per seed, the mean difference ± its
sample std with a 95 % confidence interval (Student's t), the seeds each method wins, and two-sided
p-values of the paired t-test and of the Wilcoxon signed-rank test (SciPy). ``--metrics`` takes the test metrics
of ``summary.json`` and ``val_DICE``, the best validation DICE of ``log.csv`` (what picks the checkpoint).
``--also-preset small`` adds PixelDRL-MG's runs of another preset in the same ``--out`` (at that preset's own Adam
rate) as one more row, e.g. to pair ``medium`` with ``small``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from machine import cpu_name
from reproduce_runs import best_val_dice, finished_runs, settings_from_args, with_preset_row
from scipy import stats


def paired_rows(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """Summary of ``ours − theirs`` over seeds (arrays of equal length, one value per seed)."""
    diff = ours - theirs
    n = len(diff)
    sd = float(np.std(diff, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))
    return {"mean": float(diff.mean()), "std": sd, "lo": float(diff.mean()) - half, "hi": float(diff.mean()) + half,
            "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()),
            "t_p": float(stats.ttest_rel(ours, theirs).pvalue), "w_p": float(stats.wilcoxon(ours, theirs).pvalue)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--keep", help="also write the tables to this markdown file")
    p.add_argument("--metrics", nargs="+", default=["DICE", "BIoU"], help="summary.json metrics, or val_DICE")
    p.add_argument("--also-preset", help="one more row: PixelDRL-MG with this preset (its own Adam rate)")
    p.add_argument("reproduce_args", nargs=argparse.REMAINDER, help="-- then pixeldrl reproduce's options")
    a = p.parse_args()
    s = settings_from_args(a.reproduce_args, "table2")
    runs = finished_runs(s)
    if a.also_preset:
        runs = with_preset_row(s, runs, a.also_preset)
    if len(runs) < 2 or s.seeds < 3:
        sys.exit("need at least two methods (--models) and three seeds (--seeds) to compare")
    # values[label][metric] = one test mean per seed (shape: seeds); each summary.json read once
    means = {label: [{**json.loads((f / "summary.json").read_text())["mean"], "val_DICE": best_val_dice(f)}
                     for f in folders] for label, folders in runs.items()}
    values = {label: {m: np.array([r[m] for r in rows]) for m in a.metrics} for label, rows in means.items()}
    ours, *others = runs
    lines = [f"Table 2 runs paired by seed: {ours} against each other method, {s.seeds} seeds (0–{s.seeds - 1}); "
             f"{cpu_name()}; `python benchmarks/reproduce_paired.py {' '.join(sys.argv[1:])}`", ""]
    for m in a.metrics:
        lines += [f"### {m}", "", "| method | " + " | ".join(f"seed {i}" for i in range(s.seeds)) + " | mean ± sample std |",
                  "|---|" + "---:|" * (s.seeds + 1)]
        for label in runs:
            v = values[label][m]
            lines.append(f"| {label} | " + " | ".join(f"{x:.4f}" for x in v)
                         + f" | {v.mean():.4f} ± {np.std(v, ddof=1):.4f} |")
        lines += ["", f"| {ours} minus | mean ± sample std | 95 % CI | seeds {ours} higher / lower | "
                      "paired t-test p | Wilcoxon p |", "|---|---:|---:|---:|---:|---:|"]
        for label in others:
            r = paired_rows(values[ours][m], values[label][m])
            lines.append(f"| {label} | {r['mean']:+.4f} ± {r['std']:.4f} | [{r['lo']:+.4f}, {r['hi']:+.4f}] | "
                         f"{r['wins']} / {r['losses']} | {r['t_p']:.2f} | {r['w_p']:.2f} |")
        lines.append("")
    table = "\n".join(lines)
    print(table)
    if a.keep:
        Path(a.keep).write_text(table + "\n")


if __name__ == "__main__":
    main()
