"""A small real-MRI demo data set cut from the MNI152 2009 template shipped inside nilearn.

The nilearn wheel carries the ICBM 2009a nonlinear symmetric template (1 mm, 197 x 233 x 189,
RAS orientation) as a T1 volume and a white-matter (WM) probability map
(``nilearn/datasets/data/mni_icbm152_{t1,wm}_tal_nlin_sym_09a_converted.nii.gz``). They are read
from the installed package, so no network access is needed. The task is "segment the white
matter on an axial T1 slice": real anatomy and real contrast, but a single (averaged) brain, so it
is a smoke test and a demo, not a benchmark.

What :func:`make_demo_dataset` does:

1. Loads both volumes with nibabel. The WM map is stored as 0..255, so probability = value / 255
   (a map already in [0, 1] is used as is); the label is probability >= 0.5.
2. Cuts axial slices (last axis, index ``z``) and drops slices without white matter.
3. Rotates every slice with ``np.rot90`` so that anterior is up (display convention; the
   patient's left is then on the image left).
4. Pads to a centred square and resizes to ``size x size`` (:func:`pixeldrl.data.folder.to_network`):
   the T1 slice with order 1; the WM *probability* with order 1, thresholded at 0.5 afterwards,
   which gives smoother labels than resizing the binary label with nearest neighbour. Slices whose
   label is empty after resizing are dropped too.
5. Splits the kept slices (in z order) into contiguous blocks of ``block`` slices and assigns
   block ``b`` to ``PATTERN[(b + seed) % 10]`` with the repeating pattern
   ``train train test train val train train test train train`` (7 / 1 / 2 of every 10 blocks,
   i.e. about 70 / 10 / 20 %), so each split samples the whole brain from bottom to top while
   neighbouring (nearly identical) slices mostly stay in the same split. ``seed`` only shifts the
   pattern's phase. Slices at a block boundary still neighbour slices of another split: fine for a
   demo, one more reason not to read its numbers as a benchmark.
6. Writes the folder format of :mod:`pixeldrl.data.folder`:
   ``out_dir/{train,val,test}/{images,masks}/mni_zNNN.png`` (``NNN`` = axial index), images as
   16-bit PNG (T1 intensity / volume maximum * 65535, the same scale for every slice), masks as
   8-bit 0/255 PNG; then, last, a ``demo_dataset.json`` manifest.

A second call with the same parameters finds the manifest and every file it lists, and does
nothing. Otherwise earlier demo files (``mni_z*.png``) are removed before writing; a split folder
that holds any other image file is refused rather than mixed with the demo.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np

from pixeldrl.data.splits import SPLITS
from pixeldrl.data.transforms import to_network
from pixeldrl.errors import InputError
from pixeldrl.fileio import atomic_write
from pixeldrl.data.images import IMAGE_EXTENSIONS, write_image_uint16, write_mask

T1_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
WM_FILE = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
MANIFEST = "demo_dataset.json"
FORMAT_VERSION = 1
PATTERN = ("train", "train", "test", "train", "val", "train", "train", "test", "train", "train")
_NAME_RE = re.compile(r"^mni_z\d{3}\.png$")

__all__ = ["T1_FILE", "WM_FILE", "MANIFEST", "PATTERN", "template_paths", "block_split", "make_demo_dataset"]


def template_paths() -> tuple[Path, Path]:
    """Paths of the T1 and WM-probability volumes inside the installed nilearn package."""
    spec = importlib.util.find_spec("nilearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "nilearn is not installed; the demo data set is cut from the MNI152 template it ships "
            "(pip install nilearn)"
        )
    data_dir = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    paths = (data_dir / T1_FILE, data_dir / WM_FILE)
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: MNI152 template file not found in the installed nilearn package")
    return paths


def block_split(n: int, block: int, seed: int = 0) -> list[str]:
    """Split label for each of ``n`` ordered slices: contiguous blocks, repeating :data:`PATTERN`."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    return [PATTERN[(i // block + seed) % len(PATTERN)] for i in range(n)]


def _params(size: int, block: int, seed: int) -> dict:
    return {"format": FORMAT_VERSION, "size": size, "block": block, "seed": seed,
            "source": [T1_FILE, WM_FILE]}


