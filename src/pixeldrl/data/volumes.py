"""3-D volumes: NIfTI in and out (nibabel), geometry checks, per-volume intensity normalisation.

    pixeldrl prepare Task02_Heart --out prepared/heart      # reads every volume through here

* :func:`read_nifti` -> :class:`Volume`: the voxel array (``float32``), the affine, the header and
  the voxel spacing. A missing, empty, truncated or corrupt file, NaN/Inf voxels or an unexpected
  rank give an :class:`~pixeldrl.errors.InputError` naming the file.
* :func:`read_label_nifti` -> integer labels; non-integer or negative values are rejected.
* :func:`check_same_geometry`: image and label must share the spatial shape and the affine.
* :func:`write_nifti_mask`: writes a ``uint8`` 0/1 mask with the input's affine and header,
  atomically (temporary file in the destination folder, then :func:`os.replace`).
* :func:`normalize_volume`: per-volume, per-channel intensities for the network (see below).

Intensities (docs/METHOD.md, "State, actions, reward"): the network input must be non-negative with a
zeroed pixel reading as the darkest value, because the agents remove a pixel by setting it to 0.

* ``mri``: the body is every voxel above the volume's minimum (MRI background is the minimum,
  usually 0). Values are clipped to the 0.5 / 99.5 percentiles *of the body*, z-scored with the
  body's mean and standard deviation, and the clipped z-scores are mapped linearly onto [0, 1]
  (clip minimum -> 0, clip maximum -> 1). The z-score alone would put a zeroed pixel at the body's
  average (measured: DICE 0.84 -> 0.75 in a re-implementation); the final min-max keeps the range
  of the 2-D folder format, [0, 1], which the network defaults were tuned on. Because both steps
  are linear the result equals clipping + min-max; the body mean and std are still recorded (the
  prepared store's manifest) so the z-scored values can be recovered as ``lo_z + x (hi_z - lo_z)``.
* ``ct``: a fixed window in Hounsfield units (default -160 … 240, soft tissue: level 40, width
  400) mapped onto [0, 1]; values outside are clipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixeldrl.data.images import check_declared_size
from pixeldrl.errors import InputError
from pixeldrl.fileio import atomic_write

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MODALITIES = ("mri", "ct")
DEFAULT_CT_WINDOW = (-160.0, 240.0)
MAX_VOXELS = 2**28
"""Most values (voxels × channels) a NIfTI header may declare: 268 M, 1 GiB as float32 (a 512³ CT is 134 M)."""
CLIP_PERCENTILES = (0.5, 99.5)

__all__ = [
    "NIFTI_SUFFIXES",
    "MODALITIES",
    "DEFAULT_CT_WINDOW",
    "Volume",
    "is_nifti",
    "nifti_stem",
    "read_nifti",
    "read_label_nifti",
    "check_same_geometry",
    "write_nifti_mask",
    "write_nifti_like",
    "normalize_volume",
]


@dataclass
class Volume:
    """A volume and its geometry."""

    data: np.ndarray
    """Voxels, (X, Y, Z) or (X, Y, Z, C) as stored (``float32`` for images, ``int64`` for labels)."""
    affine: np.ndarray
    """4 × 4 voxel -> world (mm) matrix."""
    header: object
    """The nibabel header (written back with predictions)."""
    path: Path

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three spatial axes (from the affine's column norms)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def is_nifti(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def nifti_stem(path: str | os.PathLike) -> str:
    """``case.nii.gz`` -> ``case``."""
    name = Path(path).name
    for suf in (".nii.gz", ".nii"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."


def read_nifti(path: str | os.PathLike, ndim: tuple[int, ...] = (3, 4)) -> Volume:
    """Read a NIfTI image as ``float32`` with its geometry; ``ndim`` lists the accepted ranks.

    A 4-D file is (X, Y, Z, C): the channels of an MSD multi-modal image (e.g. Task01's FLAIR, T1w,
    T1gd, T2w). Trailing singleton axes beyond the third are dropped.
    """
    import nibabel as nib

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")
    try:
        img = nib.load(str(p))  # the header; the data is read below
        check_declared_size(p, img.shape, MAX_VOXELS, "volume")
        data = np.asarray(img.dataobj)  # decodes now: a truncated or corrupt file fails here
    except InputError:
        raise
    except Exception as exc:  # nibabel/gzip/zlib raise many types
        raise InputError(f"{p}: cannot read NIfTI file ({_short(exc)})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in ndim:
        want = " or ".join(f"{n}-D" for n in ndim)
        raise InputError(f"{p}: expected a {want} volume, got an array of shape {tuple(data.shape)}")
    if data.size == 0:
        raise InputError(f"{p}: volume has a zero dimension (shape {tuple(data.shape)})")
    if data.dtype.kind not in "biuf":
        raise InputError(f"{p}: unsupported voxel type {data.dtype}")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InputError(f"{p}: volume contains {bad} non-finite voxel value(s) (NaN or inf)")
    out = data.astype(np.float32)  # dataobj already applied scl_slope / scl_inter
    return Volume(out, np.asarray(img.affine, dtype=np.float64), img.header, p)


def read_label_nifti(path: str | os.PathLike) -> Volume:
    """Read a 3-D label volume as ``int64``; non-integer or negative labels are errors."""
    vol = read_nifti(path, ndim=(3,))
    return Volume(labels_to_int(vol.data, vol.path), vol.affine, vol.header, vol.path)


def labels_to_int(data: np.ndarray, path: Path) -> np.ndarray:
    """Check that label values are non-negative integers and return them as ``int64``."""
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        bad = data[rounded != data].ravel()[0]
        raise InputError(f"{path}: label volume holds non-integer values (e.g. {float(bad):g}); "
                         f"labels must be integers >= 0")
    if rounded.size and rounded.min() < 0:
        raise InputError(f"{path}: label volume holds negative values (min {int(rounded.min())}); "
                         f"labels must be integers >= 0")
    return rounded.astype(np.int64)


def check_same_geometry(image: Volume, label: Volume, atol: float = 1e-3) -> None:
    """Image and label must cover the same voxels: same spatial shape and (nearly) the same affine."""
    if image.data.shape[:3] != label.data.shape[:3]:
        raise InputError(f"{image.path} has shape {tuple(image.data.shape[:3])} but its label {label.path} "
                         f"has shape {tuple(label.data.shape[:3])}")
    if not np.allclose(image.affine, label.affine, atol=atol, rtol=0):
        raise InputError(f"{image.path} and its label {label.path} have different affines (voxel -> world "
                         f"matrices); resample the label onto the image first")


def write_nifti_mask(path: str | os.PathLike, mask: np.ndarray, like: Volume) -> Path:
    """Write ``mask > 0`` as a ``uint8`` NIfTI with ``like``'s affine and header, atomically."""
    return write_nifti_like(path, (np.asarray(mask) > 0).astype(np.uint8), like)


