"""Transforms: intensities to [0, 1], images to and from the network's size, training flips and zoom-out, the coarse epochs' shrink.

Network-size mapping
--------------------
The network works on ``size x size`` inputs. :func:`to_network` pads an (H, W) array with zeros to
a centred square of side ``D = max(H, W)`` (``(D - H) // 2`` rows on top, the rest below; the same
for columns) and resizes that square to ``size x size`` with :func:`skimage.transform.resize`
(``order=1`` with anti-aliasing for images, ``order=0`` without anti-aliasing for masks).
:func:`from_network` inverts it: resize ``size x size`` back to ``D x D`` and crop the same
window. The aspect ratio is kept, and when ``size == D`` both resizes are skipped, so a mask (or an
image) round-trips exactly. Zero padding reads as "darkest / removed" because images are first
scaled to [0, 1] by :func:`normalize_intensity`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import resize

# --------------------------------------------------------------------------- intensities


def normalize_intensity(img: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale an image to ``float32`` in [0, 1]: clip at its ``low``/``high`` percentiles, then min-max.

    Why [0, 1] and not z-scores: the agents "remove" a pixel by setting it to zero
    (``X(t) = I * m(t)``, docs/METHOD.md, "State, actions, reward"). That only reads as "removed /
    darkest" when zero is the bottom of the intensity range; with zero-mean inputs a zeroed pixel
    looks like an average one (a re-implementation lost ~0.09 DICE that way on brain MRI).

    Each image is scaled on its own. The percentiles are taken over the pixels above the image's
    minimum when it has a flat floor (skull-stripped MRI, a scanner's zero outside the field of
    view, padding), as nnU-Net normalises MRI inside its nonzero mask: over all pixels, a slice that
    is 97 % background would put its 99.5th percentile inside the tissue and clip the brightest
    tissue class — the top slices of a brain, where white matter is a few small islands, lost their
    contrast that way. If the two percentiles coincide, the image's plain min and max are used
    instead; a constant image maps to all zeros.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    a = np.asarray(img, dtype=np.float32)
    if a.size == 0:
        return a.copy()
    above_floor = a[a > a.min()]
    # The floor is background when it covers a good part of the image; a few dark pixels are not.
    sample = above_floor if a.size - above_floor.size >= 0.05 * a.size and above_floor.size >= 16 else a
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return np.zeros(a.shape, dtype=np.float32)
    out = (np.clip(a, lo, hi) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- network-size mapping


def _square_window(shape: Sequence[int]) -> tuple[int, int, int]:
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {tuple(shape)}")
    d = max(h, w)
    return d, (d - h) // 2, (d - w) // 2


def _resize(a: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    if a.shape == shape:
        return a
    return resize(
        a, shape, order=order, mode="edge", preserve_range=True, anti_aliasing=order > 0
    ).astype(np.float32)


def _finish(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    return out > 0.5 if like.dtype == bool else out.astype(np.float32)


def to_network(img: np.ndarray, size: int, order: int) -> np.ndarray:
    """Pad an (H, W) array to a centred square with zeros and resize it to ``size x size``.

    ``order=1`` for images, ``order=0`` (nearest, no anti-aliasing) for masks. Returns ``float32``,
    or ``bool`` when ``img`` is boolean.
    """
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    d, top, left = _square_window(a.shape)
    sq = np.zeros((d, d), dtype=np.float32)
    sq[top : top + a.shape[0], left : left + a.shape[1]] = a
    return _finish(_resize(sq, (size, size), order), a)


def from_network(arr: np.ndarray, original_shape: Sequence[int], order: int) -> np.ndarray:
    """Invert :func:`to_network`: resize ``size x size`` to the padded square, crop ``original_shape``.

    Returns ``float32``, or ``bool`` when ``arr`` is boolean (use ``order=0`` for masks, or resize
    probabilities with ``order=1`` and threshold afterwards).
    """
    a = np.asarray(arr)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"expected a square 2-D array, got shape {a.shape}")
    h, w = int(original_shape[0]), int(original_shape[1])
    d, top, left = _square_window((h, w))
    sq = _resize(a.astype(np.float32), (d, d), order)
    return _finish(sq[top : top + h, left : left + w], a)


def shrink(images: torch.Tensor, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Network-size slices (N, C, S, S) and masks (N, S, S) shrunk to ``size x size`` (the coarse
    epochs of ``coarse_epochs``): both by area averaging (a 2× shrink averages 2×2 blocks), masks
    kept where at least half of a new pixel was foreground. In memory, from the tensors already loaded, so the
    data is read and cut once whatever its layout."""
    small = F.interpolate(images, size=(size, size), mode="area")  # (N, C, size, size)
    cover = F.interpolate(masks.unsqueeze(1), size=(size, size), mode="area").squeeze(1)  # (N, size, size)
    return small, (cover >= 0.5).to(masks.dtype)


