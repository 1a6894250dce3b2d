"""PA3C training (the synchronous batched form of Algorithm 1) and the run folder.

    pixeldrl train --data DATA --preset small --epochs 20 --out runs/mine

Each epoch: shuffle the training slices, and for every batch roll out one ``t_max``-step episode
with sampled actions, compute the PA3C losses (``pa3c.py``) and take one Adam step. Every
``val_every`` epochs the greedy policy segments the validation split; the best validation Dice
picks ``checkpoint_best.pt``. After the last epoch the best checkpoint is evaluated on the test
split at the images' original size: re-read from the raw files for a 2-D folder or raw volumes; for
a prepared store the test split already in memory is evaluated (``evaluate.evaluate_slices``), so a
store trains, validates and tests without its raw folder.

Run folder (everything needed to restore or inspect the run)::

    config.json            the TrainConfig
    splits.json            which image went to which split
    log.csv                one row per epoch: losses, mean reward, entropy, train/val Dice, seconds
    training_curve.png     the log, plotted
    checkpoint_latest.pt   written every epoch (``--resume`` continues from it)
    checkpoint_best.pt     best validation Dice so far
    checkpoint_final.pt    after the last epoch
    summary.json           test-split metrics, the JSON of ``pixeldrl evaluate --json``
    test_per_image.csv     the same, one row per image
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from pixeldrl.training.checkpoint import load_checkpoint, resolve_device, save_checkpoint
from pixeldrl.config import PA3C_MODELS, TrainConfig, validate
from pixeldrl.data.folder import SliceDataset
from pixeldrl.errors import InputError
from pixeldrl.metrics import dice
from pixeldrl.models import build_agent
from pixeldrl.rl.pa3c import Agent, draw_grad_steps, draw_uniforms, episode_losses, episode_stats
from pixeldrl.training.parallel import AsyncWorkers, ShardThreads, average_gradients, dist_env, init_distributed, shard_batches
from pixeldrl.data.protocol import load_dataset
from pixeldrl.predict import segment

LOG_FIELDS = ["epoch", "lr", "loss", "policy_loss", "value_loss", "entropy", "mean_reward",
              "train_dice", "val_dice", "val_steps", "seconds"]


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/DATASET/PRESET[-nosam][-nodc]/seedK — derived from what the run is."""
    variant = cfg.preset + ("" if cfg.use_sam else "-nosam") + ("" if cfg.use_dilation else "-nodc")
    if cfg.model != "pixeldrl":
        variant = f"{cfg.model}-{cfg.preset}"
    return Path("runs") / Path(cfg.data).resolve().name / variant / f"seed{cfg.seed}"


def batch_dice(pred: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """Per-image DICE (paper's ε) of (B, H, W) binary tensors."""
    return [dice(p, g) for p, g in zip(pred.cpu().numpy(), gt.cpu().numpy())]


@torch.no_grad()
def validate_steps(agent: Agent, ds: SliceDataset, t_max: int, device: torch.device, batch_size: int = 16) -> list[float]:
    """Mean greedy DICE over a split after each of the ``t_max`` steps (network size; cheap)."""
    agent.eval()
    per_image = []  # (N, T)
    for start in range(0, len(ds), batch_size):
        x = ds.images[start:start + batch_size].to(device)
        steps = segment(agent, x, t_max, return_steps=True).steps[1:].cpu().numpy()  # (T, B, S, S)
        gts = ds.masks[start:start + batch_size].cpu().numpy()
        per_image += [[dice(steps[t, i], g) for t in range(t_max)] for i, g in enumerate(gts)]
    agent.train()
    return np.mean(per_image, axis=0).tolist() if per_image else [float("nan")] * t_max


def pick_steps(scores: list[float], infer_steps: int = 0) -> tuple[float, int]:
    """(DICE, steps) of greedy inference: at ``infer_steps`` when it is set, else at the step with the
    best score (the earliest of equal ones: fewer forward passes)."""
    if infer_steps:
        k = min(infer_steps, len(scores))
        return scores[k - 1], k
    k = int(np.argmax(scores)) + 1
    return scores[k - 1], k


def validate_dice(agent: Agent, ds: SliceDataset, t_max: int, device: torch.device, infer_steps: int = 0,
                  batch_size: int = 16) -> tuple[float, int]:
    """Validation score for checkpoint selection: (mean greedy DICE, the inference steps it is at)."""
    return pick_steps(validate_steps(agent, ds, t_max, device, batch_size), infer_steps)


def _flip(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator):
    """Random horizontal and vertical flips, the same for image and mask (``augment``)."""
    for dim in (-1, -2):
        flip = torch.rand(images.shape[0], generator=gen) < 0.5
        images[flip] = images[flip].flip(dim)
        masks[flip] = masks[flip].flip(dim)
    return images, masks


STAT_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "mean_reward")