def write_nifti_like(path: str | os.PathLike, data: np.ndarray, like: Volume) -> Path:
    """Write ``data`` (``like``'s spatial shape, optionally a 4th axis) with ``like``'s affine and
    header, in ``data``'s own dtype (``uint8`` masks and step maps, ``float32`` probabilities), atomically."""
    import nibabel as nib

    dest = Path(path)
    a = np.asarray(data)
    if a.shape[:3] != like.data.shape[:3] or a.ndim not in (3, 4):
        raise ValueError(f"array shape {a.shape} does not fit the volume's {like.data.shape[:3]}")
    header = like.header.copy()
    header.set_data_dtype(a.dtype)
    header.set_data_shape(a.shape)
    img = nib.Nifti1Image(a, like.affine, header)
    img.header.set_slope_inter(1, 0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if dest.name.lower().endswith(".gz") else ".nii"  # nibabel picks compression by name
    with atomic_write(dest, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return dest


def normalize_volume(vol: np.ndarray, modality: str = "mri",
                     ct_window: tuple[float, float] = DEFAULT_CT_WINDOW) -> tuple[np.ndarray, dict]:
    """Scale one channel of a volume (any shape) to ``float32`` in [0, 1]; see the module docstring.

    Returns the scaled array and the parameters used (JSON-serialisable): for ``mri`` the clip
    limits ``lo``/``hi`` and the body's ``mean``/``std``; for ``ct`` the window.
    """
    a = np.asarray(vol, dtype=np.float32)
    if modality == "ct":
        lo, hi = float(ct_window[0]), float(ct_window[1])
        if not hi > lo:
            raise InputError(f"--ct-window {lo},{hi}: the upper limit must exceed the lower")
        return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), {"window": [lo, hi]}
    if modality != "mri":
        raise InputError(f"--modality {modality}: choose one of {', '.join(MODALITIES)}")
    body = a[a > a.min()] if a.size else a
    if body.size == 0:  # a constant volume
        return np.zeros(a.shape, dtype=np.float32), {"lo": 0.0, "hi": 0.0, "mean": 0.0, "std": 0.0}
    lo, hi = (float(v) for v in np.percentile(body, CLIP_PERCENTILES))
    if not hi > lo:
        lo, hi = float(a.min()), float(body.max())
    clipped = np.clip(body, lo, hi)
    mean, std = float(clipped.mean()), float(clipped.std())
    out = np.clip((np.clip(a, lo, hi) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return out, {"lo": lo, "hi": hi, "mean": mean, "std": std}


def normalize_channels(image: np.ndarray, modality: str = "mri",
                       ct_window: tuple[float, float] = DEFAULT_CT_WINDOW) -> tuple[np.ndarray, list[dict]]:
    """:func:`normalize_volume` on each channel of a (C, X, Y, Z) image; returns it and one dict per channel."""
    out = np.empty(image.shape, dtype=np.float32)
    params = []
    for c in range(image.shape[0]):
        out[c], p = normalize_volume(image[c], modality, ct_window)
        params.append(p)
    return out, params
