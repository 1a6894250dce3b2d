"""Learning benchmark: PA3C recipe variants × seeds at one budget, against the network's supervised
ceiling and a MONAI U-Net, on the MNI152 white-matter demo slices.

    python benchmarks/learning.py --size 64 --epochs 20 --seeds 0 1 2 --jobs 2 \
        --variants recipe old multistep keep95 ce unet --out benchmarks/results/learning_64

Every run sees the same training slices for the same number of epochs (the budget; updates and wall
seconds are recorded too, since batch sizes differ). After every ``--eval-every`` epochs it records,
on the val and test splits at network size: the greedy Dice after each of the t_max steps (no early
stop), π(zero) averaged over foreground and background pixels of X(0), and the Eq. 8 kernel's
weights. The final model (no checkpoint selection) is scored; the table gives mean ± std over seeds
of test Dice after t_max steps, at the step validation picks, and the Boundary IoU there.

Every PA3C run also keeps exponential moving averages of its weights (decays ``EMA_DECAYS``, the
decay warmed up as ``pixeldrl.training.train.ema_avg_fn`` does) and scores them at the same points:
the rows ``VARIANT+ema0.95`` are the same runs read through the average, a paired comparison
(``pixeldrl train --ema-decay 0.95`` validates and saves that average; ``ema_decay`` itself is not
read here).

Variants are ``TrainConfig`` overrides of the ``small`` preset (``VARIANTS``); ``ce`` trains the
same network's policy logits with cross-entropy on X(0) (its ceiling, one step), ``unet`` the MONAI
U-Net baseline with Dice + cross-entropy (``pixeldrl train --model unet``'s loss). Each run is its own
process with one torch thread (``--jobs`` at most the number of cores). Writes ``results.json``,
``table.md`` and ``curves.png`` into ``--out``.
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

# The recipe of ``pixeldrl.config`` defaults (one-step Eq. 8, fixed delta kernel, neutral start,
# all-pixel averaging, clipping at 5) is ``recipe``; the others change one
# thing, or (``old``) restore the recipe these defaults replaced.
OLD = dict(returns="multi_step", kernel="learned", init_keep_prob=0.95, alive_only=True, grad_clip=0.0,
           head_init_std=0.01, batch_size=2, lr=2e-3)
VARIANTS: dict[str, dict] = {
    "recipe": {},
    "cosine": dict(lr_schedule="cosine"),
    "old": OLD,
    "multistep": dict(returns="multi_step"),
    "keep95": dict(init_keep_prob=0.95),
    "alive_only": dict(alive_only=True),
    "augment": dict(augment=True),
    "done": dict(pixel_done=True),
    "done_gamma0.5": dict(pixel_done=True, gamma=0.5),
    "mask_dead": dict(mask_dead=True),
    "learned_kernel": dict(kernel="learned"),
    "all_actions": dict(policy_gradient="all_actions"),
    "noclip": dict(grad_clip=0.0),
    "batch2": dict(batch_size=2),
    "lr1e-3": dict(lr=1e-3),
    "lr2e-3": dict(lr=2e-3),
    "lr4e-3": dict(lr=4e-3),
    "lr8e-3": dict(lr=8e-3),
    "batch4": dict(batch_size=4),
    "head0.01": dict(head_init_std=0.01),
    "ent0": dict(entropy_beta=0.0),
    "gamma0.5": dict(gamma=0.5),
    "gamma0": dict(gamma=0.0),
    "gradsteps3": dict(grad_steps=3),
    "gradsteps3_e36": dict(grad_steps=3, epochs=36),  # about the recipe's training time at 20 epochs
    "bn": dict(norm="batch"),
    # progressive resizing: the first epochs at half the side (about a third of the time each)
    "coarse24_e36": dict(coarse_epochs=24, epochs=36),
    "coarse30_e40": dict(coarse_epochs=30, epochs=40),
    "recipe_e20": dict(epochs=20),  # all steps for 20 epochs ≈ grad_steps 3 for 36
    # shorter training episodes (inference keeps stopping once a step changes nothing): t_max 3
    # costs about a third of an epoch of t_max 10, so 60 epochs ≈ the recipe's time at 20
    "tmax3": dict(t_max=3),
    "tmax3_e60": dict(t_max=3, epochs=60),
    "tmax2_e90": dict(t_max=2, epochs=90),  # 2-step episodes cost about two thirds of 3-step ones
    "ce": dict(),  # supervised ceiling of the same network (any variant named ce_*: of that variant's network)
    "ce_bn": dict(norm="batch"),
    "ce_nonorm": dict(norm="none"),
    "unet": dict(),  # MONAI U-Net, Dice + cross-entropy
}
EMA_DECAYS = (0.95, 0.98)
"""Per-update decays of the weight averages evaluated beside every PA3C run (``ema0.95`` rows)."""
BASE = dict(epochs=20, batch_size=8, lr=4e-3, lr_step=1000, lr_decay=1.0)  # the small preset's schedule


def _metrics(pred, gt):
    from pixeldrl.metrics import boundary_iou, dice

    return dice(pred, gt), boundary_iou(pred, gt)


def evaluate(model, ds, t_max: int, one_shot: bool) -> dict:
    """Greedy Dice/BIoU after each step (all t_max steps), π(zero) on fg/bg of X(0)."""
    import numpy as np
    import torch

    from pixeldrl.rl import env
    from pixeldrl.rl.pa3c import segment

    model.eval()
    with torch.no_grad():
        x, gt = ds.images, ds.masks  # (N, 1, S, S), (N, S, S)
        if one_shot:
            seg = segment(model, x, t_max, return_steps=True)
            steps = seg.steps[1:]
            p_zero = 1 - seg.keep_prob
        else:
            mask = env.initial_mask(x)
            steps, p_zero = [], None
            for t in range(t_max):
                logits, _ = model.forward_net(env.observe(x, mask))
                if t == 0:
                    p_zero = torch.softmax(logits, 1)[:, env.ZERO]
                mask = env.update_mask(mask, logits.argmax(1))
                steps.append(mask.bool())
            steps = torch.stack(steps)  # (T, N, S, S)
    model.train()
    g = gt.numpy() > 0
    per_step = []
    for s in steps.numpy():
        d, b = zip(*(_metrics(p, q) for p, q in zip(s, g)))
        per_step.append((float(np.mean(d)), float(np.mean(b))))
    pz = p_zero.numpy()
    return {"dice": [d for d, _ in per_step], "biou": [b for _, b in per_step],
            "p_zero_fg": float(pz[g].mean()), "p_zero_bg": float(pz[~g].mean())}


def run_one(job) -> dict:
    name, seed, data, size, epochs, eval_every, overrides = job
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from pixeldrl.models import build_agent
    from pixeldrl.nets.baselines import Segmenter
    from pixeldrl.config import make_config
    from pixeldrl.data.folder import load_splits
    from pixeldrl.training.run import epoch_batches, make_scheduler
    from pixeldrl.training.update import pa3c_update

    splits = load_splits(data, size)
    cfg = make_config("small", data=data, image_size=size, seed=seed, **{**BASE, "epochs": epochs, **overrides})
    torch.manual_seed(seed)
    one_shot = name == "unet"
    supervised = one_shot or name == "ce" or name.startswith("ce_")
    if one_shot:
        from monai.losses import DiceCELoss

        model = Segmenter("unet")
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    else:
        model = build_agent(cfg)
        model.set_fast_paths(None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    shuffle_gen = torch.Generator().manual_seed(seed)
    sample_gen = torch.Generator().manual_seed(seed + 1)
    train = splits["train"]
    from pixeldrl.training.run import coarse_dataset, epoch_dataset

    coarse = coarse_dataset(cfg, train)  # progressive resizing, as training.train does it
    # Exponential moving averages of the weights, updated after every step and evaluated beside
    # the online weights at every evaluation (the same runs: a paired comparison, no extra training).
    from torch.optim.swa_utils import AveragedModel

    from pixeldrl.training.train import ema_avg_fn

    emas = {} if supervised else {d: AveragedModel(model, avg_fn=ema_avg_fn(d), use_buffers=True) for d in EMA_DECAYS}
    curve, updates, t0 = [], 0, time.perf_counter()
    train_seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        ds = epoch_dataset(cfg, epoch, train, coarse)
        for idx in epoch_batches(len(train), cfg.batch_size, shuffle_gen):
            images, masks = ds.images[idx], ds.masks[idx]
            if cfg.augment:  # as update.train_epoch does
                from pixeldrl.data.transforms import random_flip

                images, masks = random_flip(images.clone(), masks.clone(), shuffle_gen)
            if supervised:
                logits = model(images) if one_shot else model.forward_net(images)[0]
                if one_shot:
                    loss = loss_fn(logits, masks.unsqueeze(1))
                else:  # class 1 = keep = foreground
                    loss = torch.nn.functional.cross_entropy(logits, masks.long())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
            else:
                pa3c_update(model, opt, images, masks, cfg, sample_gen)
                for ema in emas.values():
                    ema.update_parameters(model)
            updates += 1
        sched.step()
        train_seconds += time.perf_counter() - t_epoch
        if epoch % eval_every == 0 or epoch == cfg.epochs:
            row = {"epoch": epoch, "updates": updates, "train_seconds": train_seconds}
            for split in ("val", "test"):
                row[split] = evaluate(model, splits[split], cfg.t_max, one_shot)
            for d, ema in emas.items():
                row[f"ema{d}"] = {split: evaluate(ema.module, splits[split], cfg.t_max, False) for split in ("val", "test")}
            if not one_shot:
                row["kernel"] = model.return_kernel.weight.detach().flatten().tolist()
            curve.append(row)
    return {"variant": name, "seed": seed, "overrides": overrides, "curve": curve,
            "wall_seconds": time.perf_counter() - t0}


def summarise(results: list[dict]) -> tuple[str, dict]:
    import numpy as np

    by = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)
        for key in [k for k in r["curve"][-1] if k.startswith("ema")]:  # the weight averages as rows of their own
            curve = [{**row, "val": row[key]["val"], "test": row[key]["test"]} for row in r["curve"]]
            by.setdefault(f"{r['variant']}+{key}", []).append({**r, "curve": curve})
    rows, summary = [], {}
    for name, runs in by.items():
        final = [r["curve"][-1] for r in runs]
        t_last = [f["test"]["dice"][-1] for f in final]
        b_last = [f["test"]["biou"][-1] for f in final]
        # The step validation picks (per run), applied to test.
        picks = [int(np.argmax(f["val"]["dice"])) for f in final]
        t_pick = [f["test"]["dice"][k] for f, k in zip(final, picks)]
        b_pick = [f["test"]["biou"][k] for f, k in zip(final, picks)]
        v_last = [f["val"]["dice"][-1] for f in final]
        pz_fg = [f["test"]["p_zero_fg"] for f in final]
        pz_bg = [f["test"]["p_zero_bg"] for f in final]
        ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}"
        summary[name] = {"test_dice_tmax": t_last, "test_biou_tmax": b_last, "test_dice_pick": t_pick,
                         "test_biou_pick": b_pick, "val_dice_tmax": v_last, "picked_steps": [k + 1 for k in picks]}
        kernel = ""
        if "kernel" in final[0]:
            kernel = f"{np.mean([sum(f['kernel']) for f in final]):.2f}"
        rows.append(f"| {name} | {len(runs)} | {final[0]['updates']} | {np.mean([f['train_seconds'] for f in final]):.0f} "
                    f"| {ms(v_last)} | {ms(t_last)} | {ms(b_last)} | {ms(t_pick)} | {ms(b_pick)} "
                    f"| {','.join(str(k + 1) for k in picks)} | {np.mean(pz_fg):.2f} / {np.mean(pz_bg):.2f} | {kernel} |")
    head = ("| variant | seeds | updates | train s | val DICE (t_max) | test DICE (t_max) | test BIoU (t_max) "
            "| test DICE (val-picked step) | test BIoU (picked) | picked steps | π(zero) fg / bg | Σw |\n"
            "|---|---:|---:|---:|---|---|---|---|---|---|---|---:|")
    return head + "\n" + "\n".join(rows), summary


def plot(results: list[dict], path: Path) -> None:
    """Test Dice over training, mean over seeds (band: min–max): after t_max steps, and at the step
    validation picks at that point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    by = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    for c, (name, runs) in zip(colors[::max(1, 20 // max(1, len(by)))], by.items()):
        epochs = [row["epoch"] for row in runs[0]["curve"]]
        last = np.array([[row["test"]["dice"][-1] for row in r["curve"]] for r in runs])
        picked = np.array([[row["test"]["dice"][int(np.argmax(row["val"]["dice"]))] for row in r["curve"]]
                           for r in runs])
        for ax, d in zip(axes, (last, picked)):
            ax.plot(epochs, d.mean(0), label=name, color=c)
            ax.fill_between(epochs, d.min(0), d.max(0), alpha=0.12, color=c)
    for ax, title in zip(axes, ("after t_max greedy steps", "at the greedy step validation picks")):
        ax.set_title(f"test DICE {title}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=["recipe", "old", "ce", "unet"])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra TrainConfig overrides for every PA3C variant (e.g. preset-wide lr)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--data", default=None, help="demo data folder (written when missing)")
    p.add_argument("--out", default="benchmarks/results/learning")
    p.add_argument("--replot", action="store_true", help="redraw curves.png from --out's results.json only")
    a = p.parse_args()
    if a.replot:
        plot(json.loads((Path(a.out) / "results.json").read_text())["runs"], Path(a.out) / "curves.png")
        return
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    from machine import cpu_name
    from pixeldrl.data.demo import make_demo_dataset

    data = a.data or f"/tmp/pixeldrl_learning_data_{a.size}"
    counts = make_demo_dataset(data, size=a.size)
    extra = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        extra[k] = json.loads(v) if v[:1] in "0123456789-[{tfn" else v
    jobs = [(v, s, data, a.size, a.epochs, a.eval_every, {**extra, **VARIANTS[v]})
            for s in a.seeds for v in a.variants]
    t0 = time.time()
    # A fresh process per run: a run that followed another in the same process drew other numbers.
    with mp.get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        results = []
        for r in pool.imap_unordered(run_one, jobs):
            results.append(r)
            last = r["curve"][-1]
            print(f"{r['variant']:>15} seed {r['seed']}: val {last['val']['dice'][-1]:.3f} "
                  f"test {last['test']['dice'][-1]:.3f} ({r['wall_seconds']:.0f} s)", flush=True)
    results.sort(key=lambda r: (a.variants.index(r["variant"]), r["seed"]))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    table, summary = summarise(results)
    header = (f"Learning benchmark: demo slices {a.size}² ({counts}), small preset, {a.epochs} epochs, "
              f"seeds {a.seeds} (mean ± population std), {a.jobs} jobs × 1 thread on {cpu_name()}; "
              f"`python benchmarks/learning.py {' '.join(sys.argv[1:])}` ({time.time() - t0:.0f} s)\n")
    (out / "table.md").write_text(header + "\n" + table + "\n")
    (out / "results.json").write_text(json.dumps({"args": vars(a), "runs": results, "summary": summary}, indent=1))
    plot(results, out / "curves.png")
    print(header)
    print(table)


if __name__ == "__main__":
    main()
