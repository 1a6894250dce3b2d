"""Intensity normalisation: percentiles over all pixels vs over the pixels above a flat floor.

    python benchmarks/intensity.py --seeds 0 1 2 --jobs 2 --out benchmarks/results/intensity_128

The demo's slices are skull-stripped (zero outside the brain). ``pixeldrl.data.folder.normalize_intensity``
takes its 0.5 / 99.5 percentiles over the pixels above such a floor; the alternative takes them over
all pixels, which on a slice that is 97 % background puts the 99.5th percentile inside the tissue.
Both are compared by what the same ``small`` network learns from them with cross-entropy (its
supervised ceiling, the fastest signal of what the inputs allow): test Dice per seed, and on the
test split's slices grouped by how much white matter they hold. One torch thread per run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def all_pixel_percentiles(img, low: float = 0.5, high: float = 99.5):
    """The alternative: clip at the percentiles of every pixel, then min-max onto [0, 1]."""
    import numpy as np

    a = np.asarray(img, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(a, [low, high]))
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return np.zeros(a.shape, np.float32)
    return np.clip((np.clip(a, lo, hi) - lo) / (hi - lo), 0, 1).astype(np.float32)


def run_one(job) -> dict:
    mode, seed, data, size, epochs = job
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    import pixeldrl.data.folder as D
    from pixeldrl.models import build_agent
    from pixeldrl.config import make_config
    from pixeldrl.metrics import dice
    from pixeldrl.training.run import epoch_batches, make_scheduler

    if mode == "all_pixels":
        D.normalize_intensity = all_pixel_percentiles  # load_splits reads it from the module
    splits = D.load_splits(data, size)
    cfg = make_config("small", data=data, image_size=size, seed=seed, epochs=epochs, batch_size=8, lr=4e-3,
                      lr_schedule="cosine")
    torch.manual_seed(seed)
    model = build_agent(cfg)
    model.set_fast_paths(None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    gen = torch.Generator().manual_seed(seed)
    train = splits["train"]
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in epoch_batches(len(train), cfg.batch_size, gen):
            logits = model.forward_net(train.images[idx])[0]  # class 1 = keep = foreground
            loss = torch.nn.functional.cross_entropy(logits, train.masks[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
        sched.step()
    model.eval()
    out = {"mode": mode, "seed": seed, "seconds": time.perf_counter() - t0}
    with torch.no_grad():
        for split in ("val", "test"):
            ds = splits[split]
            pred = model.forward_net(ds.images)[0].argmax(1).numpy()
            gt = ds.masks.numpy() > 0
            out[split] = [dice(p, g) for p, g in zip(pred, gt)]
            out[split + "_fg"] = gt.sum(axis=(1, 2)).tolist()
    return out


def main() -> None:
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=26)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--data", default=None, help="demo data folder (written when missing)")
    p.add_argument("--out", default="benchmarks/results/intensity")
    a = p.parse_args()
    from machine import cpu_name
    from pixeldrl.data.demo import make_demo_dataset

    data = a.data or f"/tmp/pixeldrl_learning_data_{a.size}"
    make_demo_dataset(data, size=a.size)
    jobs = [(m, s, data, a.size, a.epochs) for s in a.seeds for m in ("all_pixels", "above_floor")]
    with mp.get_context("spawn").Pool(a.jobs) as pool:
        runs = list(pool.imap_unordered(run_one, jobs))
    runs.sort(key=lambda r: (r["mode"], r["seed"]))
    ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}"
    rows = []
    for mode in ("all_pixels", "above_floor"):
        rs = [r for r in runs if r["mode"] == mode]
        fg = np.array(rs[0]["test_fg"])
        small = fg < 200  # the vertex slices: white matter in a few islands
        per_seed = [np.mean(r["test"]) for r in rs]
        rows.append(f"| {mode} | {ms(per_seed)} | {', '.join(f'{v:.3f}' for v in per_seed)} "
                    f"| {ms([np.mean(np.array(r['test'])[~small]) for r in rs])} "
                    f"| {ms([np.mean(np.array(r['test'])[small]) for r in rs])} | {ms([np.mean(r['val']) for r in rs])} |")
    table = ("| percentiles over | test DICE | per seed | test slices ≥ 200 px of WM | test slices < 200 px | val DICE |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows))
    header = (f"Intensity normalisation: the small network with cross-entropy, demo slices {a.size}², {a.epochs} epochs "
              f"of batch 8, Adam 4e-3 cosine, seeds {a.seeds} (mean ± population std), {a.jobs} jobs × 1 thread on {cpu_name()}; "
              f"`python benchmarks/intensity.py {' '.join(sys.argv[1:])}`\n")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(header + "\n" + table + "\n")
    (out / "results.json").write_text(json.dumps({"args": vars(a), "runs": runs}, indent=1))
    print(header)
    print(table)


if __name__ == "__main__":
    main()
