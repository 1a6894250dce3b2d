"""PA3C training: ``train`` sets a run up, runs the epochs and finishes the run folder.

    pixeldrl train --data DATA --preset small --epochs 20 --out runs/mine

Each epoch runs ``update.train_epoch`` (or the asynchronous workers, or a data-parallel rank's
shard, ``parallel.py``); every ``val_every`` epochs the greedy policy segments the validation split
and the best validation Dice picks ``checkpoint_best.pt`` (``run.py``, which also lists the run
folder). After the last epoch the best checkpoint is evaluated on the test split. The U-Net
baselines go to ``supervised.py`` with the same run folder.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from pixeldrl.checkpoint import resolve_device
from pixeldrl.config import PA3C_MODELS, TrainConfig, validate
from pixeldrl.data.dataset import load_dataset
from pixeldrl.errors import InputError, check_types, first_line
from pixeldrl.models import build_agent
from pixeldrl.progress import bar
from pixeldrl.training.parallel import AsyncWorkers, average_gradients, dist_env, init_distributed, shard_batches
from pixeldrl.training.run import (TensorBoardLog, check_memory, coarse_dataset, epoch_batches, epoch_dataset,
                                   finish_run, make_scheduler, open_run, read_log, record_epoch,
                                   restore_run, run_folder, validate_dice, write_json)
from pixeldrl.training.supervised import train_supervised
from pixeldrl.training.update import ShardThreads, summarize, train_epoch


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, evaluate_test: bool = True) -> Path:
    """Train PixelDRL-MG as configured; returns the run folder. See the module docstring.

    ``cfg.model`` picks the method: the U-Net baselines go to ``supervised.train_supervised`` (same
    run folder, Dice + cross-entropy); ``pixelrl`` runs this PA3C loop with PixelRL's network.
    """
    validate(cfg)
    if cfg.model not in PA3C_MODELS:
        return train_supervised(cfg, resume=resume, progress=progress, evaluate_test=evaluate_test)
    _, world, local_rank = dist_env()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)  # torchrun: one GPU per rank
        torch.cuda.set_device(device)
    if cfg.workers > 1 and (device.type != "cpu" or world > 1):
        raise InputError("--workers: the asynchronous workers run on CPU in one process group; "
                         "use torchrun for several GPUs")
    check_memory(cfg, device)
    rank, world = init_distributed(device)
    # config.json records absolute paths: the run resumes and evaluates from any working directory.
    cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data), out=str(run_folder(cfg)))
    with open_run(cfg, resume, main_rank=rank == 0) as run_dir:
        return _train_in(cfg, run_dir, device, rank, world, resume, progress, evaluate_test)


def ema_avg_fn(decay: float):
    """AveragedModel's update with the decay warmed up as TensorFlow's ExponentialMovingAverage does
    it: ``min(decay, (1 + n) / (10 + n))`` after n updates, so a short run's average is not held back
    by its first, untrained weights (with 0.95 from the start, the first update's weights would
    still weigh 31 % after 24 updates). From about 170 updates on it is the plain decay."""
    def avg(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        return averaged * d + current * (1 - d)
    return avg


def _train_in(cfg: TrainConfig, run_dir: Path, device: torch.device, rank: int, world: int, resume: bool,
              progress: bool, evaluate_test: bool) -> Path:
    """``train`` inside the held run folder: data, model, optimiser, restore, the loop."""
    splits = load_dataset(cfg, progress=progress)  # any layout
    cfg = dataclasses.replace(cfg, **splits.resolved)  # what the data decided goes into config.json
    train_ds = splits["train"]
    coarse_ds = coarse_dataset(cfg, train_ds)  # progressive resizing: the first epochs' shrunk slices

    torch.manual_seed(cfg.seed)
    agent = build_agent(cfg).to(device)  # PixelDRL-MG, or PixelRL's network (baselines.py)
    agent.set_fast_paths(cfg.channels_last, amp=cfg.amp, recompute=cfg.recompute)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    sample_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + rank)
    # The weight average (``ema_decay``) is what validation scores and the checkpoints' "model" holds;
    # torch's AveragedModel keeps it, updated after every optimiser step.
    ema = AveragedModel(agent, avg_fn=ema_avg_fn(cfg.ema_decay), use_buffers=True) if cfg.ema_decay > 0 else None
    start_epoch, best, steps = 1, -1.0, cfg.infer_steps or cfg.t_max
    if resume:
        latest = run_dir / "checkpoint_latest.pt"
        ckpt = restore_run(latest, cfg, device, agent, opt, sched, shuffle_gen)
        check_types(ckpt, {"sample_rng": torch.Tensor}, str(latest))
        sample_gen.set_state(ckpt["sample_rng"].cpu())
        start_epoch, best, steps = ckpt["epoch"] + 1, ckpt["best_val_dice"], ckpt.get("infer_steps", steps)
        if ema is not None:  # "model" held the average; the optimiser's own weights are "online_model"
            check_types(ckpt, {"online_model": dict, "ema_updates": int}, str(latest))
            try:
                ema.module.load_state_dict(ckpt["model"])
                agent.load_state_dict(ckpt["online_model"])
            except (RuntimeError, KeyError) as e:
                raise InputError(f"{latest}: does not fit this run's model: {first_line(e)}") from None
            ema.n_averaged.fill_(ckpt["ema_updates"])
    coarse = None if coarse_ds is None else (coarse_ds.images, coarse_ds.masks)
    workers = AsyncWorkers(cfg, agent, opt, train_ds.images, train_ds.masks, coarse) if cfg.workers > 1 else None
    shards = ShardThreads(cfg.shards) if cfg.shards > 1 else None
    try:
        return _train_loop(cfg, agent, opt, sched, splits, run_dir, device, shuffle_gen, sample_gen, start_epoch,
                           best, steps, workers, shards, rank, world, progress, evaluate_test, ema, coarse_ds)
    finally:
        for pool in (workers, shards):
            if pool is not None:
                pool.close()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train_loop(cfg, agent, opt, sched, splits, run_dir, device, shuffle_gen, sample_gen, start_epoch, best,
                steps, workers, shards, rank, world, progress, evaluate_test, ema=None, coarse_ds=None) -> Path:
    main_rank = rank == 0
    scored = agent if ema is None else ema.module  # the weights validated, checkpointed and evaluated
    after_step = None if ema is None else (lambda: ema.update_parameters(agent))
    progress = progress and main_rank
    train_ds, val_ds = splits["train"], splits["val"]
    if main_rank:
        write_json(run_dir / "config.json", cfg.to_dict())
        write_json(run_dir / "splits.json", {k: ds.names for k, ds in splits.items()})
    log = read_log(run_dir / "log.csv", start_epoch - 1)

    def payload(epoch: int, best: float, steps: int) -> dict:
        extra = {} if ema is None else {"online_model": agent.state_dict(), "ema_updates": int(ema.n_averaged)}
        return {"model": scored.state_dict(), **extra, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "config": cfg.to_dict(), "net_config": cfg.net_config().to_dict(), "epoch": epoch,
                "best_val_dice": best, "infer_steps": steps, "shuffle_rng": shuffle_gen.get_state(),
                "sample_rng": sample_gen.get_state()}

    epochs = bar(range(start_epoch, cfg.epochs + 1), desc="epochs", unit="epoch", enabled=progress,
                  initial=start_epoch - 1, total=cfg.epochs)
    tb = TensorBoardLog(run_dir, cfg.tensorboard and main_rank)
    for epoch in epochs:
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        batches = epoch_batches(len(train_ds), cfg.batch_size, shuffle_gen)
        epoch_ds = epoch_dataset(cfg, epoch, train_ds, coarse_ds)
        if workers is not None:
            stats = summarize(*workers.run_epoch(batches, lr, after_step, coarse=epoch_ds is coarse_ds))
        elif world > 1:
            stats = train_epoch(agent, opt, epoch_ds, cfg, device, shuffle_gen, sample_gen, progress,
                                batches=shard_batches(batches, cfg.batch_size, rank, world),
                                grad_hook=average_gradients, shards=shards, after_step=after_step)
        else:
            stats = train_epoch(agent, opt, epoch_ds, cfg, device, shuffle_gen, sample_gen, progress, batches,
                                shards=shards, after_step=after_step)
        with warnings.catch_warnings():
            # With asynchronous workers the steps happen in the workers' optimisers, which the
            # scheduler cannot see; it still sets the learning rate they are sent each epoch.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            sched.step()
        if not main_rank:
            continue  # rank 0 validates and writes; the others wait for it at the next all-reduce
        best, val, steps = record_epoch(run_dir, log, cfg, {"epoch": epoch, "lr": lr, **stats}, t0, len(val_ds),
                                        lambda: validate_dice(scored, val_ds, cfg.t_max, device, cfg.infer_steps),
                                        best, payload, steps)
        tb.epoch(log[-1], scored, val_ds, cfg.t_max, device)
        epochs.set_postfix(loss=f"{stats['loss']:.3f}", train_dice=f"{stats['train_dice']:.3f}",
                           val_dice=f"{val:.3f}")
    tb.close()
    if not main_rank:
        return run_dir
    return finish_run(run_dir, cfg, payload(cfg.epochs, best, steps), evaluate_test, progress, splits["test"])
