"""What every training loop shares: the run folder, the log, the schedule, validation.

Run folder (everything needed to restore or inspect a run)::

    config.json            the TrainConfig
    splits.json            which image went to which split
    log.csv                one row per epoch: losses, mean reward, entropy, train/val Dice, seconds
    training_curve.png     the log, plotted (redrawn at most every CURVE_REDRAW_S seconds, and
                           after the last epoch)
    checkpoint_latest.pt   written every epoch (``--resume`` continues from it)
    checkpoint_best.pt     best validation Dice so far
    checkpoint_final.pt    after the last epoch
    summary.json           test-split metrics, the JSON of ``pixeldrl evaluate --json``
    test_per_image.csv     the same, one row per image

A run folder is the unit of safety (:func:`open_run`): one process writes into it at a time (a
lock, ``fileio.folder_lock``); ``--resume`` continues the folder it is given, wherever it was copied
or moved (``config.json`` stores the data and run paths absolute, so a run resumes from any working
directory); a folder that is neither empty nor a run of ours, or one inside the dataset, is refused.

Validation runs the greedy episode (``rl.pa3c.segment``) on the validation split at network size
after each of the ``t_max`` steps; the best step (or ``infer_steps``) gives the score that picks
``checkpoint_best.pt``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from pixeldrl.checkpoint import agent_from_checkpoint, load_checkpoint, save_checkpoint
from pixeldrl.config import TrainConfig
from pixeldrl.data.folder import SliceDataset
from pixeldrl.data.layouts import detect_format
from pixeldrl.data.transforms import random_windows, shrink
from pixeldrl.evaluate import evaluate_checkpoint, evaluate_slices, write_result
from pixeldrl.errors import InputError, check_types, first_line
from pixeldrl.fileio import LOCK_NAME, atomic_write, folder_lock, write_csv
from pixeldrl.metrics import dice
from pixeldrl.models import update_memory
from pixeldrl.report import plot_training_curve
from pixeldrl.rl.pa3c import Agent, segment

CURVE_REDRAW_S = 30.0
"""Seconds between redraws of ``training_curve.png`` during training. Drawing it with matplotlib costs
0.42 s on a 2-core AMD EPYC, 3.4 % of a demo epoch at 128² when redrawn every epoch
(``benchmarks/epoch_overheads.py``); log.csv itself is written every epoch."""

LOG_FIELDS = ["epoch", "lr", "loss", "policy_loss", "value_loss", "entropy", "mean_reward",
              "train_dice", "val_dice", "val_steps", "seconds"]


def coarse_dataset(cfg: TrainConfig, train_ds: SliceDataset) -> SliceDataset | None:
    """The split the coarse epochs draw from (``coarse_epochs``: progressive resizing): the slices
    shrunk to ``coarse_side()`` (``coarse_mode="shrink"``), the full-size split itself (``"crop"``: each
    epoch cuts its own windows, :func:`epoch_dataset`), or None without coarse epochs. Both training
    loops (PA3C and the U-Nets) train epoch ``e`` on :func:`epoch_dataset`."""
    if not cfg.coarse_epochs:
        return None
    if cfg.coarse_mode == "crop":
        return train_ds
    return SliceDataset(*shrink(train_ds.images, train_ds.masks, cfg.coarse_side()), train_ds.names,
                        train_ds.original_shapes)


def epoch_dataset(cfg: TrainConfig, epoch: int, train_ds: SliceDataset, coarse_ds: SliceDataset | None) -> SliceDataset:
    """What epoch ``epoch`` (from 1) trains on: the coarse slices during the coarse epochs, else the split."""
    if coarse_ds is None or epoch > cfg.coarse_epochs:
        return train_ds
    if cfg.coarse_mode == "crop":
        # Seeded by (seed, epoch) alone: a resumed run cuts the same windows, and the shuffling
        # generator's stream stays that of a run without crops.
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
        return SliceDataset(*random_windows(coarse_ds.images, coarse_ds.masks, cfg.coarse_side(), gen),
                            coarse_ds.names, coarse_ds.original_shapes)
    return coarse_ds


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/DATASET/PRESET[-nosam][-nodc]/seedK — derived from what the run is."""
    variant = cfg.preset + ("" if cfg.use_sam else "-nosam") + ("" if cfg.use_dilation else "-nodc")
    if cfg.model != "pixeldrl":
        variant = f"{cfg.model}-{cfg.preset}"
    return Path("runs") / Path(cfg.data).resolve().name / variant / f"seed{cfg.seed}"


