"""Segmentation metrics of the paper's Table 2, computed per image and then averaged over images.

This module owns the numerical definitions of the six reported metrics (DICE, PPV, SEN, IoU,
BIoU, HD95, see docs/METHOD.md "Metrics"), their conventions for empty masks, the per-image → mean
aggregation, and the plain result format written to disk (JSON-able dict, per-image CSV, text
table). It needs only NumPy and SciPy: no torch, and MedPy / MONAI are used only by the tests as
independent references.

Every function takes binary masks of any rank >= 1 (2-D in practice); a pixel is foreground when
its value is > 0 (``True`` for boolean arrays). ``pred`` and ``gt`` must have the same shape.

Conventions (all from docs/METHOD.md unless marked *chosen*):

* DICE, PPV, SEN, IoU carry ``EPS = 1e-4`` in numerator and denominator, exactly as the paper
  writes them, so they are 1.0 on an empty/empty pair and never NaN.
* BIoU is 1.0 when both boundary bands are empty (only possible when both masks are empty).
* HD95 is 0.0 when both masks are empty, and the image diagonal when exactly one is empty; such
  pairs are flagged (``HD95_one_empty``) and counted, so a mean that includes them can be
  recognised. The diagonal is the physical extent ``sqrt(sum((n_i * s_i)**2))`` of the image
  (*chosen*: the same diagonal BIoU uses for its band width, and an upper bound of every surface
  distance that can occur in the image).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pixeldrl.fileio import write_csv

EPS = 1e-4
METRIC_NAMES = ("DICE", "PPV", "SEN", "IoU", "BIoU", "HD95")
# Per-image flag carried next to the metrics: True when HD95 used the one-empty convention.
HD95_FLAG = "HD95_one_empty"

Spacing = float | Sequence[float] | None


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _as_bool(mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    # `> 0` rather than astype(bool): probability maps or label images with negative fill
    # values must not turn background into foreground.
    return arr if arr.dtype == np.bool_ else arr > 0


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: pred {p.shape} vs gt {g.shape}")
    if p.ndim < 1 or p.size == 0:
        raise ValueError(f"masks must be non-empty arrays of rank >= 1, got shape {p.shape}")
    return p, g


def _spacing(spacing: Spacing, ndim: int) -> np.ndarray | None:
    if spacing is None:
        return None
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.ndim != 1 or sp.size != ndim:
        raise ValueError(f"spacing {tuple(sp.ravel().tolist())} does not match mask rank {ndim}")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be finite and > 0, got {tuple(sp.tolist())}")
    return sp


def _diagonal(shape: tuple[int, ...], spacing: np.ndarray | None = None) -> float:
    extent = np.asarray(shape, dtype=np.float64)
    if spacing is not None:
        extent = extent * spacing
    return float(np.sqrt(np.sum(extent**2)))


def _counts(pred: Any, gt: Any) -> tuple[int, int, int, int, int]:
    """(TP, FP, FN, |P|, |G|) as Python ints (no overflow on large volumes)."""
    p, g = _pair(pred, gt)
    tp = int(np.count_nonzero(p & g))
    n_p = int(np.count_nonzero(p))
    n_g = int(np.count_nonzero(g))
    return tp, n_p - tp, n_g - tp, n_p, n_g


# --------------------------------------------------------------------------------------------
# overlap metrics
# --------------------------------------------------------------------------------------------


def dice(pred: Any, gt: Any) -> float:
    """DICE = (2TP + ε) / (|G| + |P| + ε)."""
    tp, _, _, n_p, n_g = _counts(pred, gt)
    return (2 * tp + EPS) / (n_g + n_p + EPS)


def ppv(pred: Any, gt: Any) -> float:
    """PPV (precision) = (TP + ε) / (TP + FP + ε)."""
    tp, fp, _, _, _ = _counts(pred, gt)
    return (tp + EPS) / (tp + fp + EPS)


def sen(pred: Any, gt: Any) -> float:
    """SEN (sensitivity, recall) = (TP + ε) / (TP + FN + ε)."""
    tp, _, fn, _, _ = _counts(pred, gt)
    return (tp + EPS) / (tp + fn + EPS)


def iou(pred: Any, gt: Any) -> float:
    """IoU = (TP + ε) / (|G| + |P| − TP + ε)."""
    tp, _, _, n_p, n_g = _counts(pred, gt)
    return (tp + EPS) / (n_g + n_p - tp + EPS)


# --------------------------------------------------------------------------------------------
# Boundary IoU
# --------------------------------------------------------------------------------------------


def boundary_dilation(shape: Sequence[int], dilation_ratio: float = 0.02) -> int:
    """Band width d = max(1, round(dilation_ratio · diagonal)), diagonal = sqrt(sum n_i²).

    Python's ``round`` (half to even) is used on purpose: it is what the reference
    implementation of Cheng et al. (``int(round(dilation_ratio * img_diag))``) does.
    """
    return max(1, int(round(dilation_ratio * _diagonal(tuple(shape)))))


def boundary_band(mask: Any, dilation: int) -> np.ndarray:
    """Inner boundary band of width ``dilation``: mask minus its erosion.

    The erosion uses the full-connectivity structuring element (3×3 square in 2-D), iterated
    ``dilation`` times, with everything outside the image counted as background
    (``border_value=0``), so a mask touching the image edge has a band along that edge. This
    equals the reference code's 1-pixel zero padding followed by ``cv2.erode``.
    """
    if int(dilation) < 1:
        # scipy treats iterations < 1 as "erode until nothing changes": never what is meant.
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    m = _as_bool(mask)
    if not m.any():
        return m.copy()
    structure = ndimage.generate_binary_structure(m.ndim, m.ndim)
    eroded = ndimage.binary_erosion(
        m, structure=structure, iterations=int(dilation), border_value=0
    )
    return m & ~eroded


def boundary_iou(pred: Any, gt: Any, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU (Cheng et al., CVPR 2021) of two binary masks.

    BIoU = |G_b ∩ P_b| / |G_b ∪ P_b| where X_b = :func:`boundary_band` of X with width
    :func:`boundary_dilation`; 1.0 when both bands are empty (the reference code divides 0/0).
    No ε here: the paper writes BIoU without it.

    Written by hand because no maintained library computes it with these conventions: MONAI
    (1.6) has no Boundary IoU at all (its ``SurfaceDiceMetric`` / ``compute_surface_dice`` is the
    normalised surface distance, a different quantity), and the authors' ``boundary_iou`` API
    needs OpenCV and pycocotools and is defined for COCO instance masks. Only the formula is
    implemented here; erosion comes from ``scipy.ndimage``.
    """
    p, g = _pair(pred, gt)
    d = boundary_dilation(p.shape, dilation_ratio)
    pb, gb = boundary_band(p, d), boundary_band(g, d)
    union = int(np.count_nonzero(pb | gb))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pb & gb)) / union


