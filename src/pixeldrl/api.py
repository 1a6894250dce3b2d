"""The Python API: a trained model as an object, and training in one call.

    import pixeldrl
    model = pixeldrl.load("runs/x/checkpoint_best.pt", device="cpu")
    out = model.segment(array)                 # 2-D (H, W) or (C, H, W) numpy, any dtype
    out.mask, out.keep_prob, out.steps         # steps: (T, H, W), the mask after each step
    vol = model.segment_volume("case.nii.gz")  # the same fields over (X, Y, Z), with the geometry
    vol.save("predictions/")                   # mask, prob/, steps/, removal/ as ``pixeldrl predict`` writes them
    run = pixeldrl.train(data="DATA", preset="small", epochs=5, out="runs/x")
    run.summary["mean"]["DICE"], run.folder, run.load()

Inputs are normalised the way the checkpoint's run normalised its training data (the 2-D folder
format per image; a volume layout as a one-slice volume with its modality and CT window), so a
model trained on volumes segments an array of that modality correctly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pixeldrl.checkpoint import agent_from_checkpoint, resolve_device
from pixeldrl.config import TrainConfig, make_config
from pixeldrl.data.images import write_float_tiff, write_mask, write_mask_values
from pixeldrl.data.volumes import Volume, nifti_stem, read_nifti, write_nifti_like, write_nifti_mask
from pixeldrl.errors import InputError
from pixeldrl.predict import image_normaliser, predict_arrays, removal_steps, segment_volume
from pixeldrl.training.train import train as train_run

__all__ = ["Segmented", "Model", "load", "TrainedRun", "train"]


@dataclass
class Segmented:
    """One segmented image or volume, at its own size."""

    mask: np.ndarray
    """(H, W) or (X, Y, Z) bool: the final mask."""
    keep_prob: np.ndarray
    """Same shape, float32: π(keep) at the step that decided each pixel (> 0.5 ⇔ in the mask)."""
    steps: np.ndarray
    """(T, …) bool: the mask after each greedy step 1 … T (T = the checkpoint's inference steps)."""
    geometry: Volume | None = field(default=None, repr=False)
    """For a NIfTI volume: the input's :class:`~pixeldrl.data.volumes.Volume` (affine, header)."""
    name: str = "image"
    """File name stem used by :meth:`save`."""

    @property
    def removal_step(self) -> np.ndarray:
        """uint8, same shape as ``mask``: the step each pixel was set to zero (0 = kept to the end)."""
        return removal_steps(np.concatenate([np.ones_like(self.mask)[None], self.steps]))

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write the mask, ``prob/``, ``steps/`` (volumes) and ``removal/`` into ``out_dir``, as
        ``pixeldrl predict --save-prob --save-steps`` does; returns the files written."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.geometry is not None:
            name = self.name + ".nii.gz"
            return [write_nifti_mask(out / name, self.mask, self.geometry),
                    write_nifti_like(out / "prob" / name, self.keep_prob.astype(np.float32), self.geometry),
                    write_nifti_like(out / "steps" / name, np.moveaxis(self.steps, 0, -1).astype(np.uint8), self.geometry),
                    write_nifti_like(out / "removal" / name, self.removal_step, self.geometry)]
        paths = [out / f"{self.name}.png", out / "prob" / f"{self.name}.tif", out / "removal" / f"{self.name}.png"]
        write_mask(paths[0], self.mask)
        write_float_tiff(paths[1], self.keep_prob)
        paths[2].parent.mkdir(parents=True, exist_ok=True)
        write_mask_values(paths[2], self.removal_step)
        return paths


class Model:
    """A trained checkpoint, ready to segment arrays and volumes (see the module docstring)."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_size: int = 8):
        self.checkpoint = Path(checkpoint)
        self.device = resolve_device(device)
        self.agent, self.config = agent_from_checkpoint(self.checkpoint, self.device)
        self.batch_size = batch_size

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({str(self.checkpoint)!r}, model={c.model!r}, preset={c.preset!r}, in_channels={c.in_channels}, "
                f"image_size={c.image_size}, steps={c.infer_steps}, device={str(self.device)!r})")

    def segment(self, image: np.ndarray, name: str = "image") -> Segmented:
        """Segment one 2-D image: (H, W), or (C, H, W) for a multi-channel checkpoint; any real dtype."""
        a = np.asarray(image)
        if a.dtype.kind not in "biuf":
            raise InputError(f"segment: expected a numeric array, got dtype {a.dtype}")
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or min(a.shape[1:]) < 1:
            raise InputError(f"segment: expected a 2-D image (H, W) or (C, H, W), got shape {np.shape(image)}")
        if a.shape[0] != self.config.in_channels:
            raise InputError(f"segment: the image has {a.shape[0]} channel(s) but the checkpoint takes "
                             f"{self.config.in_channels}")
        if not np.all(np.isfinite(a)):
            raise InputError("segment: the image contains non-finite values (NaN or inf)")
        a = a.astype(np.float32)
        if a.shape[0] == 1 and self.config.source_format in ("", "folder"):
            res = predict_arrays(self.agent, [a[0]], self.config.image_size, self.config.infer_steps, self.device,
                                 return_steps=True, progress=False, normalise=image_normaliser(self.config))[0]
        else:
            # A volume layout's run: the image is a one-slice volume, normalised as its volumes were.
            cfg = _single_slice(self.config)
            res = segment_volume(self.agent, cfg, a[..., None], self.device, self.batch_size, where=name,
                                 return_steps=True)
            res = {k: v[..., 0] for k, v in res.items()}
        return Segmented(res["mask"], res["keep_prob"], res["steps"][1:], None, name)

    def segment_volume(self, volume: str | Path | np.ndarray) -> Segmented:
        """Segment a NIfTI file (or a (C, X, Y, Z) / (X, Y, Z) array of stored intensities) slice by
        slice along the run's axis; the result keeps the file's geometry for :meth:`Segmented.save`."""
        geometry, name = None, "volume"
        if isinstance(volume, (str, Path)):
            geometry = read_nifti(volume)
            name = nifti_stem(volume)
            data = geometry.data
            data = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)  # (C, X, Y, Z)
        else:
            data = np.asarray(volume, dtype=np.float32)
            data = data[None] if data.ndim == 3 else data
            if data.ndim != 4:
                raise InputError(f"segment_volume: expected (X, Y, Z) or (C, X, Y, Z), got shape {np.shape(volume)}")
        res = segment_volume(self.agent, self.config, data, self.device, self.batch_size, where=name, return_steps=True)
        return Segmented(res["mask"], res["keep_prob"], res["steps"][1:], geometry, name)


def _single_slice(cfg: TrainConfig) -> TrainConfig:
    """The run's settings for a 2-D image seen as a volume of one slice (cut along the last axis)."""
    return replace(cfg, axis=2, channels=None)


def load(checkpoint: str | Path, device: str = "auto", batch_size: int = 8) -> Model:
    """A :class:`Model` from a checkpoint (``torch.load(weights_only=True)``)."""
    return Model(checkpoint, device, batch_size)


@dataclass
class TrainedRun:
    """What :func:`train` gives back: the run folder and its test-split summary."""

    folder: Path
    summary: dict | None
    """``summary.json``: the ``evaluate --json`` object of the test split (None without a test split)."""

    @property
    def best(self) -> Path:
        return self.folder / "checkpoint_best.pt"

    def load(self, device: str = "auto") -> Model:
        return load(self.best, device)


def train(config: TrainConfig | None = None, *, preset: str = "small", resume: bool = False, progress: bool = True,
          **settings) -> TrainedRun:
    """Train as ``pixeldrl train`` does: from a :class:`TrainConfig`, or from ``preset`` and any
    TrainConfig fields as keywords (``data=``, ``epochs=``, ``out=``, ``model=``, …)."""
    if config is None:
        paths = {k: str(v) for k, v in settings.items() if isinstance(v, Path)}  # config.json holds strings
        cfg = make_config(preset, **{"device": "auto", **settings, **paths})
    elif settings:
        raise InputError("train: give a TrainConfig or keyword settings, not both")
    else:
        cfg = config
    folder = train_run(cfg, resume=resume, progress=progress)
    path = folder / "summary.json"
    return TrainedRun(folder, json.loads(path.read_text()) if path.is_file() else None)