def run_folder(cfg: TrainConfig) -> Path:
    """The run folder of ``cfg`` as an absolute path (``--out``, else :func:`default_run_dir`)."""
    return Path(os.path.abspath(cfg.out or default_run_dir(cfg)))


@contextmanager
def open_run(cfg: TrainConfig, resume: bool, main_rank: bool = True) -> Iterator[Path]:
    """Check and hold the run folder for the block; yields its absolute path.

    Refused with an InputError: ``--out`` that is a file, lies inside the dataset, or is a non-empty
    folder that is not a run (no ``config.json``); ``--resume`` without ``checkpoint_latest.pt``; a
    new run into a folder that already holds one; a folder another process is writing (the lock).
    A folder this call created is removed again when training fails before writing anything.
    Other torchrun ranks only get the path: rank 0 holds the folder and writes.
    """
    run_dir = run_folder(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir}: exists and is not a folder")
    data = Path(cfg.data).resolve()
    if run_dir.resolve().is_relative_to(data):
        raise InputError(f"--out {run_dir}: lies inside the dataset folder {data}; choose a folder outside it")
    if not main_rank:
        yield run_dir
        return
    if run_dir.is_dir() and not (run_dir / "config.json").is_file():
        other = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)
        if other:
            raise InputError(f"--out {run_dir}: not empty and not a pixeldrl run folder (holds {other[0]!r}"
                             f"{f' and {len(other) - 1} more' if len(other) > 1 else ''}); "
                             f"choose a new or empty folder")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(run_dir):
            latest = run_dir / "checkpoint_latest.pt"
            if resume and not latest.exists():
                raise InputError(f"{latest}: nothing to resume (no checkpoint_latest.pt in the run folder)")
            if not resume and latest.exists():
                raise InputError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
            yield run_dir
    except BaseException:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing of the run was written: leave no trace
        raise


def check_memory(cfg: TrainConfig, device: torch.device) -> None:
    """InputError, before anything is read or allocated, when one update as configured
    (``models.update_memory``) needs more memory than the device has in all."""
    need = update_memory(cfg)
    if need is None:
        return
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        hint = "" if cfg.recompute else ", or pass --recompute"
        raise InputError(f"--batch-size {cfg.batch_size} at --image-size {cfg.image_size}: one update of the "
                         f"{cfg.preset} network needs about {need / 2**30:.0f} GiB, more than the "
                         f"{have / 2**30:.0f} GiB of this {device.type.upper()}; lower --batch-size or "
                         f"--image-size{hint}")


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


def read_log(path: Path, upto_epoch: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["epoch"]) <= upto_epoch]


def write_log(path: Path, rows: list[dict]) -> None:
    write_csv(path, LOG_FIELDS, rows)


def write_json(path: Path, obj) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))


