"""Tests of pixeldrl.metrics: hand-computed values, and MONAI / MedPy as independent references."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from pixeldrl import metrics as M
from pixeldrl.metrics import EPS, METRIC_NAMES

# --------------------------------------------------------------------------------------------
# fixtures: tiny hand-checkable masks and seeded random masks
# --------------------------------------------------------------------------------------------

# gt: 2x2 block in the top-left corner; pred: vertical line of 3 in column 1.
# TP = 2 ((0,1), (1,1)), FP = 1 ((2,1)), FN = 2 ((0,0), (1,0)), |G| = 4, |P| = 3.
GT4 = np.array(
    [[1, 1, 0, 0],
     [1, 1, 0, 0],
     [0, 0, 0, 0],
     [0, 0, 0, 0]], dtype=np.uint8)  # fmt: skip
PRED4 = np.array(
    [[0, 1, 0, 0],
     [0, 1, 0, 0],
     [0, 1, 0, 0],
     [0, 0, 0, 0]], dtype=np.uint8)  # fmt: skip


def blob(rng: np.random.Generator, shape, sigma=2.0, q=0.6) -> np.ndarray:
    """Random blobs: smoothed Gaussian noise thresholded at its q-quantile (never empty)."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field > np.quantile(field, q)


def random_pairs():
    """Seeded (pred, gt) pairs of several shapes and kinds, all with both masks non-empty."""
    rng = np.random.default_rng(1234)
    pairs = []
    for shape in [(16, 16), (33, 47), (64, 64), (20, 24, 12)]:
        gt = blob(rng, shape)
        # independent blob, a shifted copy, a dilated copy and salt noise: low to high overlap
        pairs.append((blob(rng, shape, q=0.7), gt))
        pairs.append((np.roll(gt, 2, axis=0), gt))
        pairs.append((ndimage.binary_dilation(gt, iterations=2), gt))
        pairs.append((rng.random(shape) < 0.15, gt))
    for pred, gt in pairs:
        assert pred.any() and gt.any()
    return pairs


PAIRS = random_pairs()


# --------------------------------------------------------------------------------------------
# hand-computed values
# --------------------------------------------------------------------------------------------


def test_overlap_metrics_hand_computed():
    assert M.dice(PRED4, GT4) == pytest.approx((2 * 2 + EPS) / (4 + 3 + EPS), rel=1e-12)
    assert M.ppv(PRED4, GT4) == pytest.approx((2 + EPS) / (2 + 1 + EPS), rel=1e-12)
    assert M.sen(PRED4, GT4) == pytest.approx((2 + EPS) / (2 + 2 + EPS), rel=1e-12)
    assert M.iou(PRED4, GT4) == pytest.approx((2 + EPS) / (4 + 3 - 2 + EPS), rel=1e-12)
    # sanity: without ε these would be 4/7, 2/3, 1/2, 2/5
    assert M.dice(PRED4, GT4) == pytest.approx(4 / 7, abs=1e-4)
    assert M.iou(PRED4, GT4) == pytest.approx(2 / 5, abs=1e-4)


def test_foreground_is_strictly_positive():
    # probabilities / negative fill values: only > 0 is foreground
    pred = np.where(PRED4 > 0, 0.9, -1.0)
    gt = GT4.astype(bool)
    assert M.dice(pred, gt) == M.dice(PRED4, GT4)


def test_hd95_hand_computed():
    # surfaces are the whole masks here; pred→gt distances 0, 0, 1; gt→pred 1, 0, 1, 0.
    # pooled sorted [0,0,0,0,1,1,1], 95th percentile (linear) = 1
    assert M.hd95(PRED4, GT4) == pytest.approx(1.0)
    # two single pixels three columns apart: distance 3, or 3 * 0.5 with column spacing 0.5
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, 0] = True
    b[0, 3] = True
    assert M.hd95(a, b) == pytest.approx(3.0)
    assert M.hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(1.5)
    assert M.hd95(a, b, spacing=2.0) == pytest.approx(6.0)


def test_empty_empty():
    z = np.zeros((4, 4), np.uint8)
    m = M.compute_metrics(z, z)
    # ε / ε = 1 exactly
    for name in ("DICE", "PPV", "SEN", "IoU"):
        assert m[name] == 1.0
    assert m["BIoU"] == 1.0
    assert m["HD95"] == 0.0
    assert m["HD95_one_empty"] is False
    assert M.hd95_with_flag(z, z) == (0.0, False)


@pytest.mark.parametrize("swap", [False, True])
def test_one_empty(swap):
    z = np.zeros((4, 4), np.uint8)
    pred, gt = (GT4, z) if swap else (z, GT4)
    value, one_empty = M.hd95_with_flag(pred, gt)
    assert one_empty is True
    assert value == pytest.approx(math.sqrt(4**2 + 4**2))
    # diagonal in spacing units: sqrt((4*2)^2 + (4*1)^2)
    assert M.hd95(pred, gt, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(80.0))
    m = M.compute_metrics(pred, gt)
    assert m["DICE"] == pytest.approx(EPS / (4 + EPS))
    assert m["DICE"] < 1e-4
    assert m["IoU"] < 1e-4
    assert m["BIoU"] == 0.0
    assert m["HD95_one_empty"] is True