def pa3c_update(agent: Agent, opt: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor,
                cfg: TrainConfig, sample_gen: torch.Generator, grad_hook=None,
                shards: ShardThreads | None = None) -> tuple[list[float], list[float]]:
    """One PA3C update on a batch (B, C, S, S), (B, S, S): rollout, losses, backward, optimiser step.

    ``grad_hook(agent)`` runs between backward and the step: the asynchronous workers hand their
    gradients to the shared parameters there, data-parallel ranks average theirs. ``shards`` runs
    the batch as shards on threads (the same gradient; ``parallel.ShardThreads``).
    Returns the update's ``STAT_KEYS`` values and the sampled episodes' per-image Dice.
    """
    uniforms = draw_uniforms(images, cfg.t_max, sample_gen)  # (T, B, S, S): the episode's action samples
    grad_steps = draw_grad_steps(cfg.t_max, cfg.grad_steps, sample_gen)  # (T,) bool or None (all steps)
    agent.zero_grad(set_to_none=True)
    if shards is None:
        ro, losses = episode_losses(agent, images, masks, cfg, uniforms, grad_steps)
        losses.total.backward()
        stats, final_mask = episode_stats(ro, losses, cfg.t_max), ro.final_mask
    else:
        stats, final_mask = shards.backward(agent, images, masks, uniforms, cfg, grad_steps)
    if grad_hook is not None:
        grad_hook(agent)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
    opt.step()
    return stats.tolist(), batch_dice(final_mask > 0, masks)  # one host sync per update, for the log


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``cfg.lr_schedule``, stepped once after every epoch.

    ``step``: ×``lr_decay`` every ``lr_step`` epochs (the paper's). ``cosine``: epoch e (0-based)
    runs at ``lr · ½(1 + cos(π·e/epochs))``, so the last epochs take small steps; the schedule is a
    function of the epoch alone, so a resumed run continues it exactly.
    """
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * e / cfg.epochs)))
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_decay)


def epoch_batches(n: int, batch_size: int, shuffle_gen: torch.Generator) -> list[torch.Tensor]:
    """The epoch's shuffled index batches (the last one may be short)."""
    order = torch.randperm(n, generator=shuffle_gen)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def summarize(stats: list[list[float]], dices: list[float]) -> dict:
    out = {k: float(np.mean([s[i] for s in stats])) for i, k in enumerate(STAT_KEYS)}
    out["train_dice"] = float(np.mean(dices))
    return out


def train_epoch(agent: Agent, opt: torch.optim.Optimizer, ds: SliceDataset, cfg: TrainConfig,
                device: torch.device, shuffle_gen: torch.Generator, sample_gen: torch.Generator,
                progress: bool, batches: list[torch.Tensor] | None = None, grad_hook=None,
                shards: ShardThreads | None = None) -> dict:
    """One pass over the training split; returns the epoch's mean losses, reward, entropy, Dice."""
    agent.train()
    batches = epoch_batches(len(ds), cfg.batch_size, shuffle_gen) if batches is None else batches
    stats, dices = [], []
    bar = tqdm(batches, desc="train", unit="batch", leave=False, disable=not progress)
    for idx in bar:
        images, masks = ds.images[idx].clone(), ds.masks[idx].clone()  # (B, C, S, S), (B, S, S)
        if cfg.augment:
            images, masks = _flip(images, masks, shuffle_gen)
        s, d = pa3c_update(agent, opt, images.to(device), masks.to(device), cfg, sample_gen, grad_hook, shards)
        stats.append(s)
        dices += d
        bar.set_postfix(loss=f"{s[0]:.3f}", dice=f"{np.mean(dices):.3f}")
    return summarize(stats, dices)


def _read_log(path: Path, upto_epoch: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["epoch"]) <= upto_epoch]