def restore_run(path: Path, cfg: TrainConfig, device: torch.device, model: torch.nn.Module, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LRScheduler, shuffle_gen: torch.Generator) -> dict:
    """``--resume``: load ``checkpoint_latest.pt`` into the model, optimiser, schedule and shuffle RNG
    (what every loop restores); returns the checkpoint for the loop's own entries.

    InputError, naming the file, when it lacks an entry, holds another model's weights (a
    checkpoint copied in from another run), or has done more epochs than ``--epochs`` asks for.
    """
    ckpt = load_checkpoint(path, map_location=device)
    check_types(ckpt, {"optimizer": dict, "scheduler": dict, "shuffle_rng": torch.Tensor, "epoch": int,
                       "best_val_dice": (int, float)}, str(path))
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        shuffle_gen.set_state(ckpt["shuffle_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: does not fit this run's model and optimiser (a checkpoint of another "
                         f"model?): {first_line(e)}") from None
    if ckpt["epoch"] > cfg.epochs:
        raise InputError(f"--epochs {cfg.epochs}: the run in {path.parent} has already done {ckpt['epoch']} "
                         f"epochs; give --epochs {ckpt['epoch']} or more to continue it")
    return ckpt


def record_epoch(run_dir: Path, log: list[dict], cfg: TrainConfig, row: dict, t0: float, n_val: int,
                 validate, best: float, payload, steps: int) -> tuple[float, float, int]:
    """Close an epoch: validate when due, append its row to log.csv, redraw the curve (when
    ``CURVE_REDRAW_S`` have passed since its last drawing, and after the last epoch), write
    checkpoint_latest (and checkpoint_best when validation improved). Returns (best, val Dice, steps).

    ``row`` holds the epoch, lr and training stats; ``validate()`` gives the val Dice and the greedy
    steps it was reached at (``pick_steps``); ``payload(epoch, best, steps)`` the checkpoint's
    contents, ``steps`` being the inference steps of that checkpoint's own model (the last
    validated ones when this epoch does not validate). Without a validation split the last epoch
    counts as the best.
    """
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
    write_log(run_dir / "log.csv", log)
    curve = run_dir / "training_curve.png"
    if epoch == cfg.epochs or not curve.exists() or time.time() - curve.stat().st_mtime >= CURVE_REDRAW_S:
        plot_training_curve(run_dir / "log.csv", curve)
    state = payload(epoch, best, steps)
    if improved:
        save_checkpoint(run_dir / "checkpoint_best.pt", state)
    save_checkpoint(run_dir / "checkpoint_latest.pt", state)
    return best, val, steps


class TensorBoardLog:
    """``--tensorboard``: what log.csv holds, as TensorBoard scalars, and the masks after each step of
    the first validation slices as images (one row per slice: X(0) … X(t_max)), in RUN/tensorboard."""

    SCALARS = ("loss", "policy_loss", "value_loss", "entropy", "mean_reward", "train_dice", "val_dice", "lr")

    def __init__(self, run_dir: Path, enabled: bool):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise InputError("--tensorboard: the tensorboard package is not installed (pip install tensorboard)") from None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def epoch(self, row: dict, agent=None, val_ds: SliceDataset | None = None, t_max: int = 1, device="cpu") -> None:
        if self.writer is None:
            return
        epoch = int(row["epoch"])
        for key in self.SCALARS:
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key if key != "lr" else "optim/lr", value, epoch)
        if agent is not None and val_ds is not None and len(val_ds) and not math.isnan(row.get("val_dice", math.nan)):
            agent.eval()
            x = val_ds.images[:4].to(device)  # (N, C, S, S)
            steps = segment(agent, x, t_max, return_steps=True).steps  # (T+1, N, S, S)
            agent.train()
            shown = (x[None, :, :1] * steps[:, :, None]).cpu().clamp(0, 1)  # (T+1, N, 1, S, S): X(t) = I ⊙ m(t)
            grid = shown.permute(1, 0, 2, 3, 4).reshape(-1, *shown.shape[2:])  # (N·(T+1), 1, S, S), a slice per row
            self.writer.add_images("val/steps (one row per slice: X(0) … X(t_max))", grid, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def finish_run(run_dir: Path, cfg: TrainConfig, final_payload: dict, evaluate_test: bool, progress: bool,
               test_ds: SliceDataset | None = None) -> Path:
    """checkpoint_final (and _best when validation never ran), then the test split's summary.

    ``test_ds``: the run's in-memory test split. For a prepared store it is what gets evaluated
    (``evaluate.evaluate_slices``; nothing is re-read, the raw folder is never needed); a 2-D folder
    or raw volumes are re-read and evaluated at their original size (``evaluate.evaluate_checkpoint``).
    """
    save_checkpoint(run_dir / "checkpoint_final.pt", final_payload)
    if not (run_dir / "checkpoint_best.pt").exists():
        save_checkpoint(run_dir / "checkpoint_best.pt", final_payload)
    if evaluate_test:
        best = run_dir / "checkpoint_best.pt"
        if test_ds is not None and detect_format(cfg.data, cfg.format) == "prepared":
            agent, best_cfg = agent_from_checkpoint(best, cfg.device)
            result = evaluate_slices(agent, best_cfg, test_ds, device=cfg.device, progress=progress)
        else:
            result = evaluate_checkpoint(best, cfg.data, "test", device=cfg.device, progress=progress)
        if result["n"]:
            write_result(result, run_dir / "summary.json", run_dir / "test_per_image.csv")
    return run_dir