def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(out: Path, params: dict) -> dict | None:
    """The manifest's counts when ``out`` holds a complete demo data set with these parameters."""
    man = _read_manifest(out)
    if not isinstance(man, dict) or man.get("params") != params:
        return None
    files = man.get("files")
    if not isinstance(files, dict) or set(files) != set(SPLITS):
        return None
    for split, names in files.items():
        for name in names:
            for sub in ("images", "masks"):
                if not (out / split / sub / name).is_file():
                    return None
    return {s: len(files[s]) for s in SPLITS}


def _old_demo_files(out: Path) -> list[Path]:
    """Earlier demo files in ``out``; refuse a folder that holds any other image files."""
    if (out / "images").exists() or (out / "masks").exists():
        raise InputError(f"{out}: already holds images/ or masks/; choose an empty or demo-only folder")
    found = []
    for split in SPLITS:
        for sub in ("images", "masks"):
            folder = out / split / sub
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                    if not _NAME_RE.match(f.name):
                        raise InputError(
                            f"{f}: not a demo file; make_demo_dataset needs an empty or demo-only folder"
                        )
                    found.append(f)
    return found


def _load_volumes() -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    t1_path, wm_path = template_paths()
    try:
        t1 = np.asarray(nib.load(t1_path).get_fdata(dtype=np.float32))
        wm = np.asarray(nib.load(wm_path).get_fdata(dtype=np.float32))
    except Exception as exc:  # pragma: no cover - a broken nilearn install
        raise InputError(f"cannot read the MNI152 template from nilearn: {exc}") from None
    if t1.shape != wm.shape or t1.ndim != 3:
        raise InputError(f"MNI152 template volumes disagree: T1 {t1.shape}, WM {wm.shape}")
    prob = wm / 255.0 if wm.max() > 1.0 else wm  # stored 0..255
    return t1, prob.astype(np.float32)


def make_demo_dataset(out_dir: str | os.PathLike, size: int = 128, block: int = 8, seed: int = 0) -> dict:
    """Write the MNI152 white-matter demo data set to ``out_dir``; return ``{split: n_slices}``.

    Does nothing (and returns the same counts) when ``out_dir`` already holds a complete demo data
    set written with the same parameters. See the module docstring for every step.
    """
    if size < 8:
        raise InputError(f"demo image size must be >= 8, got {size}")
    if block < 1:
        raise InputError(f"demo block must be >= 1, got {block}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    params = _params(size, block, seed)
    done = _is_complete(out, params)
    if done is not None:
        return done

    old_files = _old_demo_files(out)  # checked before the (slower) work
    t1, prob = _load_volumes()
    vmax = float(t1.max())
    if not vmax > 0:  # pragma: no cover - a broken template
        raise InputError("the MNI152 T1 template is all zeros")

    slices: list[tuple[int, np.ndarray, np.ndarray]] = []
    for z in range(t1.shape[2]):
        p = prob[:, :, z]
        if not (p >= 0.5).any():
            continue
        img = to_network(np.rot90(t1[:, :, z]), size, order=1)
        label = to_network(np.rot90(p), size, order=1) >= 0.5
        if not label.any():
            continue
        img16 = np.clip(img / vmax, 0.0, 1.0) * 65535.0
        slices.append((z, img16, label))

    labels = block_split(len(slices), block, seed)
    if "train" not in labels:
        raise InputError(f"demo block={block} is too large: no slice lands in the train split")

    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until the manifest is written again
    for f in old_files:
        f.unlink(missing_ok=True)
    files: dict[str, list[str]] = {s: [] for s in SPLITS}
    for (z, img16, label), split in zip(slices, labels):
        name = f"mni_z{z:03d}.png"
        write_image_uint16(out / split / "images" / name, img16)
        write_mask(out / split / "masks" / name, label)
        files[split].append(name)
    for split in SPLITS:  # an empty split has no folder (pixeldrl.data.folder: a missing val/ or test/ is empty)
        if not files[split]:
            for folder in (out / split / "images", out / split / "masks", out / split):
                try:
                    folder.rmdir()
                except OSError:  # missing, or holds other files
                    pass

    manifest = {"params": params, "files": files, "counts": {s: len(files[s]) for s in SPLITS}}
    with atomic_write(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return dict(manifest["counts"])
