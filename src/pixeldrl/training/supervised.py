"""Supervised training of the U-Net baselines (Dice + cross-entropy), with PixelDRL-MG's run folder.

    pixeldrl train --data DATA --model unet --preset small --epochs 20 --out runs/unet

Everything but the model and the loss is PixelDRL-MG's: the same splits and input size
(``data.dataset.load_dataset``, any layout), the same epochs (and coarse epochs), batch size, Adam learning rate and
step decay, the same optional flips, validation Dice of the argmax mask every ``val_every`` epochs picking
``checkpoint_best.pt``, and the same test evaluation at the images' original size. The run folder
folder is the one of ``run.py`` (``config.json``, ``splits.json``, ``log.csv``,
``training_curve.png``, ``checkpoint_latest/best/final.pt``, ``summary.json``,
``test_per_image.csv``), so ``evaluate``, ``predict`` and ``reproduce`` treat all runs alike. The
log's PA3C columns (policy/value loss, entropy, reward) are NaN here.

Loss (chosen, the usual pairing for these networks): MONAI's ``DiceCELoss`` on the two-class
softmax, Dice and cross-entropy weighted 1 : 1.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from pixeldrl.nets.baselines import Segmenter
from pixeldrl.checkpoint import resolve_device
from pixeldrl.config import SUPERVISED_MODELS, TrainConfig, validate
from pixeldrl.data.folder import SliceDataset
from pixeldrl.data.transforms import augment_batch
from pixeldrl.data.dataset import load_dataset
from pixeldrl.errors import InputError
from pixeldrl.progress import bar
from pixeldrl.training.run import (TensorBoardLog, batch_dice, coarse_dataset, epoch_batches, epoch_dataset,
                                   finish_run, make_scheduler, open_run, read_log,
                                   record_epoch, restore_run, run_folder, validate_dice, write_json)


def train_epoch(model: Segmenter, loss_fn, opt: torch.optim.Optimizer, ds: SliceDataset, cfg: TrainConfig,
                device: torch.device, shuffle_gen: torch.Generator, progress: bool) -> dict:
    """One pass over the training split; returns the mean loss and the Dice of the argmax masks."""
    model.train()
    total, dices = 0.0, []
    batches = epoch_batches(len(ds), cfg.batch_size, shuffle_gen)
    pbar = bar(batches, desc="train", unit="batch", leave=False, enabled=progress)
    for idx in pbar:
        images, masks = ds.images[idx].clone(), ds.masks[idx].clone()  # (B, C, S, S), (B, S, S)
        images, masks = augment_batch(images, masks, shuffle_gen, cfg.augment, cfg.zoom_out)
        images, masks = images.to(device), masks.to(device)
        logits = model(images)  # (B, 2, S, S)
        loss = loss_fn(logits, masks.unsqueeze(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss_value = float(loss.detach())
        total += loss_value
        dices += batch_dice(logits.detach().argmax(1) > 0, masks)
        pbar.set_postfix(loss=f"{loss_value:.3f}", dice=f"{np.mean(dices):.3f}")
    return {"loss": total / len(batches), "train_dice": float(np.mean(dices))}


def train_supervised(cfg: TrainConfig, resume: bool = False, progress: bool = True,
                     evaluate_test: bool = True) -> Path:
    """Train the U-Net baseline ``cfg.model``; returns the run folder (see the module docstring)."""
    validate(cfg)
    if cfg.model not in SUPERVISED_MODELS:
        raise InputError(f"--model {cfg.model}: not a supervised baseline; choose one of {', '.join(SUPERVISED_MODELS)}")
    device = resolve_device(cfg.device)
    cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data), out=str(run_folder(cfg)))  # as train.py
    with open_run(cfg, resume) as run_dir:
        return _train_in(cfg, run_dir, device, resume, progress, evaluate_test)


def _train_in(cfg: TrainConfig, run_dir: Path, device: torch.device, resume: bool, progress: bool,
              evaluate_test: bool) -> Path:
    """``train_supervised`` inside the held run folder."""
    from monai.losses import DiceCELoss

    splits = load_dataset(cfg, progress=progress)  # any layout (data/dataset.py), as train.py
    cfg = dataclasses.replace(cfg, **splits.resolved)  # what the data decided goes into config.json
    train_ds, val_ds = splits["train"], splits["val"]
    coarse_ds = coarse_dataset(cfg, train_ds)  # progressive resizing, as train.py

    torch.manual_seed(cfg.seed)
    model_kwargs = {"in_channels": cfg.in_channels}
    model = Segmenter(cfg.model, **model_kwargs).to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch, best = 1, -1.0
    if resume:
        ckpt = restore_run(run_dir / "checkpoint_latest.pt", cfg, device, model, opt, sched, shuffle_gen)
        start_epoch, best = ckpt["epoch"] + 1, ckpt["best_val_dice"]
    write_json(run_dir / "config.json", cfg.to_dict())
    write_json(run_dir / "splits.json", {k: ds.names for k, ds in splits.items()})
    log = read_log(run_dir / "log.csv", start_epoch - 1)

    def payload(epoch: int, best: float, steps: int) -> dict:  # ``steps`` unused: a U-Net segments in one pass
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "config": cfg.to_dict(), "model_name": cfg.model, "model_kwargs": model_kwargs, "epoch": epoch,
                "best_val_dice": best, "shuffle_rng": shuffle_gen.get_state()}

    epochs = bar(range(start_epoch, cfg.epochs + 1), desc=f"epochs ({cfg.model})", unit="epoch",
                  enabled=progress, initial=start_epoch - 1, total=cfg.epochs)
    tb = TensorBoardLog(run_dir, cfg.tensorboard)
    for epoch in epochs:
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        epoch_ds = epoch_dataset(cfg, epoch, train_ds, coarse_ds)
        stats = train_epoch(model, loss_fn, opt, epoch_ds, cfg, device, shuffle_gen, progress)
        sched.step()
        best, val, _ = record_epoch(run_dir, log, cfg, {"epoch": epoch, "lr": lr, **stats}, t0, len(val_ds),
                                    lambda: validate_dice(model, val_ds, 1, device), best, payload, 1)
        tb.epoch(log[-1], model, val_ds, 1, device)
        epochs.set_postfix(loss=f"{stats['loss']:.3f}", train_dice=f"{stats['train_dice']:.3f}", val_dice=f"{val:.3f}")
    tb.close()
    return finish_run(run_dir, cfg, payload(cfg.epochs, best, 1), evaluate_test, progress, splits["test"])
