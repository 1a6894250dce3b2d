"""Test-time corruptions for the robustness experiment, with MONAI's transforms, deterministic.

    pixeldrl reproduce --data DATA --experiment robustness

``reproduce`` corrupts the test split as the network sees it (:func:`corrupt_batch`): each channel
of each normalised network-size slice (intensities in [0, 1], from ``data.protocol.load_dataset``,
so 2-D folders and volumes alike), clipped back to [0, 1] afterwards — the range the network was
trained on. The model never sees corrupted images in training. Levels (chosen; the paper does not
list them):

* ``noise-S``: additive Gaussian noise (MONAI ``RandGaussianNoise`` with a fixed std, prob 1) of
  standard deviation ``S`` × the image's intensity spread, where the spread is the 0.5–99.5
  percentile range (about 1 on a normalised slice) — so ``S`` is the noise level the network sees.
* ``bias-C``: a smooth multiplicative bias field (MONAI ``RandBiasField``, degree 3, coefficients
  drawn from [-C, C]), as from an uncorrected MRI receive coil. On a 48-pixel-wide image C = 0.1
  scales intensities by about 0.7–1.5 across the image, C = 0.3 by about 0.3–3.5.
* ``blur-σ``: Gaussian smoothing (MONAI ``GaussianSmooth``) with σ pixels (network pixels in
  ``reproduce``).

Randomness is seeded per image from ``(seed, image index, channel)``: every model sees exactly the
same corrupted pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Corruption:
    kind: str
    """``noise``, ``bias`` or ``blur``."""
    level: float

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.level:g}"


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("noise", 0.05), Corruption("noise", 0.1), Corruption("noise", 0.2),
    Corruption("bias", 0.1), Corruption("bias", 0.3),
    Corruption("blur", 1.0), Corruption("blur", 2.0),
)
KINDS = ("noise", "bias", "blur")


def intensity_spread(image: np.ndarray) -> float:
    """The 0.5–99.5 percentile range (the span ``data.normalize_intensity`` maps to [0, 1])."""
    lo, hi = np.percentile(image, (0.5, 99.5))
    return float(hi - lo) if hi > lo else float(np.ptp(image)) or 1.0


def corrupt(image: np.ndarray, c: Corruption, seed: int = 0) -> np.ndarray:
    """The corrupted copy of a 2-D (H, W) image, float32, same shape; deterministic in ``seed``."""
    from monai.transforms import GaussianSmooth, RandBiasField, RandGaussianNoise

    if c.kind not in KINDS:
        raise ValueError(f"unknown corruption {c.kind!r}; choose one of {KINDS}")
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"corrupt expects a 2-D grayscale image, got shape {x.shape}")
    x = x[None]  # (1, H, W): MONAI's channel-first layout
    if c.kind == "noise":
        t = RandGaussianNoise(prob=1.0, mean=0.0, std=c.level * intensity_spread(image), sample_std=False)
        t.set_random_state(seed)
        out = t(x)
    elif c.kind == "bias":
        # The field multiplies the intensities, so shift to a non-negative range first.
        lo = float(x.min())
        t = RandBiasField(degree=3, coeff_range=(-c.level, c.level), prob=1.0)
        t.set_random_state(seed)
        out = t(x - lo) + lo
    else:
        out = GaussianSmooth(sigma=c.level)(x)
    return np.asarray(out, dtype=np.float32)[0]


def corrupt_batch(images, c: Corruption, seed: int = 0) -> np.ndarray:
    """Network inputs (N, C, S, S) in [0, 1] (tensor or array) -> their corrupted copy, float32, clipped to [0, 1].

    Each channel of each slice is corrupted on its own by :func:`corrupt`, seeded with
    ``seed * 100_003 + i + 1_000_003 * channel`` (slice ``i``), so the same call gives the same pixels.
    """
    x = np.asarray(images.cpu().numpy() if hasattr(images, "cpu") else images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"corrupt_batch expects (N, C, S, S) images, got shape {x.shape}")
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for ch in range(x.shape[1]):
            out[i, ch] = corrupt(x[i, ch], c, seed=seed * 100_003 + i + 1_000_003 * ch)
    return np.clip(out, 0.0, 1.0)
