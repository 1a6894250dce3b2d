"""2-D image and mask I/O (PNG through Pillow, TIFF through tifffile).

Readers return plain NumPy arrays and turn every problem with a file into an
:class:`~pixeldrl.errors.InputError` whose one-line message names the file and what is wrong:
missing, empty (0 bytes), unreadable / corrupt / truncated, an unsupported extension, a zero
dimension, non-finite pixel values, a colour image, or an array that is not 2-D.

* :func:`read_image` -> ``float32`` (H, W), the stored values unchanged (8-bit, 16-bit, integer or
  float TIFF). Intensity scaling is left to :func:`pixeldrl.data.folder.normalize_intensity`.
* :func:`read_mask` -> ``bool`` (H, W), foreground = pixel value > 0.
* :func:`write_mask` / :func:`write_image_uint16` write atomically: the data goes to a temporary
  file in the destination folder which is then moved over the destination with :func:`os.replace`,
  so an interrupted or failed write never leaves a half-written file behind.

Size limit: an image whose header declares more than :data:`MAX_IMAGE_PIXELS` values (pixels ×
channels × pages) is refused from the header alone, before anything is decoded or allocated: a
small compressed file can declare gigabytes.

An RGB or RGBA file (or a palette / grey+alpha PNG) is accepted as grayscale when its colour
channels are all equal (alpha is ignored); otherwise it is rejected, because picking a channel
silently would hide a data-preparation mistake.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pixeldrl.errors import InputError
from pixeldrl.fileio import atomic_write

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff")

MAX_IMAGE_PIXELS = 8192 * 8192
"""Most values (pixels × channels × pages) a 2-D image may declare: 8192², 256 MiB as float32."""

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "check_declared_size",
    "read_tiff",
    "is_image_file",
    "read_image",
    "read_mask",
    "write_mask",
    "write_image_uint16",
    "write_float_tiff",
    "write_mask_values",
]


def is_image_file(path: str | os.PathLike) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")


def check_declared_size(path: Path, shape: tuple[int, ...], limit: int = MAX_IMAGE_PIXELS, what: str = "image") -> None:
    """InputError when a header's declared ``shape`` holds more than ``limit`` values."""
    n = int(np.prod([int(v) for v in shape], dtype=np.float64))
    if n > limit:
        raise InputError(f"{path}: the {what} declares {' x '.join(str(int(v)) for v in shape)} = {n:,} values, "
                         f"more than the limit of {limit:,}; crop or downsample it first")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:  # reads the header only
            check_declared_size(path, (im.height, im.width, len(im.getbands())))
            im.load()  # forces decoding now: a truncated file fails here
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "PA":
                im = im.convert("RGBA")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot read PNG image ({_short(exc)})") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - defensive
        raise InputError(f"{path}: image too large ({_short(exc)})") from None
    if arr.ndim == 3 and im.mode == "LA":
        arr = arr[..., :1]  # grey + alpha: the grey channel
    return arr


def read_tiff(path: Path) -> np.ndarray:
    """A TIFF's stored array (any shape), size-checked from its header first."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:  # parses the headers (IFDs), decodes nothing yet
            for series in tif.series:
                check_declared_size(path, series.shape)
            return np.asarray(tif.asarray())
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types (TiffFileError, ValueError, ...)
        raise InputError(f"{path}: cannot read TIFF image ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."


def _to_2d(arr: np.ndarray, path: Path) -> np.ndarray:
    """Reduce a decoded array to (H, W); accept equal-channel colour images as grayscale."""
    # Leading singleton axes (e.g. a one-page TIFF stored as (1, H, W)).
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4):
        n = arr.shape[-1]
        if n == 1:
            arr = arr[..., 0]
        else:
            colour = arr[..., :3] if n >= 3 else arr[..., :1]  # drop alpha (4th / 2nd channel)
            if n == 2:
                arr = colour[..., 0]
            elif np.all(colour == colour[..., :1]):
                arr = colour[..., 0]
            else:
                raise InputError(
                    f"{path}: image has {n} channels; expected a grayscale image "
                    f"(its colour channels differ; extract one channel first)"
                )
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D image, got an array of shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"{path}: image has a zero dimension (shape {tuple(arr.shape)})")
    return arr


def _load(path: str | os.PathLike) -> tuple[np.ndarray, Path]:
    p = Path(path)
    _check_file(p)
    arr = _read_png(p) if p.suffix.lower() == ".png" else read_tiff(p)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{p}: unsupported pixel type {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{p}: image has a zero dimension (shape {tuple(arr.shape)})")
    arr = _to_2d(arr, p)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{p}: image contains {bad} non-finite pixel value(s) (NaN or inf)")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(f"{p}: pixel values overflow float32")
    return out, p


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2-D grayscale image as a ``float32`` (H, W) array of the stored values."""
    return _load(path)[0]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a 2-D mask as a ``bool`` (H, W) array: pixels > 0 are foreground."""
    return _load(path)[0] > 0


def _atomic_write(path: str | os.PathLike, arr: np.ndarray) -> None:
    dest = Path(path)
    ext = dest.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(
            f"{dest}: unsupported output file type {dest.suffix or '(no extension)'!r}; "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as tmp:
        if ext == ".png":
            from PIL import Image

            Image.fromarray(arr).save(tmp, format="PNG")
        else:
            import tifffile

            tifffile.imwrite(tmp, arr)


def _check_2d(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array, got shape {arr.shape}")
    return arr


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write ``mask > 0`` as an 8-bit 0/255 PNG or TIFF (chosen by the extension), atomically."""
    m = _check_2d(mask, "mask")
    if m.dtype.kind == "f" and not np.all(np.isfinite(m)):
        raise ValueError("mask contains non-finite values")
    _atomic_write(path, np.where(m > 0, 255, 0).astype(np.uint8))


def write_mask_values(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write small non-negative integers (a step map, 0 … 255) as an 8-bit PNG or TIFF, atomically."""
    a = _check_2d(values, "map")
    if a.min() < 0 or a.max() > 255:
        raise ValueError("values must lie in 0 … 255")
    _atomic_write(path, a.astype(np.uint8))


def write_float_tiff(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write a 2-D array as a 32-bit float TIFF (a probability map), atomically."""
    import tifffile

    a = _check_2d(arr, "map").astype(np.float32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, suffix=".tif") as tmp:
        tifffile.imwrite(tmp, a)


def write_image_uint16(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a 2-D image as 16-bit grayscale PNG or TIFF, atomically.

    ``img`` must already be in the range [0, 65535]; float values are rounded to the nearest
    integer. Scaling is the caller's job, so that this function never changes intensities silently.
    """
    a = _check_2d(img, "image")
    if a.dtype != np.uint16:
        if a.dtype.kind not in "biuf":
            raise ValueError(f"unsupported image dtype {a.dtype}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("image contains non-finite values")
        if a.min() < 0 or a.max() > 65535:
            raise ValueError(f"image values must lie in [0, 65535], got [{a.min()}, {a.max()}]")
        a = np.rint(a).astype(np.uint16)
    _atomic_write(path, a)