# --------------------------------------------------------------------------------------------
# HD95
# --------------------------------------------------------------------------------------------


def _surface_distances(a: np.ndarray, b: np.ndarray, sampling: np.ndarray | None) -> np.ndarray:
    """Distances from each surface pixel of ``a`` to the nearest surface pixel of ``b``.

    Mirrors ``medpy.metric.binary.__surface_distances`` (connectivity=1): surface = mask XOR its
    erosion by the connectivity-1 (cross) structuring element, with scipy's default
    ``border_value=0`` so pixels on the image edge are surface; distances are the EDT of the
    complement of ``b``'s surface.
    """
    footprint = ndimage.generate_binary_structure(a.ndim, 1)
    a_border = a ^ ndimage.binary_erosion(a, structure=footprint, iterations=1)
    b_border = b ^ ndimage.binary_erosion(b, structure=footprint, iterations=1)
    dt = ndimage.distance_transform_edt(~b_border, sampling=sampling)
    return dt[a_border]


def hd95_with_flag(pred: Any, gt: Any, spacing: Spacing = None) -> tuple[float, bool]:
    """HD95 and whether the one-empty convention was used.

    Returns ``(value, one_empty)``: ``(0.0, False)`` when both masks are empty,
    ``(diagonal, True)`` when exactly one is empty, else MedPy's ``hd95`` value and ``False``.
    ``spacing`` (scalar or one value per axis) gives distances in physical units; the diagonal
    is then in the same units.
    """
    p, g = _pair(pred, gt)
    sp = _spacing(spacing, p.ndim)
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return 0.0, False
    if has_p != has_g:
        return _diagonal(p.shape, sp), True
    d1 = _surface_distances(p, g, sp)
    d2 = _surface_distances(g, p, sp)
    # np.percentile's default (linear) interpolation, as MedPy.
    return float(np.percentile(np.hstack((d1, d2)), 95)), False


def hd95(pred: Any, gt: Any, spacing: Spacing = None) -> float:
    """95th percentile of the pooled symmetric surface distances (see :func:`hd95_with_flag`)."""
    return hd95_with_flag(pred, gt, spacing)[0]


# --------------------------------------------------------------------------------------------
# per image, aggregation, evaluation of a list of pairs
# --------------------------------------------------------------------------------------------


