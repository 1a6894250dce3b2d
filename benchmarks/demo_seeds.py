"""The demo (``pixeldrl demo``) for several seeds, and the MONAI U-Net on the same split.

    python benchmarks/demo_seeds.py --seeds 0 1 2 [--out /tmp/demo_seeds] [--keep benchmarks/results/demo_seeds]
        [--set batch_size=4 --set epochs=12] [--baselines unet attention-unet] [--no-unet | --baselines-only]

Each seed runs ``pixeldrl.experiments.demo.run_demo`` into its own folder, one after the other (timed: the
demo's wall time includes writing the data, training, validation, the test evaluation and the
figures). ``--set KEY=VALUE`` changes one of the demo's training settings (``DEMO_TRAIN``) or any
other ``TrainConfig`` field (``--set pixel_done=true``) for a variant of the recipe, for the demo and
the baselines alike (they ignore the PA3C fields). Then ``pixeldrl train --model unet`` (each of
``--baselines``; ``--no-unet``: none) trains on the same data folder with the demo's settings (same
split, epochs, batch size, learning rate) for each seed (``--baselines-only``: those alone, on the
data a demo run left in ``--out``, e.g. in a second process beside it). Prints a table of test
metrics (mean ± population std over seeds, as ``np.std``; ``reproduce`` tables give the sample std)
and writes it, with every run's summary and per-slice scores, to ``--keep``.

A second table splits the test slices by the area of their white-matter label (pixels at the
network's side): the demo's mean is an average over slices, and a handful of slices at the top and
bottom of the brain, with labels of 10–700 pixels, weigh as much as the large mid-brain ones.
``--from DIR`` prints both tables for the runs an earlier call left in ``DIR`` (its ``--out``)
without training anything.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_name

from pixeldrl.config import SUPERVISED_MODELS, TrainConfig, make_config
from pixeldrl.experiments.demo import DEMO_TRAIN, run_demo
from pixeldrl.training.train import train

KEYS = ("DICE", "PPV", "SEN", "IoU", "BIoU", "HD95")
AREA_BANDS = ((0, 200), (200, 1000), (1000, None))
"""Label-area bands (pixels) of the by-area table: the demo's test split at 128² has 5 slices under
200 pixels (the top of the brain), 8 between 200 and 1000 (the bottom), 16 above 1000."""


def mean_std(values, std=np.std) -> str:
    return f"{np.mean(values):.3f} ± {std(values):.3f}"


def by_area_table(runs: dict[str, list[Path]], data: Path, keys=("DICE", "BIoU"), std=np.std) -> str:
    """``keys`` (DICE and BIoU) over the test slices of each label-area band, mean ± std over each model's runs.

    ``runs`` maps a model's name to its run folders (each with the ``summary.json`` that training
    writes: the per-image test metrics); ``data`` is the demo data folder they were tested on; ``std``
    the spread over runs (population, ``np.std``, here; ``reproduce`` tables give the sample std).
    """
    from pixeldrl.data.images import read_mask

    area = {f.stem: int((read_mask(f) > 0).sum()) for f in sorted((data / "test" / "masks").glob("*.png"))}
    head = ["model"] + [f"{lo}–{hi} px" if hi else f"≥ {lo} px" for lo, hi in AREA_BANDS]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * len(AREA_BANDS)]
    counts = [sum(lo <= a and (hi is None or a < hi) for a in area.values()) for lo, hi in AREA_BANDS]
    lines.append("| test slices | " + " | ".join(str(c) for c in counts) + " |")
    for name, folders in runs.items():
        if not folders:
            continue
        per_run = [json.loads((f / "summary.json").read_text())["per_image"] for f in folders]
        for key in keys:
            cells = []
            for lo, hi in AREA_BANDS:
                means = [np.mean([r[key] for r in rows if lo <= area[r["name"]] and (hi is None or area[r["name"]] < hi)])
                         for rows in per_run]
                cells.append(mean_std(means, std))
            lines.append(f"| {name} {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_folders(out: Path, seeds) -> dict[str, list[tuple[Path, int]]]:
    """(run folder, seed) of the runs that ``main`` leaves under ``out`` for these seeds (those that exist)."""
    found = {"pixeldrl": [(out / f"seed{s}" / "run", s) for s in seeds]}
    found.update({m: [(out / f"{m}_seed{s}", s) for s in seeds] for m in SUPERVISED_MODELS})
    return {k: [(f, s) for f, s in v if (f / "summary.json").is_file()] for k, v in found.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="/tmp/demo_seeds")
    p.add_argument("--keep", help="folder for the table and each run's summary")
    p.add_argument("--baselines", nargs="+", default=["unet"], choices=SUPERVISED_MODELS)
    p.add_argument("--no-unet", action="store_true", help="train no baseline")
    p.add_argument("--baselines-only", action="store_true",
                   help="train only the baselines, on the data folder a demo run of the first seed left in --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field of the demo's training (a recipe variant)")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="train nothing: tabulate the runs earlier calls left in DIR (their --out; seeds run "
                        "in separate processes may share it); the time column is then the epochs' time from "
                        "each run's log.csv")
    a = p.parse_args()
    if a.from_dir:
        out = Path(a.from_dir)
        rows = {name: [{**json.loads((f / "summary.json").read_text())["mean"], "seed": seed,
                        "wall_s": sum(float(r["seconds"]) for r in csv.DictReader(open(f / "log.csv")))}
                       for f, seed in found]
                for name, found in run_folders(out, a.seeds).items()}
        report(a, out, rows, "epochs' time (s, log.csv)")
        return
    defaults = TrainConfig().to_dict()
    for item in a.set:
        key, _, value = item.partition("=")
        if key not in defaults:
            p.error(f"--set {item}: {key!r} is not a TrainConfig field")
        kind = type(DEMO_TRAIN.get(key, defaults[key]))
        # run_demo reads the module's DEMO_TRAIN, so the variant is an in-place update of it
        DEMO_TRAIN[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    out = Path(a.out)
    if a.baselines_only and (a.no_unet or not (out / f"seed{a.seeds[0]}" / "data").is_dir()):
        p.error(f"--baselines-only trains on {out}/seed{a.seeds[0]}/data, which a demo run leaves (and not with --no-unet)")
    rows = {"pixeldrl": [], **{m: [] for m in a.baselines}}
    for seed in [] if a.baselines_only else a.seeds:
        t0 = time.time()
        res = run_demo(out / f"seed{seed}", seed=seed, progress=False)
        rows["pixeldrl"].append({**res["mean"], "wall_s": time.time() - t0, "seed": seed})
        print(f"demo seed {seed}: DICE {res['mean']['DICE']:.3f} BIoU {res['mean']['BIoU']:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    for model in [] if a.no_unet else a.baselines:
        for seed in a.seeds:
            t0 = time.time()
            cfg = make_config("small", model=model, data=str(out / f"seed{a.seeds[0]}" / "data"),
                              out=str(out / f"{model}_seed{seed}"), seed=seed, **DEMO_TRAIN)
            run = train(cfg, progress=False)
            res = json.loads((run / "summary.json").read_text())
            rows[model].append({**res["mean"], "wall_s": time.time() - t0, "seed": seed})
            print(f"{model} seed {seed}: DICE {res['mean']['DICE']:.3f} BIoU {res['mean']['BIoU']:.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    report(a, out, rows, "wall (s)")


def report(a: argparse.Namespace, out: Path, rows: dict[str, list[dict]], time_column: str) -> None:
    """Print the tables of ``rows`` (per model, one dict of test means per seed) and keep them."""
    found = run_folders(out, a.seeds)
    lines = [f"Demo test split (29 slices, 128²), seeds {a.seeds} (mean ± population std), {cpu_name()}; "
             f"`python benchmarks/demo_seeds.py {' '.join(sys.argv[1:])}`", "",
             "| model | " + " | ".join(KEYS) + f" | {time_column} |", "|---|" + "---|" * (len(KEYS) + 1)]
    for name, rs in rows.items():
        if rs:
            cell = lambda k: mean_std([r[k] for r in rs])
            lines.append(f"| {name} | " + " | ".join(cell(k) for k in KEYS)
                         + f" | {np.mean([r['wall_s'] for r in rs]):.0f} (max {max(r['wall_s'] for r in rs):.0f}) |")
    lines += ["", "By label area (test slices grouped by their label's pixels at 128²; mean over the band's "
              "slices, then mean ± population std over seeds):", "",
              by_area_table({k: [f for f, _ in v] for k, v in found.items()}, out / f"seed{a.seeds[0]}" / "data")]
    table = "\n".join(lines)
    print(table)
    if a.keep:
        keep = Path(a.keep)
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "table.md").write_text(table + "\n")
        (keep / "runs.json").write_text(json.dumps(rows, indent=1))
        for name, runs in found.items():  # each slice's scores
            for folder, seed in runs:
                shutil.copyfile(folder / "test_per_image.csv", keep / f"{name}_seed{seed}_test_per_image.csv")


if __name__ == "__main__":
    main()
