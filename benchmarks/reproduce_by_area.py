"""Table 2 of ``pixeldrl reproduce`` on the demo data, split by the area of each test slice's label.

    python benchmarks/reproduce_by_area.py [--keep FILE] -- \
        --data runs/demo_data --preset small --image-size 128 --epochs 94 ... --seeds 5 --out runs/reproduce_cpu_128

Takes the same options as ``pixeldrl reproduce`` (after ``--``) and finds each finished Table 2 run the way
``reproduce`` names it; trains nothing. A method's mean over the test split weighs the five top-of-brain
slices (labels of 10–128 pixels) as much as five mid-brain ones; this table shows where the methods
differ: DICE, BIoU, PPV and SEN over the slices of each label-area band (``demo_seeds.AREA_BANDS``), then
mean ± sample std over the seeds (as ``reproduce``'s tables). ``--also-preset small`` adds PixelDRL-MG's runs
of another preset in the same ``--out`` as one more row (as ``reproduce_paired.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from demo_seeds import by_area_table
from machine import cpu_name
from reproduce_runs import finished_runs, settings_from_args, with_preset_row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--keep", help="also write the table to this markdown file")
    p.add_argument("--also-preset", help="one more row: PixelDRL-MG with this preset (its own Adam rate)")
    p.add_argument("reproduce_args", nargs=argparse.REMAINDER, help="-- then pixeldrl reproduce's options")
    a = p.parse_args()
    s = settings_from_args(a.reproduce_args, "table2")
    runs = finished_runs(s)
    if a.also_preset:
        runs = with_preset_row(s, runs, a.also_preset)
    table = "\n".join([
        f"Table 2 runs by label area: test slices grouped by their label's pixels, mean over a band's slices, "
        f"then mean ± sample std over {s.seeds} seeds; {cpu_name()}; "
        f"`python benchmarks/reproduce_by_area.py {' '.join(sys.argv[1:])}`", "",
        by_area_table(runs, Path(s.data), keys=("DICE", "BIoU", "PPV", "SEN"), std=lambda v: np.std(v, ddof=1))])
    print(table)
    if a.keep:
        Path(a.keep).write_text(table + "\n")


if __name__ == "__main__":
    main()
