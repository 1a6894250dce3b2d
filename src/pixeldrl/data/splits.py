"""How every layout is split: 70/10/20 by a seeded shuffle, and the k-shot draw of Table 4.

One function per rule, used by the 2-D folder format, the volume protocol, prepared stores and
``reproduce`` alike, so the same data and seed give the same split whatever reads it:

* :func:`split_sizes` — the 70/10/20 sizes of N units (rounded half up; with tiny data train is
  never empty, test gets one unit as soon as N >= 2 and val one as soon as N >= 3);
* :func:`assign_splits` — shuffle the units with ``numpy.random.default_rng(seed)`` and cut them:
  the units are the patients (``level="patient"``: no patient on both sides) or the slices
  themselves (``"slice"``; a 2-D folder's images are its slices);
* :func:`k_shot_indices` — k training slices drawn without replacement with ``default_rng([seed, k])``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pixeldrl.errors import InputError

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
SPLIT_LEVELS = ("patient", "slice")


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of the 70/10/20 split of ``n`` items (see the module docstring)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    n_val = _round_half_up(SPLIT_FRACTIONS[1] * n)
    n_test = _round_half_up(SPLIT_FRACTIONS[2] * n)
    if n >= 2:
        n_test = max(n_test, 1)
    if n >= 3:
        n_val = max(n_val, 1)
    n_train = n - n_val - n_test
    if n_train < 1:  # cannot happen with the fractions above, kept as a guard
        n_train, n_test = 1, n - 1 - n_val
    return n_train, n_val, n_test


def assign_splits(patients: Sequence[str], level: str = "patient", seed: int = 0) -> list[str]:
    """The split (``train``/``val``/``test``) of each slice; see the module docstring."""
    if level not in SPLIT_LEVELS:
        raise InputError(f"--split-level {level}: choose one of {', '.join(SPLIT_LEVELS)}")
    rng = np.random.default_rng(seed)
    units = sorted(set(patients)) if level == "patient" else list(range(len(patients)))
    n_train, n_val, _ = split_sizes(len(units))
    order = rng.permutation(len(units))
    which = {}
    for rank, i in enumerate(order):
        which[units[i]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return [which[p] for p in patients] if level == "patient" else [which[i] for i in range(len(patients))]


def k_shot_indices(n_train: int, k: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``k`` training slices drawn without replacement (Table 4's k-shot)."""
    if k > n_train:
        raise InputError(f"--k-shot {k}: the training split holds only {n_train} slices")
    return np.sort(np.random.default_rng([seed, k]).choice(n_train, size=k, replace=False))
