"""The pixel environment: state, actions, mask update and reward ("dynamic iterative update policy").

Every pixel is an agent. All functions act on whole batches (B, H, W) at once; nothing loops over
pixels or images. Paper notation (docs/METHOD.md, "State, actions, reward"):

* ``m(0) = 1`` — :func:`initial_mask`
* ``X(t) = I ⊙ m(t)`` — :func:`observe`
* actions ``a ∈ {0: set to zero, 1: do nothing}``, ``m(t+1) = m(t) · a(t)`` — :func:`update_mask`
  (a zeroed pixel stays zero: the update is irreversible)
* ``r_i(t) = (f_i(t-1) − G_i)² − (f_i(t) − G_i)²`` with ``f = m`` (Eq. 12) — :func:`reward`
"""

from __future__ import annotations

import torch

ZERO, KEEP = 0, 1
"""Action codes: 0 sets the pixel to zero (background), 1 does nothing."""

T_MAX = 10
"""Steps per episode in the paper."""


def initial_mask(images: torch.Tensor) -> torch.Tensor:
    """m(0) = 1 for every pixel: (B, C, H, W) images → (B, H, W) mask of the images' dtype."""
    b, _, h, w = images.shape
    return torch.ones(b, h, w, dtype=images.dtype, device=images.device)


def observe(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """X(t) = I ⊙ m(t): (B, C, H, W) ⊙ (B, H, W) → (B, C, H, W); every channel is masked alike."""
    return images * mask.unsqueeze(1)


def update_mask(mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """m(t+1) = m(t) · a(t); with a ∈ {0, 1} a zeroed pixel can never come back."""
    return mask * actions.to(mask.dtype)


def reward(mask_before: torch.Tensor, mask_after: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. 12 per pixel: +1 for zeroing background, −1 for zeroing foreground, 0 otherwise. (B, H, W)."""
    return (mask_before - gt) ** 2 - (mask_after - gt) ** 2
