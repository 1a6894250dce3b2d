"""Recipe variants of one method in the setting of a ``pixeldrl reproduce`` table, several seeds each.

    python benchmarks/table2_recipe.py --out /tmp/t2r --seeds 0 1 2 --jobs 2 \
        --variant base --variant t2:t_max=2 --variant t2c3:t_max=2,coarse_epochs=3 -- \
        --data runs/demo_data --preset small --image-size 64 --batch-size 4 --epochs 12

Every run is the ``reproduce`` run of ``--model`` (default ``pixeldrl``) for that seed
(``reproduce.run_config``: the same split, preset, budget and test evaluation at the slices' own
size), with the variant's ``KEY=VALUE`` changes to its ``TrainConfig`` on top (``model=NAME``
trains another method, e.g. a baseline beside PixelDRL-MG). Runs train
``--jobs`` at a time in fresh single-threaded processes into ``OUT/VARIANT/seedS`` (finished runs
are skipped), then a table of test DICE and Boundary IoU (mean ± sample std over seeds, and each
seed's), and the same by the area of each test slice's label (``demo_seeds.by_area_table``), are
printed and written to ``OUT/table.md`` (``--table-only``: for the finished runs, training nothing). It answers "which recipe should the table's
runs use?" with seeds, before ``reproduce`` trains them all.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from demo_seeds import by_area_table
from machine import cpu_name


def _value(text: str):
    """``KEY=VALUE``'s value as JSON when it parses (numbers, true/false), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_variant(spec: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE``."""
    name, _, rest = spec.partition(":")
    changes = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return name, {k: _value(v) for k, v in changes.items()}


def _train(job: tuple) -> str:
    settings, model, name, changes, seed, out = job
    changes = dict(changes)
    model = changes.pop("model", model)  # a variant may name another method: ``attu:model=attention-unet``
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from pixeldrl.config import TrainConfig, validate
    from pixeldrl.experiments.reproduce import Row, is_complete, run_config
    from pixeldrl.training.train import train

    torch.set_num_threads(1)
    cfg = run_config(settings, Row(model, model), seed, Path(out))
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **changes, "out": str(Path(out) / name / f"seed{seed}")})
    validate(cfg)
    if is_complete(Path(cfg.out)):
        return f"{name} seed {seed}: skipped"
    t0 = time.time()
    train(cfg, resume=(Path(cfg.out) / "checkpoint_latest.pt").is_file(), progress=False)
    (Path(cfg.out) / "wall.txt").write_text(f"{time.time() - t0:.1f}\n")
    return f"{name} seed {seed}: trained in {time.time() - t0:.0f} s"


def table(runs: dict[str, list[Path]], variants: list[tuple[str, dict]]) -> str:
    """The main table: ``runs`` maps each variant's name to its finished run folders."""
    lines = [f"Machine: {cpu_name()}, one thread per run.", "",
             "| variant | changes | seeds | DICE | BIoU | DICE per seed | wall s / run |",
             "|---|---|---:|---:|---:|---|---:|"]
    for name, changes in variants:
        d, b, w = [], [], []
        for run in runs[name]:
            m = json.loads((run / "summary.json").read_text())["mean"]
            d.append(m["DICE"])
            b.append(m["BIoU"])
            w.append(float((run / "wall.txt").read_text()) if (run / "wall.txt").is_file() else np.nan)
        if not d:
            continue
        sd = lambda v: f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else ""  # noqa: E731
        desc = ", ".join(f"{k}={v}" for k, v in changes.items()) or "(the preset's)"
        lines.append(f"| {name} | {desc} | {len(d)} | {np.mean(d):.3f}{sd(d)} | {np.mean(b):.3f}{sd(b)} | "
                     f"{', '.join(f'{x:.3f}' for x in d)} | {np.nanmean(w):.0f} |")
    return "\n".join(lines)


def main() -> None:
    from pixeldrl.cli import build_parser
    from pixeldrl.experiments.reproduce import Settings

    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="pixeldrl")
    p.add_argument("--variant", action="append", required=True, help="NAME[:KEY=VALUE,...] (repeat)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--table-only", action="store_true", help="train nothing: tabulate the finished runs in --out")
    p.add_argument("reproduce_args", nargs=argparse.REMAINDER, help="-- then pixeldrl reproduce's options")
    a = p.parse_args()
    rest = [x for x in a.reproduce_args if x != "--"]
    r = build_parser().parse_args(["reproduce", "--experiment", "table2", *rest])
    s = Settings(data=r.data, epochs=r.epochs, preset=r.preset, image_size=r.image_size,
                 batch_size=r.batch_size, progress=False)
    variants = [parse_variant(v) for v in a.variant]
    if not a.table_only:
        jobs = [(s, a.model, n, c, seed, a.out) for n, c in variants for seed in a.seeds]
        with mp.get_context("spawn").Pool(a.jobs) as pool:
            for msg in pool.imap_unordered(_train, jobs):
                print(msg, flush=True)
    runs = {n: [Path(a.out) / n / f"seed{seed}" for seed in a.seeds] for n, _ in variants}
    runs = {n: [f for f in fs if (f / "summary.json").is_file()] for n, fs in runs.items()}
    text = (table(runs, variants) + "\n\nTest DICE and BIoU by the label's area (pixels at 128²; "
            "mean over the band's slices, then mean ± std over seeds):\n\n" + by_area_table(runs, Path(s.data)))
    (Path(a.out) / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
