"""Evaluation with the paper's metrics: prediction folders against ground truth, or a checkpoint on a split.

    pixeldrl evaluate --pred predictions/ --gt DATA/test/masks --json
    pixeldrl evaluate --checkpoint runs/x/checkpoint_best.pt --data DATA --split test

Files are paired by name with the extension ignored. Metrics are computed per image at the
image's original size (``metrics.py``), then averaged. A prepared store is evaluated from the
store alone (:func:`evaluate_slices`); its raw folder may be gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pixeldrl.checkpoint import agent_from_checkpoint, resolve_device
from pixeldrl.data.dataset import load_dataset
from pixeldrl.data.folder import find_pairs
from pixeldrl.data.images import IMAGE_EXTENSIONS, read_image, read_mask
from pixeldrl.data.layouts import detect_format, list_cases, read_case
from pixeldrl.data.protocol import Protocol, binary_target, cut_slice, cut_volumes
from pixeldrl.data.splits import assign_splits
from pixeldrl.data.volumes import check_same_geometry, is_nifti, nifti_stem, read_label_nifti
from pixeldrl.errors import InputError
from pixeldrl.fileio import atomic_write
from pixeldrl.metrics import METRIC_NAMES, aggregate, compute_metrics, evaluate_pairs, write_per_image_csv
from pixeldrl.predict import check_single_channel, image_normaliser, mask_to_shape, predict_arrays, predict_slices, predict_volume



def _masks_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in found:
            raise InputError(f"{p}: two masks named {p.stem!r} in {folder} ({found[p.stem].name} and {p.name})")
        found[p.stem] = p
    if not found:
        raise InputError(f"{folder}: holds no {'/'.join(IMAGE_EXTENSIONS)} masks")
    return found


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path) -> dict:
    """Metrics of every prediction in ``pred_dir`` against the same-named mask in ``gt_dir``.

    Folders of NIfTI volumes go to :func:`evaluate_nifti_folders`.
    """
    if Path(gt_dir).is_dir() and any(is_nifti(p) for p in Path(gt_dir).iterdir()):
        return evaluate_nifti_folders(pred_dir, gt_dir)
    preds, gts = _masks_by_stem(Path(pred_dir)), _masks_by_stem(Path(gt_dir))
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise InputError(f"{gts[missing[0]]}: no prediction named {missing[0]!r} in {pred_dir}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = sorted(set(preds) - set(gts))
    if extra:
        raise InputError(f"{preds[extra[0]]}: no ground-truth mask named {extra[0]!r} in {gt_dir}")
    names = sorted(gts)
    p_arrays, g_arrays = [], []
    for n in names:
        p, g = read_mask(preds[n]), read_mask(gts[n])
        if p.shape != g.shape:
            raise InputError(f"{preds[n]}: shape {p.shape} differs from the ground truth {gts[n]} {g.shape}")
        p_arrays.append(p)
        g_arrays.append(g)
    return evaluate_pairs(p_arrays, g_arrays, names)


def evaluate_nifti_folders(pred_dir: str | Path, gt_dir: str | Path) -> dict:
    """Predicted NIfTI masks against same-named ground-truth label volumes (foreground: label > 0).

    Per volume: 3-D DICE, PPV, SEN, IoU, BIoU and HD95 in mm from the voxel spacing
    (``per_volume``, ``volume_mean``); per slice along the last voxel axis (z, training's default
    ``--axis``), over the slices whose ground truth has foreground (the paper's protocol): the usual
    table, HD95 in mm from the in-plane spacing.
    Prediction and ground truth must share shape and affine.
    """
    def volumes(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder")
        found = {nifti_stem(p): p for p in sorted(folder.iterdir()) if is_nifti(p) and not p.name.startswith(".")}
        if not found:
            raise InputError(f"{folder}: holds no .nii/.nii.gz volumes")
        return found

    axis = 2
    preds, gts = volumes(Path(pred_dir)), volumes(Path(gt_dir))
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise InputError(f"{gts[missing[0]]}: no prediction named {missing[0]!r} in {pred_dir}")
    extra = sorted(set(preds) - set(gts))
    if extra:
        raise InputError(f"{preds[extra[0]]}: no ground-truth volume named {extra[0]!r} in {gt_dir}")
    s_pred, s_gt, s_names, s_spacing, per_volume = [], [], [], [], []
    for name in sorted(gts):
        p, g = read_label_nifti(preds[name]), read_label_nifti(gts[name])
        check_same_geometry(p, g)
        pm, gm = p.data > 0, g.data > 0
        per_volume.append({"name": name, **compute_metrics(pm, gm, g.spacing)})
        in_plane = [v for a, v in enumerate(g.spacing) if a != axis]
        for k in range(gm.shape[axis]):
            gs = np.take(gm, k, axis=axis)
            if gs.any():
                s_pred.append(np.take(pm, k, axis=axis))
                s_gt.append(gs)
                s_names.append(f"{name}_{'xyz'[axis]}{k:03d}")
                s_spacing.append(in_plane)
    if not s_names:
        raise InputError(f"{gt_dir}: no ground-truth slice holds foreground")
    result = evaluate_pairs(s_pred, s_gt, s_names, s_spacing)
    agg = aggregate(per_volume)
    result.update(hd95_unit="mm", per_volume=per_volume, volume_mean={k: agg[k] for k in METRIC_NAMES})
    return result


def empty_result() -> dict:
    """A split with no images (e.g. no test split in a data set of one image): nothing to measure."""
    return {"n": 0, "mean": {k: float("nan") for k in METRIC_NAMES}, "per_image": [], "hd95_one_empty": 0}


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise InputError(f"--split {split}: choose one of ['test', 'train', 'val']")


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, split: str = "test", device: str = "cpu",
                        progress: bool = True, batch_size: int = 8) -> dict:
    """Segment a split of a dataset with a checkpoint; metrics at the images' original size.

    A 2-D folder or raw volumes are read from their files; a prepared store from the store alone
    (:func:`evaluate_store`).
    """
    device = resolve_device(device)
    agent, cfg = agent_from_checkpoint(checkpoint, device)
    fmt = detect_format(data)
    if fmt == "prepared":
        return evaluate_store(agent, cfg, data, split, device, progress, batch_size)
    if fmt != "folder":
        return evaluate_volumes(agent, cfg, data, fmt, split, device, progress, batch_size)
    check_single_channel(cfg, checkpoint)
    splits = find_pairs(data, seed=cfg.split_seed)
    if split not in splits:
        raise InputError(f"--split {split}: choose one of {sorted(splits)}")
    pairs = splits[split]
    if not pairs:
        return empty_result()
    images, gts = [], []
    for pair in pairs:
        im, gt = read_image(pair.image_path), read_mask(pair.mask_path)
        if im.shape[:2] != gt.shape:
            raise InputError(f"{pair.image_path}: shape {im.shape} differs from its mask {pair.mask_path} {gt.shape}")
        images.append(im)
        gts.append(gt)
    results = predict_arrays(agent, images, cfg.image_size, cfg.infer_steps, device, batch_size, progress=progress,
                             normalise=image_normaliser(cfg))
    return evaluate_pairs([r["mask"] for r in results], gts, [p.name for p in pairs])


def evaluate_slices(agent, cfg, ds, device: str = "cpu", progress: bool = True, batch_size: int = 8) -> dict:
    """A checkpoint's agent on a :class:`~pixeldrl.data.folder.SliceDataset` (a split of a prepared
    store, as :func:`pixeldrl.data.protocol.load_dataset` gives it to training).

    The network-size inputs are segmented as they are (``cfg.infer_steps`` greedy steps), then each
    prediction and each ground-truth mask is mapped back to the slice's original in-plane size
    (``from_network``, as ``predict`` does), where the metrics are computed; HD95 is in mm from the
    slice's in-plane spacing (``hd95_unit``; ``"pixel"`` when a slice has no recorded spacing).

    The store holds its masks at network size only, so the ground truth here is the stored mask
    mapped back (``"ground_truth": "store"`` in the result): identical to the raw mask when the
    store's image size equals the slice's larger side, else its nearest-neighbour resampling, so the
    numbers then approximate those of an evaluation on the raw volumes. The store keeps only the
    slices that ``prepare`` kept, so there are no per-volume 3-D metrics (``per_volume``).
    """
    if not len(ds):
        return empty_result()
    device = resolve_device(device)
    preds = predict_slices(agent, ds.images, ds.original_shapes, cfg.infer_steps, device, batch_size, progress)
    gts = [mask_to_shape(m, shape) for m, shape in zip(ds.masks, ds.original_shapes)]
    in_mm = all(sp is not None for sp in ds.spacings)
    result = evaluate_pairs(preds, gts, ds.names, ds.spacings if in_mm else None)
    result["hd95_unit"] = "mm" if in_mm else "pixel"
    result["ground_truth"] = "store"
    return result


def evaluate_store(agent, cfg, data: str | Path, split: str = "test", device: str = "cpu", progress: bool = True,
                   batch_size: int = 8) -> dict:
    """A checkpoint on a split of a prepared store, from the store alone (the raw folder is not read).

    The split is the one training made: :func:`pixeldrl.data.protocol.load_dataset` with the run's
    ``split_level``, ``split_seed``, ``k_shot`` (the ``train`` split is the k-shot subset) and
    ``image_size``. Metrics as :func:`evaluate_slices`.
    """
    from dataclasses import replace


    _check_split(split)
    run = replace(cfg, data=str(data), format="prepared")  # load_dataset records the store's settings in it
    ds = load_dataset(run, only=(split,))[split]
    if ds.images.shape[1] != cfg.in_channels:
        raise InputError(f"{data}: the store's slices have {ds.images.shape[1]} channel(s) but the checkpoint "
                         f"was trained on {cfg.in_channels}")
    return evaluate_slices(agent, cfg, ds, device, progress, batch_size)


def evaluate_volumes(agent, cfg, data: str | Path, fmt: str, split: str = "test", device: str = "cpu",
                     progress: bool = True, batch_size: int = 8) -> dict:
    """A checkpoint on a split of a raw volume dataset (a prepared store goes to :func:`evaluate_store`).

    The split is recomputed exactly as training made it (the run's labels, channels, axis, empty-slice
    rule, ``split_level``, ``split_seed``). Each volume of the split is segmented whole
    (:func:`pixeldrl.predict.predict_volume`). Returns the ``evaluate --json`` object over the
    split's kept slices, at their original in-plane size with HD95 in mm (in-plane spacing), plus
    ``per_volume`` / ``volume_mean``: 3-D DICE, PPV, SEN, IoU, BIoU and HD95 in mm (voxel spacing)
    per volume — only with ``split_level="patient"``, where a volume lies wholly in one split.
    """
    if fmt == "prepared":
        return evaluate_store(agent, cfg, data, split, device, progress, batch_size)
    _check_split(split)
    proto = Protocol.from_config(cfg)
    root, proto.format = Path(data), fmt
    cases = list_cases(root, fmt)
    index = cut_volumes(root, proto, cases=cases, index_only=True)
    which = assign_splits(index.patients, cfg.split_level, cfg.split_seed)
    chosen = [i for i, s in enumerate(which) if s == split]
    if not chosen:
        return empty_result()
    by_case: dict[int, list[int]] = {}
    for i in chosen:
        by_case.setdefault(int(index.case_index[i]), []).append(i)
    preds, gts, names, spacings, per_volume = [], [], [], [], []
    for ci, rows in by_case.items():
        case = cases[ci]
        data_ = read_case(case)
        pred = predict_volume(agent, cfg, data_.image, device, batch_size, where=case.images[0])
        gt = binary_target(data_.label, proto.labels).astype(bool)
        in_plane = [v for a, v in enumerate(data_.spacing) if a != proto.axis]
        for i in rows:
            k = int(index.slice_index[i])
            preds.append(cut_slice(pred, proto.axis, k))
            gts.append(cut_slice(gt, proto.axis, k))
            names.append(index.names[i])
            spacings.append(in_plane)
        if cfg.split_level == "patient":
            per_volume.append({"name": case.name, **compute_metrics(pred, gt, data_.spacing)})
    result = evaluate_pairs(preds, gts, names, spacings)
    result["hd95_unit"] = "mm"
    if per_volume:
        agg = aggregate(per_volume)
        result["per_volume"] = per_volume
        result["volume_mean"] = {k: agg[k] for k in METRIC_NAMES}
    return result


def write_result(result: dict, json_path: str | Path, csv_path: str | Path | None = None) -> None:
    """summary.json (the ``evaluate --json`` object) and, optionally, the per-image CSV."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    if csv_path is not None:
        write_per_image_csv(result, csv_path)