def test_shape_mismatch_and_bad_spacing():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        M.dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(GT4, PRED4, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(GT4, PRED4, spacing=(1.0, 0.0))


# --------------------------------------------------------------------------------------------
# MONAI / MedPy references on random masks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(len(PAIRS)))
def test_dice_iou_match_monai(k):
    torch = pytest.importorskip("torch")
    mm = pytest.importorskip("monai.metrics")
    pred, gt = PAIRS[k]
    tp = torch.from_numpy(pred.astype(np.float32))[None, None]
    tg = torch.from_numpy(gt.astype(np.float32))[None, None]
    ref_dice = float(mm.compute_dice(tp, tg, include_background=True)[0, 0])
    ref_iou = float(mm.compute_iou(tp, tg, include_background=True)[0, 0])
    # MONAI has no ε; |ε-version − plain| <= ε / (|G|+|P|) <= 1e-4 for non-empty masks
    assert M.dice(pred, gt) == pytest.approx(ref_dice, abs=1e-4)
    assert M.iou(pred, gt) == pytest.approx(ref_iou, abs=1e-4)


@pytest.mark.parametrize("k", range(len(PAIRS)))
def test_ppv_sen_hd95_match_medpy(k):
    mb = pytest.importorskip("medpy.metric.binary")
    pred, gt = PAIRS[k]
    assert M.ppv(pred, gt) == pytest.approx(mb.precision(pred, gt), abs=1e-4)
    assert M.sen(pred, gt) == pytest.approx(mb.sensitivity(pred, gt), abs=1e-4)
    assert M.hd95(pred, gt) == pytest.approx(mb.hd95(pred, gt), abs=1e-6)
    spacing = (0.7, 1.3) if pred.ndim == 2 else (1.0, 0.5, 2.5)
    assert M.hd95(pred, gt, spacing=spacing) == pytest.approx(
        mb.hd95(pred, gt, voxelspacing=spacing), abs=1e-6
    )
    assert M.hd95(pred, gt, spacing=0.8) == pytest.approx(
        mb.hd95(pred, gt, voxelspacing=0.8), abs=1e-6
    )


# --------------------------------------------------------------------------------------------
# Boundary IoU against a brute-force loop implementation
# --------------------------------------------------------------------------------------------


def _erode_bruteforce(mask: np.ndarray, d: int) -> np.ndarray:
    """3x3-square erosion, d times, pixels outside the image counted as background."""
    h, w = mask.shape
    cur = mask.astype(bool)
    for _ in range(d):
        new = np.zeros_like(cur)
        for i in range(h):
            for j in range(w):
                new[i, j] = all(
                    0 <= i + di < h and 0 <= j + dj < w and cur[i + di, j + dj]
                    for di in (-1, 0, 1)
                    for dj in (-1, 0, 1)
                )
        cur = new
    return cur


def _biou_bruteforce(pred: np.ndarray, gt: np.ndarray, ratio: float = 0.02) -> float:
    h, w = gt.shape
    d = max(1, int(round(ratio * math.sqrt(h * h + w * w))))
    pb = pred.astype(bool) & ~_erode_bruteforce(pred, d)
    gb = gt.astype(bool) & ~_erode_bruteforce(gt, d)
    union = np.count_nonzero(pb | gb)
    return 1.0 if union == 0 else np.count_nonzero(pb & gb) / union


def test_biou_identical_is_one():
    for _, gt in PAIRS:
        if gt.ndim == 2:
            assert M.boundary_iou(gt, gt) == 1.0


def test_biou_shifted_squares_hand_and_bruteforce():
    # 10x10 image: d = max(1, round(0.02 * 14.14)) = 1, so each band is the 12-pixel ring of
    # the 4x4 square. Shifted by one column the rings share 3 + 3 pixels on the top and bottom
    # rows and nothing on the sides: BIoU = 6 / (12 + 12 - 6) = 1/3.
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b[2:6, 3:7] = True
    assert M.boundary_iou(a, b) == pytest.approx(1 / 3)
    assert M.boundary_iou(a, b) == pytest.approx(_biou_bruteforce(a, b))


def test_biou_wide_band_and_border_vs_bruteforce():
    rng = np.random.default_rng(7)
    # 120x90: diagonal 150, d = 3; masks touch the image border
    cases = [(blob(rng, (120, 90), sigma=4), blob(rng, (120, 90), sigma=4)) for _ in range(2)]
    sq_a = np.zeros((60, 60), bool)
    sq_b = np.zeros((60, 60), bool)
    sq_a[0:30, 0:30] = True  # touches the top-left border
    sq_b[1:31, 1:31] = True
    cases.append((sq_a, sq_b))
    cases.append((np.ones((12, 12), bool), np.ones((12, 12), bool)))
    cases.append((np.ones((12, 12), bool), np.zeros((12, 12), bool)))
    for pred, gt in cases:
        assert M.boundary_iou(pred, gt) == pytest.approx(_biou_bruteforce(pred, gt), abs=1e-12)


def test_boundary_band_border_is_background():
    # full image: the band is the outer ring of width d
    assert np.count_nonzero(M.boundary_band(np.ones((5, 5)), 1)) == 25 - 9
    assert M.boundary_dilation((100, 100)) == 3  # round(2.83)
    band = M.boundary_band(np.ones((100, 100)), M.boundary_dilation((100, 100)))
    assert np.count_nonzero(band) == 100 * 100 - 94 * 94


def test_boundary_dilation_rounding():
    assert M.boundary_dilation((10, 10)) == 1  # 0.28 → max(1, 0)
    assert M.boundary_dilation((256, 256)) == 7  # 7.24
    # diagonal 125 → 2.5: Python's round (half to even) gives 2, as the reference code
    assert M.boundary_dilation((75, 100)) == 2
    with pytest.raises(ValueError):
        M.boundary_band(np.ones((4, 4)), 0)


# --------------------------------------------------------------------------------------------
# aggregation, evaluate_pairs, output
# --------------------------------------------------------------------------------------------


def _three_pairs():
    z = np.zeros((4, 4), np.uint8)
    return [PRED4, GT4, z], [GT4, GT4, GT4], ["a", "b", "c"]


def test_evaluate_pairs_format_and_means():
    preds, gts, names = _three_pairs()
    res = M.evaluate_pairs(preds, gts, names)
    json.loads(json.dumps(res, allow_nan=False))  # plain, finite, JSON-serialisable
    assert set(res) == {"n", "mean", "per_image", "hd95_one_empty"}
    assert res["n"] == 3
    assert tuple(res["mean"]) == METRIC_NAMES
    assert [r["name"] for r in res["per_image"]] == names
    for row in res["per_image"]:
        assert set(row) == {"name", *METRIC_NAMES, "HD95_one_empty"}
        assert all(type(row[k]) is float for k in METRIC_NAMES)
    for k in METRIC_NAMES:
        assert type(res["mean"][k]) is float
        assert res["mean"][k] == pytest.approx(np.mean([r[k] for r in res["per_image"]]))
    assert res["per_image"][1]["DICE"] == 1.0
    assert res["per_image"][2]["HD95"] == pytest.approx(math.sqrt(32))
    assert res["hd95_one_empty"] == 1
    assert res["per_image"][0] == {"name": "a", **M.compute_metrics(PRED4, GT4)}


def test_evaluate_pairs_spacings_and_errors():
    preds, gts, names = _three_pairs()
    res = M.evaluate_pairs(preds, gts, names, spacings=[(1.0, 0.5), None, 2.0])
    assert res["per_image"][0]["HD95"] == pytest.approx(M.hd95(PRED4, GT4, (1.0, 0.5)))
    assert res["per_image"][2]["HD95"] == pytest.approx(math.sqrt(64 + 64))
    with pytest.raises(ValueError, match=r"b: .*\(4, 4\).*\(3, 4\)"):
        M.evaluate_pairs(preds, [GT4, GT4[:3], GT4], names)
    with pytest.raises(ValueError):
        M.evaluate_pairs(preds, gts, names[:2])
    with pytest.raises(ValueError):
        M.evaluate_pairs([], [], [])


def test_aggregate_nan_aware():
    rows = [
        {"DICE": 0.5, "PPV": 1.0, "SEN": 0.2, "IoU": 0.4, "BIoU": 0.1, "HD95": 2.0},
        {"DICE": float("nan"), "PPV": 0.0, "SEN": 0.4, "IoU": 0.6, "BIoU": 0.3, "HD95": 4.0,
         "HD95_one_empty": True},
    ]  # fmt: skip
    agg = M.aggregate(rows)
    assert agg["DICE"] == 0.5
    assert agg["PPV"] == 0.5
    assert agg["HD95"] == 3.0
    assert agg["n"] == 2
    assert agg["n_hd95_one_empty"] == 1
    assert math.isnan(M.aggregate([])["DICE"]) and M.aggregate([])["n"] == 0


def test_csv_and_table(tmp_path):
    preds, gts, names = _three_pairs()
    res = M.evaluate_pairs(preds, gts, names)
    path = M.write_per_image_csv(res, tmp_path / "sub" / "per_image.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["name", *METRIC_NAMES, "HD95_one_empty"]
    assert [r["name"] for r in rows] == names
    for got, want in zip(rows, res["per_image"]):
        for k in METRIC_NAMES:
            assert float(got[k]) == want[k]  # repr round-trips exactly
    assert [r["HD95_one_empty"] for r in rows] == ["0", "0", "1"]

    table = M.format_table(res)
    lines = table.splitlines()
    assert lines[0].split() == ["n", *METRIC_NAMES]
    assert lines[1].split()[0] == "3"
    assert lines[1].split()[1] == f"{res['mean']['DICE']:.4f}"
    assert len(lines[0]) == len(lines[1])
    assert "1 of 3" in lines[2]