def _write_log(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def record_epoch(run_dir: Path, log: list[dict], cfg: TrainConfig, row: dict, t0: float, n_val: int,
                 validate, best: float, payload, steps: int) -> tuple[float, float, int]:
    """Close an epoch: validate when due, append its row to log.csv, redraw the curve, write
    checkpoint_latest (and checkpoint_best when validation improved). Returns (best, val Dice, steps).

    ``row`` holds the epoch, lr and training stats; ``validate()`` gives the val Dice and the greedy
    steps it was reached at (``pick_steps``); ``payload(epoch, best, steps)`` the checkpoint's
    contents, ``steps`` being the inference steps of that checkpoint's own model (the last
    validated ones when this epoch does not validate). Without a validation split the last epoch
    counts as the best.
    """
    from pixeldrl.report import plot_training_curve

    epoch = row["epoch"]
    val = float("nan")
    if n_val and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
        val, steps = validate()
    improved = not math.isnan(val) and val > best
    if improved:
        best = val
    elif n_val == 0 and epoch == cfg.epochs:
        improved = True
    row = {**row, "val_dice": val, "val_steps": steps if not math.isnan(val) else "", "seconds": time.perf_counter() - t0}
    log.append({k: row.get(k, float("nan")) for k in LOG_FIELDS})  # PA3C-only columns are NaN for U-Nets
    _write_log(run_dir / "log.csv", log)
    plot_training_curve(run_dir / "log.csv", run_dir / "training_curve.png")
    state = payload(epoch, best, steps)
    if improved:
        save_checkpoint(run_dir / "checkpoint_best.pt", state)
    save_checkpoint(run_dir / "checkpoint_latest.pt", state)
    return best, val, steps


def finish_run(run_dir: Path, cfg: TrainConfig, final_payload: dict, evaluate_test: bool, progress: bool,
               test_ds: SliceDataset | None = None) -> Path:
    """checkpoint_final (and _best when validation never ran), then the test split's summary.

    ``test_ds``: the run's in-memory test split. For a prepared store it is what gets evaluated
    (``evaluate.evaluate_slices``; nothing is re-read, the raw folder is never needed); a 2-D folder
    or raw volumes are re-read and evaluated at their original size (``evaluate.evaluate_checkpoint``).
    """
    from pixeldrl.data.layouts import detect_format

    save_checkpoint(run_dir / "checkpoint_final.pt", final_payload)
    if not (run_dir / "checkpoint_best.pt").exists():
        save_checkpoint(run_dir / "checkpoint_best.pt", final_payload)
    if evaluate_test:
        from pixeldrl.evaluate import evaluate_checkpoint, evaluate_slices, write_result

        best = run_dir / "checkpoint_best.pt"
        if test_ds is not None and detect_format(cfg.data, cfg.format) == "prepared":
            from pixeldrl.training.checkpoint import agent_from_checkpoint

            agent, best_cfg = agent_from_checkpoint(best, cfg.device)
            result = evaluate_slices(agent, best_cfg, test_ds, device=cfg.device, progress=progress)
        else:
            result = evaluate_checkpoint(best, cfg.data, "test", device=cfg.device, progress=progress)
        if result["n"]:
            write_result(result, run_dir / "summary.json", run_dir / "test_per_image.csv")
    return run_dir


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, evaluate_test: bool = True) -> Path:
    """Train PixelDRL-MG as configured; returns the run folder. See the module docstring.

    ``cfg.model`` picks the method: the U-Net baselines go to ``supervised.train_supervised`` (same
    run folder, Dice + cross-entropy); ``pixelrl`` runs this PA3C loop with PixelRL's network.
    """
    validate(cfg)
    if cfg.model not in PA3C_MODELS:
        from pixeldrl.training.supervised import train_supervised

        return train_supervised(cfg, resume=resume, progress=progress, evaluate_test=evaluate_test)
    _, world, local_rank = dist_env()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)  # torchrun: one GPU per rank
        torch.cuda.set_device(device)
    if cfg.workers > 1 and (device.type != "cpu" or world > 1):
        raise InputError("--workers: the asynchronous workers run on CPU in one process group; "
                         "use torchrun for several GPUs")
    rank, world = init_distributed(device)
    main_rank = rank == 0
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    latest = run_dir / "checkpoint_latest.pt"
    if resume and not latest.exists():
        raise InputError(f"{latest}: nothing to resume (no checkpoint_latest.pt in the run folder)")
    if not resume and latest.exists() and main_rank:
        raise InputError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
    splits = load_dataset(cfg, progress=progress)  # any layout; records the resolved format etc. in cfg
    train_ds = splits["train"]
    if train_ds.images.shape[1] != cfg.in_channels:
        cfg.in_channels = int(train_ds.images.shape[1])

    torch.manual_seed(cfg.seed)
    agent = build_agent(cfg).to(device)  # PixelDRL-MG, or PixelRL's network (baselines.py)
    agent.set_fast_paths(cfg.channels_last, cfg.amp, cfg.compile, cfg.recompute)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    sample_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + rank)
    start_epoch, best, steps = 1, -1.0, cfg.infer_steps or cfg.t_max
    if resume:
        ckpt = load_checkpoint(latest, map_location=device)
        agent.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        shuffle_gen.set_state(ckpt["shuffle_rng"])
        sample_gen.set_state(ckpt["sample_rng"].cpu())
        start_epoch, best, steps = ckpt["epoch"] + 1, ckpt["best_val_dice"], ckpt.get("infer_steps", steps)
    workers = AsyncWorkers(cfg, agent, opt, train_ds.images, train_ds.masks) if cfg.workers > 1 else None
    shards = ShardThreads(cfg.shards) if cfg.shards > 1 else None
    try:
        return _train_loop(cfg, agent, opt, sched, splits, run_dir, device, shuffle_gen, sample_gen, start_epoch,
                           best, steps, workers, shards, rank, world, progress, evaluate_test)
    finally:
        for pool in (workers, shards):
            if pool is not None:
                pool.close()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train_loop(cfg, agent, opt, sched, splits, run_dir, device, shuffle_gen, sample_gen, start_epoch, best,
                steps, workers, shards, rank, world, progress, evaluate_test) -> Path:
    main_rank = rank == 0
    progress = progress and main_rank
    train_ds, val_ds = splits["train"], splits["val"]
    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "config.json", cfg.to_dict())
        _write_json(run_dir / "splits.json", {k: ds.names for k, ds in splits.items()})
    log = _read_log(run_dir / "log.csv", start_epoch - 1)

    def payload(epoch: int, best: float, steps: int) -> dict:
        return {"model": agent.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "config": cfg.to_dict(), "net_config": cfg.net_config().to_dict(), "epoch": epoch,
                "best_val_dice": best, "infer_steps": steps, "shuffle_rng": shuffle_gen.get_state(),
                "sample_rng": sample_gen.get_state()}

    epochs = tqdm(range(start_epoch, cfg.epochs + 1), desc="epochs", unit="epoch", disable=not progress,
                  initial=start_epoch - 1, total=cfg.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        batches = epoch_batches(len(train_ds), cfg.batch_size, shuffle_gen)
        if workers is not None:
            stats = summarize(*workers.run_epoch(batches, lr))
        elif world > 1:
            stats = train_epoch(agent, opt, train_ds, cfg, device, shuffle_gen, sample_gen, progress,
                                batches=shard_batches(batches, cfg.batch_size, rank, world),
                                grad_hook=average_gradients, shards=shards)
        else:
            stats = train_epoch(agent, opt, train_ds, cfg, device, shuffle_gen, sample_gen, progress, batches,
                                shards=shards)
        with warnings.catch_warnings():
            # With asynchronous workers the steps happen in the workers' optimisers, which the
            # scheduler cannot see; it still sets the learning rate they are sent each epoch.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            sched.step()
        if not main_rank:
            continue  # rank 0 validates and writes; the others wait for it at the next all-reduce
        best, val, steps = record_epoch(run_dir, log, cfg, {"epoch": epoch, "lr": lr, **stats}, t0, len(val_ds),
                                        lambda: validate_dice(agent, val_ds, cfg.t_max, device, cfg.infer_steps),
                                        best, payload, steps)
        epochs.set_postfix(loss=f"{stats['loss']:.3f}", train_dice=f"{stats['train_dice']:.3f}",
                           val_dice=f"{val:.3f}")
    if not main_rank:
        return run_dir
    return finish_run(run_dir, cfg, payload(cfg.epochs, best, steps), evaluate_test, progress, splits["test"])