def random_windows(images: torch.Tensor, masks: torch.Tensor, side: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``side x side`` window of each slice (N, C, S, S) and of its mask (N, S, S), at a position
    drawn uniformly from ``gen`` (``coarse_mode="crop"``): the structures keep their size in pixels,
    which shrinking them (:func:`shrink`) does not."""
    n, _, h, w = images.shape
    tops = torch.randint(0, h - side + 1, (n,), generator=gen).tolist()
    lefts = torch.randint(0, w - side + 1, (n,), generator=gen).tolist()
    windows = [(slice(t, t + side), slice(l, l + side)) for t, l in zip(tops, lefts)]
    return (torch.stack([images[i, :, r, c] for i, (r, c) in enumerate(windows)]),  # (N, C, side, side)
            torch.stack([masks[i, r, c] for i, (r, c) in enumerate(windows)]))  # (N, side, side)


# --------------------------------------------------------------------------- augmentation


def random_flip(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator):
    """Random horizontal and vertical flips, the same for image and mask (``augment``); in place."""
    for dim in (-1, -2):
        flip = torch.rand(images.shape[0], generator=gen) < 0.5
        images[flip] = images[flip].flip(dim)
        masks[flip] = masks[flip].flip(dim)
    return images, masks


def random_zoom_out(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, zoom_out: float):
    """Each slice, with probability ½, shrunk about its centre by a factor drawn uniformly from
    ``[1 - zoom_out, 1]`` and padded with zeros (``zoom_out``): structures smaller than the training
    labels, as at the ends of an organ.

    Images (B, C, S, S) are resampled bilinearly, masks (B, S, S) bilinearly then thresholded at ½
    (smooth edges, no nearest-neighbour staircase). Zeros are the padding ``to_network`` uses. Written
    here rather than with MONAI's ``RandZoom`` because it works on the whole batch already in memory and
    draws from the run's own generator, so a resumed run replays the same augmentation. In place, as
    :func:`random_flip` (the training loops hand it their batch's copy).
    """
    n = images.shape[0]
    scale = 1 - zoom_out * torch.rand(n, generator=gen)  # (B,)
    pick = torch.rand(n, generator=gen) < 0.5  # (B,) the slices shrunk; the others pass exactly
    if not pick.any():
        return images, masks
    # sampling grid: output pixel u reads input at u / scale (about the centre), zeros outside
    theta = torch.zeros(int(pick.sum()), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale[pick]
    grid = F.affine_grid(theta, [len(theta), *images.shape[1:]], align_corners=False)  # (b, S, S, 2)
    images[pick] = F.grid_sample(images[pick], grid.to(images.dtype), mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
    m = F.grid_sample(masks[pick].unsqueeze(1).float(), grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False)  # (b, 1, S, S)
    masks[pick] = (m.squeeze(1) >= 0.5).to(masks.dtype)
    return images, masks


def augment_batch(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, flip: bool, zoom_out: float):
    """The training augmentations a run asks for (``augment``: flips; ``zoom_out``), in that order;
    draws nothing from ``gen`` when both are off, so such runs replay exactly."""
    if flip:
        images, masks = random_flip(images, masks, gen)
    if zoom_out > 0:
        images, masks = random_zoom_out(images, masks, gen, zoom_out)
    return images, masks