def compute_metrics(pred: Any, gt: Any, spacing: Spacing = None) -> dict[str, Any]:
    """All six metrics of one image as plain floats, plus ``HD95_one_empty`` (bool)."""
    p, g = _pair(pred, gt)
    hd, one_empty = hd95_with_flag(p, g, spacing)
    return {
        "DICE": float(dice(p, g)),
        "PPV": float(ppv(p, g)),
        "SEN": float(sen(p, g)),
        "IoU": float(iou(p, g)),
        "BIoU": float(boundary_iou(p, g)),
        "HD95": float(hd),
        HD95_FLAG: bool(one_empty),
    }


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each metric over images.

    Returns ``{name: mean for name in METRIC_NAMES} | {"n": len(rows), "n_hd95_one_empty": k}``.
    Means ignore NaN entries (a row may carry NaN, e.g. read back from elsewhere; the functions
    here never produce one); a metric missing or NaN in every row has mean NaN. ``k`` counts
    rows whose ``HD95_one_empty`` is true.
    """
    out: dict[str, Any] = {}
    for name in METRIC_NAMES:
        vals = np.array([float(r.get(name, np.nan)) for r in rows], dtype=np.float64)
        if vals.size == 0 or np.all(np.isnan(vals)):
            out[name] = math.nan
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[name] = float(np.nanmean(vals))
    out["n"] = len(rows)
    out["n_hd95_one_empty"] = int(sum(bool(r.get(HD95_FLAG, False)) for r in rows))
    return out


def evaluate_pairs(
    preds: Sequence[Any],
    gts: Sequence[Any],
    names: Sequence[str],
    spacings: Sequence[Spacing] | None = None,
) -> dict[str, Any]:
    """Evaluate a list of (prediction, ground truth) masks.

    Returns a JSON-serialisable dict::

        {"n": N,
         "mean": {"DICE": ..., "PPV": ..., "SEN": ..., "IoU": ..., "BIoU": ..., "HD95": ...},
         "per_image": [{"name": ..., "DICE": ..., ..., "HD95": ..., "HD95_one_empty": bool}, ...],
         "hd95_one_empty": k}

    ``spacings`` is None (HD95 in pixels) or one spacing (None, scalar or per-axis sequence) per
    image. Raises ValueError on mismatched list lengths, an empty list, or a shape mismatch (the
    message names the image and both shapes).
    """
    n = len(preds)
    if len(gts) != n or len(names) != n:
        raise ValueError(f"need as many preds, gts and names: got {n}, {len(gts)}, {len(names)}")
    if n == 0:
        raise ValueError("no image pairs to evaluate")
    if spacings is None:
        spacings = [None] * n
    elif len(spacings) != n:
        raise ValueError(f"need one spacing per image: got {len(spacings)} for {n} images")

    per_image = []
    for pred, gt, name, sp in zip(preds, gts, names, spacings):
        try:
            row = compute_metrics(pred, gt, sp)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        per_image.append({"name": str(name), **row})

    agg = aggregate(per_image)
    return {
        "n": n,
        "mean": {k: agg[k] for k in METRIC_NAMES},
        "per_image": per_image,
        "hd95_one_empty": agg["n_hd95_one_empty"],
    }


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def write_per_image_csv(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result["per_image"]`` as CSV (atomically): name, the six metrics, HD95_one_empty (0/1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["name", *METRIC_NAMES, HD95_FLAG]
    rows = []
    for row in result["per_image"]:
        out = {k: row.get(k, "") for k in fields}
        out[HD95_FLAG] = int(bool(row.get(HD95_FLAG, False)))
        # repr() keeps every digit, so the CSV round-trips the floats exactly.
        for k in METRIC_NAMES:
            if isinstance(out[k], float):
                out[k] = repr(out[k])
        rows.append(out)
    write_csv(path, fields, rows)
    return path


def format_table(result: dict[str, Any]) -> str:
    """Aligned two-line table of the means with n, plus a note on one-empty HD95 cases.

    Example::

           n    DICE     PPV     SEN     IoU    BIoU    HD95
          10  0.8346  0.8500  0.8300  0.7510  0.4081  3.2100
    """
    cols = ["n", *METRIC_NAMES]
    cells = [str(result["n"])] + [f"{result['mean'][k]:.4f}" for k in METRIC_NAMES]
    width = max(8, *(len(c) + 2 for c in cells))
    lines = [
        "".join(c.rjust(width) for c in cols),
        "".join(c.rjust(width) for c in cells),
    ]
    k = int(result.get("hd95_one_empty", 0))
    if k:
        lines.append(
            f"HD95: {k} of {result['n']} images had exactly one empty mask (HD95 = image diagonal)"
        )
    return "\n".join(lines)
