"""Figures: the training curve, prediction overlays and what the agents did step by step.

Headless (matplotlib's Agg backend); every function writes one PNG and returns its path.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pixeldrl.fileio import atomic_write, printable  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        with atomic_write(path, suffix=".png") as tmp:  # savefig picks the format by the ending
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_training_curve(log_csv: str | Path, png: str | Path) -> Path:
    """Losses, mean reward and entropy (left), train and validation Dice (right) per epoch."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    ep = [int(r["epoch"]) for r in rows]

    def col(name):
        return [float(r[name]) if r[name] not in ("", "nan") else math.nan for r in rows]

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("loss", "policy_loss", "value_loss", "mean_reward", "entropy"):
        a.plot(ep, col(name), label=name)
    a.set_xlabel("epoch")
    a.legend(fontsize=8)
    a.set_title("PA3C losses")
    b.plot(ep, col("train_dice"), label="train (sampled)")
    val = col("val_dice")
    b.plot([e for e, v in zip(ep, val) if not math.isnan(v)], [v for v in val if not math.isnan(v)], "o-",
           label="val (greedy)")
    b.set_xlabel("epoch")
    b.set_ylabel("DICE")
    b.set_ylim(0, 1)
    b.legend(fontsize=8)
    b.set_title("Dice")
    return _save(fig, png)


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask)


def overlay_rgb(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
    """Gray image with the prediction's outline in red and the ground truth's in green (H, W, 3)."""
    lo, hi = np.percentile(image, (0.5, 99.5))
    g = np.clip((image - lo) / (hi - lo + 1e-8), 0, 1)
    rgb = np.stack([g, g, g], axis=-1)
    if gt is not None:
        rgb[_outline(gt.astype(bool))] = (0.1, 0.9, 0.1)
    rgb[_outline(pred.astype(bool))] = (1.0, 0.15, 0.15)
    return rgb


def save_overlays(path: str | Path, images, preds, gts, names, scores=None, ncols: int = 4) -> Path:
    """A grid of test slices: prediction outline red, ground truth green, DICE in the title."""
    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (im, p, g, name) in enumerate(zip(images, preds, gts, names)):
        ax = axes.flat[i]
        ax.imshow(overlay_rgb(im, p, g))
        ax.set_title(printable(name) + (f"  DICE {scores[i]:.3f}" if scores is not None else ""), fontsize=8)
    fig.suptitle("prediction (red) vs ground truth (green)", fontsize=10)
    return _save(fig, path)


def save_steps_strip(path: str | Path, image: np.ndarray, steps: np.ndarray, title: str = "") -> Path:
    """The image and the mask m(t) after each step t = 0 … t_max (steps: (T+1, H, W))."""
    return save_steps_grid(path, [image], [steps], [title])


def save_steps_grid(path: str | Path, images, steps_list, titles, gts=None) -> Path:
    """One row per slice: the image, then X(t) = I ⊙ m(t) for t = 0 … t_max, then the ground truth."""
    gts = gts if gts is not None else [None] * len(images)
    n_steps = steps_list[0].shape[0]
    ncols = n_steps + 1 + any(g is not None for g in gts)
    fig, axes = plt.subplots(len(images), ncols, figsize=(1.6 * ncols, 1.7 * len(images)), squeeze=False)
    for r, (im, steps, title, gt) in enumerate(zip(images, steps_list, titles, gts)):
        lo, hi = np.percentile(im, (0.5, 99.5))
        g = np.clip((im - lo) / (hi - lo + 1e-8), 0, 1)
        axes[r, 0].imshow(g, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(printable(title), fontsize=7)
        for t in range(n_steps):
            axes[r, t + 1].imshow(g * steps[t], cmap="gray", vmin=0, vmax=1)
            if r == 0:
                axes[r, t + 1].set_title(f"t={t}", fontsize=8)
        if gt is not None:
            axes[r, -1].imshow(gt, cmap="gray")
            if r == 0:
                axes[r, -1].set_title("ground truth", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle("X(t) = I ⊙ m(t): pixels the agents set to zero disappear step by step", fontsize=9)
    return _save(fig, path)
