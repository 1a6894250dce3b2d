"""The demo (``pixeldrl demo``) for several seeds, and the MONAI U-Net on the same split.

    python benchmarks/demo_seeds.py --seeds 0 1 2 [--out /tmp/demo_seeds] [--keep benchmarks/results/demo_seeds]
        [--set batch_size=4 --set epochs=12] [--no-unet]

Each seed runs ``pixeldrl.experiments.demo.run_demo`` into its own folder, one after the other (timed: the
demo's wall time includes writing the data, training, validation, the test evaluation and the
figures). ``--set KEY=VALUE`` changes one of the demo's training settings (``DEMO_TRAIN``) or any
other ``TrainConfig`` field (``--set pixel_done=true``) for a variant of the recipe, for the demo and
the U-Net alike (the U-Net ignores the PA3C fields). Then ``pixeldrl train --model unet`` trains on the same data folder with the demo's
settings (same split, epochs, batch size, learning rate) for each seed. Prints a table of test
metrics (mean ± std over seeds) and writes it, with every run's summary, to ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_name

from pixeldrl.config import TrainConfig, make_config
from pixeldrl.experiments.demo import DEMO_TRAIN, run_demo
from pixeldrl.training.train import train

KEYS = ("DICE", "PPV", "SEN", "IoU", "BIoU", "HD95")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="/tmp/demo_seeds")
    p.add_argument("--keep", help="folder for the table and each run's summary")
    p.add_argument("--no-unet", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field of the demo's training (a recipe variant)")
    a = p.parse_args()
    defaults = TrainConfig().to_dict()
    for item in a.set:
        key, _, value = item.partition("=")
        if key not in defaults:
            p.error(f"--set {item}: {key!r} is not a TrainConfig field")
        kind = type(DEMO_TRAIN.get(key, defaults[key]))
        # run_demo reads the module's DEMO_TRAIN, so the variant is an in-place update of it
        DEMO_TRAIN[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    out = Path(a.out)
    rows = {"pixeldrl": [], "unet": []}
    for seed in a.seeds:
        t0 = time.time()
        res = run_demo(out / f"seed{seed}", seed=seed, progress=False)
        rows["pixeldrl"].append({**res["mean"], "wall_s": time.time() - t0, "seed": seed})
        print(f"demo seed {seed}: DICE {res['mean']['DICE']:.3f} BIoU {res['mean']['BIoU']:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    if not a.no_unet:
        for seed in a.seeds:
            t0 = time.time()
            cfg = make_config("small", model="unet", data=str(out / f"seed{a.seeds[0]}" / "data"),
                              out=str(out / f"unet_seed{seed}"), seed=seed, **DEMO_TRAIN)
            run = train(cfg, progress=False)
            res = json.loads((run / "summary.json").read_text())
            rows["unet"].append({**res["mean"], "wall_s": time.time() - t0, "seed": seed})
            print(f"unet seed {seed}: DICE {res['mean']['DICE']:.3f} BIoU {res['mean']['BIoU']:.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    lines = [f"Demo test split (29 slices, 128²), seeds {a.seeds}, {cpu_name()}; "
             f"`python benchmarks/demo_seeds.py {' '.join(sys.argv[1:])}`", "",
             "| model | " + " | ".join(KEYS) + " | wall (s) |", "|---|" + "---|" * (len(KEYS) + 1)]
    for name, rs in rows.items():
        if rs:
            cell = lambda k: f"{np.mean([r[k] for r in rs]):.3f} ± {np.std([r[k] for r in rs]):.3f}"
            lines.append(f"| {name} | " + " | ".join(cell(k) for k in KEYS)
                         + f" | {np.mean([r['wall_s'] for r in rs]):.0f} (max {max(r['wall_s'] for r in rs):.0f}) |")
    table = "\n".join(lines)
    print(table)
    if a.keep:
        keep = Path(a.keep)
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "table.md").write_text(table + "\n")
        (keep / "runs.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
