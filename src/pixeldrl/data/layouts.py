"""Dataset layouts users arrive with: detect one, list its cases, read a case as a 3-D volume.

    pixeldrl prepare Task02_Heart --out prepared/heart            # format detected: msd
    pixeldrl train --data kaggle_3m --format lgg --preset small

Layouts (``--format``, detected automatically when ``auto``):

``msd``      Medical Segmentation Decathlon: ``dataset.json`` (its ``training`` list names
             ``./imagesTr/CASE.nii.gz`` and ``./labelsTr/CASE.nii.gz``); 4-D images hold the
             channels (Task01_BrainTumour: 4 channels, labels 1-3). Modality from ``modality``.
             nnU-Net v1 task folders (the same ``dataset.json``, images stored as
             ``CASE_0000.nii.gz`` …) are read as this layout too.
``nnunet``   nnU-Net raw (v2): ``dataset.json`` with ``channel_names`` and ``file_ending``,
             ``imagesTr/CASE_0000.nii.gz`` (one file per channel), ``labelsTr/CASE.nii.gz``; 2-D
             cases too (``file_ending: ".png"``, one slice per case). :func:`nnunet_channel` and
             :func:`in_nnunet_folder` tell such channel files apart (``pixeldrl predict`` names
             its output ``CASE.nii.gz``, like the labels).
``lgg``      Kaggle ``lgg-mri-segmentation``: ``PATIENT/PATIENT_N.tif`` (3-channel 256 × 256) with
             ``PATIENT/PATIENT_N_mask.tif``; a patient's slices, ordered by N, form its volume.
             The root may also be the folder that holds ``kaggle_3m/``.
``paired``   ``images/CASE.nii[.gz]`` with ``labels/CASE.nii[.gz]``.
``folder``   the 2-D folder format of :mod:`pixeldrl.data.folder` (``images/`` + ``masks/``).
``prepared`` a slice store written by ``pixeldrl prepare`` (:mod:`pixeldrl.data.store`).

A volume layout's case is one patient (LGG: one patient folder), so a split by patient is a split
by case. :func:`read_case` returns the image as (C, X, Y, Z) ``float32`` and the labels as
(X, Y, Z) ``int64``, with the geometry needed to write a prediction back.

``pixeldrl predict`` takes files and folders rather than a dataset root; the same rules turn them
into cases without labels: :func:`is_volume_input`, :func:`volume_cases` / :func:`image_cases`
(nnU-Net channel files grouped by case, LGG slices by patient), :func:`read_case_image`, and
:func:`prediction_names` / :func:`write_prediction` (a case's prediction takes the case name, so
``CASE_0000.nii.gz`` or ``CASE_0000.png`` gives ``CASE.nii.gz`` / ``CASE.png``, like its labels).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixeldrl.data.images import IMAGE_EXTENSIONS, read_image, read_tiff, write_mask
from pixeldrl.data.volumes import (Volume, check_same_geometry, is_nifti, labels_to_int, nifti_stem, read_label_nifti,
                                   read_nifti, write_nifti_mask)
from pixeldrl.errors import InputError


FORMATS = ("auto", "msd", "nnunet", "lgg", "paired", "folder", "prepared")
VOLUME_FORMATS = ("msd", "nnunet", "lgg", "paired")
MANIFEST = "manifest.json"

__all__ = ["FORMATS", "VOLUME_FORMATS", "LGG_SLICE", "NNUNET_IMAGE_FOLDERS", "Case", "CaseData", "detect_format",
           "list_cases", "read_case", "dataset_modality", "read_lgg_slice", "nnunet_channel", "nnunet_channel_file",
           "in_nnunet_folder", "is_volume_input", "volume_cases", "image_cases", "prediction_names", "read_case_image",
           "write_prediction"]


@dataclass
class Case:
    """One case (patient) of a volume layout: where its files are."""

    name: str
    patient: str
    images: list[Path]
    """NIfTI: one file (3-D, or 4-D with channels) or one per channel (nnU-Net); LGG: the slice files."""
    labels: list[Path]
    """One label file, or (LGG) one mask per slice."""
    kind: str = "nifti"
    """``nifti``, ``png`` (nnU-Net 2-D) or ``lgg``; ``image`` for a 2-D image given to ``predict``."""


@dataclass
class CaseData:
    """A case read into memory."""

    image: np.ndarray
    """(C, X, Y, Z) float32, the stored intensities."""
    label: np.ndarray
    """(X, Y, Z) int64 label values."""
    spacing: tuple[float, float, float]
    """Voxel size (mm); 1 where the files carry none (PNG, TIFF)."""
    geometry: Volume | None = field(default=None, repr=False)
    """The first image file's :class:`Volume` (affine, header) for NIfTI cases."""


def _load_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object")
    return d


def _inside(root: Path, entry, where: str) -> Path:
    """``root / entry`` for a file named in ``dataset.json``; InputError for a name that is not a
    string or that leads outside the dataset folder (an absolute path or ``..``). The check is on
    the name as written, so files that are symlinks into a shared store still work."""
    if not isinstance(entry, str) or not entry.strip():
        raise InputError(f"{root / 'dataset.json'}: {where} should be a relative file name, found {entry!r:.60}")
    path = Path(os.path.normpath(root / entry))
    if Path(entry).is_absolute() or not path.is_relative_to(Path(os.path.normpath(root))):
        raise InputError(f"{root / 'dataset.json'}: {where} {entry!r} lies outside the dataset folder {root}")
    return path


def _channel_count(root: Path, d: dict, key_order=("channel_names", "modality")) -> int:
    """Number of channels dataset.json declares (``channel_names`` / ``modality``: a dict or list)."""
    for key in key_order:
        names = d.get(key)
        if names is None or names == {} or names == []:
            continue
        if not isinstance(names, (dict, list)):
            raise InputError(f"{root / 'dataset.json'}: {key!r} should be a non-empty object of channel names, "
                             f"found {names!r:.60}")
        return len(names)
    return 1


def _lgg_root(root: Path) -> Path:
    return root / "kaggle_3m" if (root / "kaggle_3m").is_dir() else root


def _is_lgg(root: Path) -> bool:
    r = _lgg_root(root)
    return any(d.is_dir() and any(f.name.endswith("_mask.tif") for f in d.iterdir()) for d in r.iterdir())


def detect_format(root: str | os.PathLike, fmt: str = "auto") -> str:
    """The layout of ``root`` (see the module docstring); ``fmt`` other than ``auto`` is checked."""
    root = Path(root)
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if not root.exists():
        raise InputError(f"{root}: data folder not found")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if fmt != "auto":
        return fmt
    if (root / MANIFEST).is_file():
        return "prepared"
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        d = _load_json(root / "dataset.json")
        return "nnunet" if ("channel_names" in d or "file_ending" in d) else "msd"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "paired"
    if (root / "images").is_dir() or any((root / s).is_dir() for s in ("train", "val", "test")):
        return "folder"
    if _is_lgg(root):
        return "lgg"
    raise InputError(f"{root}: no known dataset layout (expected dataset.json + imagesTr/ (MSD, nnU-Net), "
                     f"images/ + labels/ (NIfTI pairs), images/ + masks/ (2-D folder), PATIENT/*_mask.tif "
                     f"(Kaggle LGG), or a prepared store with {MANIFEST})")


def dataset_modality(root: str | os.PathLike, fmt: str) -> str:
    """``ct`` when dataset.json names CT for every channel, else ``mri`` (also for LGG / paired / folder)."""
    root = Path(root)
    if fmt in ("msd", "nnunet") and (root / "dataset.json").is_file():
        d = _load_json(root / "dataset.json")
        names = d.get("modality") or d.get("channel_names") or {}
        if isinstance(names, dict) and names and all(str(v).strip().upper() == "CT" for v in names.values()):
            return "ct"
    return "mri"


# --------------------------------------------------------------------------- nnU-Net file names

_NNUNET_CHANNEL = re.compile(r"^(.+)_(\d{4})$")
NNUNET_IMAGE_FOLDERS = ("imagesTr", "imagesTs")


def nnunet_channel_file(folder: Path, case: str, channel: int, ending: str) -> Path:
    """``folder/CASE_0000<ending>``: nnU-Net's file for one channel of a case."""
    return folder / f"{case}_{channel:04d}{ending}"


def nnunet_channel(path: str | os.PathLike) -> tuple[str, int] | None:
    """``(CASE, channel)`` for a file named like an nnU-Net channel file (``CASE_0000.nii.gz``), else None."""
    m = _NNUNET_CHANNEL.match(nifti_stem(path))
    return (m.group(1), int(m.group(2))) if m else None


def in_nnunet_folder(path: str | os.PathLike) -> bool:
    """True when the file lies in an nnU-Net images folder: ``imagesTr`` / ``imagesTs``, or one
    beside or inside a folder with a ``dataset.json``."""
    # The folder matters, not only the name: CASE_0001.nii.gz elsewhere may be a case of its own.
    folder = Path(path).parent
    return folder.name in NNUNET_IMAGE_FOLDERS or any((d / "dataset.json").is_file() for d in (folder, folder.parent))


# --------------------------------------------------------------------------- listing cases


def _list_msd(root: Path) -> list[Case]:
    d = _load_json(root / "dataset.json")
    training = d.get("training")
    if not isinstance(training, list) or not training:
        raise InputError(f"{root / 'dataset.json'}: no 'training' list of cases")
    cases = []
    for entry in training:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise InputError(f"{root / 'dataset.json'}: a 'training' entry lacks 'image' or 'label': {entry!r:.80}")
        img = _inside(root, entry["image"], "the training entry's image")
        lab = _inside(root, entry["label"], "the training entry's label")
        name = nifti_stem(img)
        images = [img]
        if not img.is_file():
            # nnU-Net v1 ("Task") folders list ./imagesTr/CASE.nii.gz but store CASE_0000.nii.gz, ...
            n_ch = _channel_count(root, d, ("modality",))
            ending = img.name[len(name):]
            v1 = [nnunet_channel_file(img.parent, name, c, ending) for c in range(n_ch)]
            if v1[0].is_file():
                images = v1
        for p in images + [lab]:
            if not p.is_file():
                raise InputError(f"{p}: listed in {root / 'dataset.json'} but missing")
        cases.append(Case(name, name, images, [lab]))
    return sorted(cases, key=lambda c: c.name)


def _list_nnunet(root: Path) -> list[Case]:
    d = _load_json(root / "dataset.json")
    ending = d.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith(".") or "/" in ending or "\\" in ending:
        raise InputError(f"{root / 'dataset.json'}: 'file_ending' should be a file extension such as "
                         f"'.nii.gz', found {ending!r:.60}")
    n_ch = _channel_count(root, d)
    lab_dir = root / "labelsTr"
    if not lab_dir.is_dir():
        raise InputError(f"{root}: no labelsTr/ folder")
    labels = sorted(p for p in lab_dir.iterdir() if p.name.endswith(ending) and not p.name.startswith("."))
    if not labels:
        raise InputError(f"{lab_dir}: no *{ending} label files")
    n_listed = d.get("numTraining")
    if n_listed is not None and (not isinstance(n_listed, int) or isinstance(n_listed, bool)):
        raise InputError(f"{root / 'dataset.json'}: 'numTraining' should be an integer, found {n_listed!r:.60}")
    if isinstance(n_listed, int) and n_listed != len(labels):
        raise InputError(f"{root / 'dataset.json'}: numTraining is {n_listed} but {lab_dir} holds {len(labels)} cases")
    kind = "png" if ending.lower() == ".png" else "nifti"
    cases = []
    for lab in labels:
        name = lab.name[: -len(ending)]
        imgs = [nnunet_channel_file(root / "imagesTr", name, c, ending) for c in range(n_ch)]
        for p in imgs:
            if not p.is_file():
                raise InputError(f"{p}: channel file of case {name!r} (dataset.json lists {n_ch} channels) missing")
        cases.append(Case(name, name, imgs, [lab], kind))
    return cases


def _list_paired(root: Path) -> list[Case]:
    def nifti_files(folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if is_nifti(p) and not p.name.startswith("."):
                if nifti_stem(p) in found:
                    raise InputError(f"{folder}: two volumes named {nifti_stem(p)!r} ({found[nifti_stem(p)].name} "
                                     f"and {p.name})")
                found[nifti_stem(p)] = p
        return found

    images, labels = nifti_files(root / "images"), nifti_files(root / "labels")
    if not images:
        raise InputError(f"{root / 'images'}: no .nii or .nii.gz volumes")
    for name, p in images.items():
        if name not in labels:
            raise InputError(f"{p}: no label volume for this image (expected {root / 'labels' / name}.nii[.gz])")
    for name, p in labels.items():
        if name not in images:
            raise InputError(f"{p}: label volume has no image (expected {root / 'images' / name}.nii[.gz])")
    return [Case(n, n, [images[n]], [labels[n]]) for n in sorted(images)]


LGG_SLICE = re.compile(r"^(.*)_(\d+)\.tif$")


def _list_lgg(root: Path) -> list[Case]:
    base = _lgg_root(root)
    cases = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        slices = []
        for f in d.iterdir():
            m = LGG_SLICE.match(f.name)
            if m and not f.name.endswith("_mask.tif"):
                mask = d / f"{f.name[:-4]}_mask.tif"
                if not mask.is_file():
                    raise InputError(f"{f}: no mask for this slice (expected {mask})")
                slices.append((int(m.group(2)), f, mask))
        for f in d.glob("*_mask.tif"):
            if not (d / (f.name[: -len("_mask.tif")] + ".tif")).is_file():
                raise InputError(f"{f}: mask has no image slice")
        if slices:
            slices.sort()
            cases.append(Case(d.name, d.name, [s[1] for s in slices], [s[2] for s in slices], "lgg"))
    if not cases:
        raise InputError(f"{base}: no patient folders with PATIENT_N.tif / PATIENT_N_mask.tif slices")
    return cases


def list_cases(root: str | os.PathLike, fmt: str) -> list[Case]:
    """The cases of a volume layout, sorted by name."""
    root = Path(root)
    listers = {"msd": _list_msd, "nnunet": _list_nnunet, "paired": _list_paired, "lgg": _list_lgg}
    if fmt not in listers:
        raise InputError(f"{root}: format {fmt!r} is not a volume layout ({', '.join(listers)})")
    if fmt in ("msd", "nnunet") and not (root / "dataset.json").is_file():
        raise InputError(f"{root}: no dataset.json (needed by --format {fmt})")
    if fmt == "paired" and not ((root / "images").is_dir() and (root / "labels").is_dir()):
        raise InputError(f"{root}: expected images/ and labels/ folders (--format paired)")
    return listers[fmt](root)


# --------------------------------------------------------------------------- reading a case


def read_lgg_slice(path: Path, mask: bool = False) -> np.ndarray:
    """One Kaggle LGG slice: image (H, W, C) or mask (H, W), the stored values."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    a = read_tiff(path)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{path}: unsupported pixel type {a.dtype}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise InputError(f"{path}: image contains non-finite pixel values (NaN or inf)")
    if mask:
        if a.ndim == 3 and a.shape[-1] in (3, 4):
            a = a[..., 0]
        if a.ndim != 2:
            raise InputError(f"{path}: expected a 2-D mask, got shape {tuple(a.shape)}")
        return a
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise InputError(f"{path}: expected a 2-D (H, W) or (H, W, C) slice, got shape {tuple(a.shape)}")
    return a


def read_case(case: Case) -> CaseData:
    """Read a case into memory and check it (see the module docstring for the shapes)."""
    if case.kind == "lgg":
        imgs = [read_lgg_slice(p) for p in case.images]
        masks = [read_lgg_slice(p, mask=True) for p in case.labels]
        for p, q, a, b in zip(case.images, case.labels, imgs, masks):
            if a.shape[:2] != b.shape or a.shape != imgs[0].shape:
                raise InputError(f"{p} has shape {a.shape} but its mask {q} has shape {b.shape} "
                                 f"(or the patient's slices differ in shape)")
        image = np.stack(imgs, axis=2).astype(np.float32).transpose(3, 0, 1, 2)  # (C, H, W, N)
        label = (np.stack(masks, axis=2) > 0).astype(np.int64)  # Kaggle masks are 0/255
        return CaseData(np.ascontiguousarray(image), label, (1.0, 1.0, 1.0))
    if case.kind == "png":
        chans = [read_image(p) for p in case.images]
        lab = labels_to_int(read_image(case.labels[0]), case.labels[0])
        for p, c in zip(case.images, chans):
            if c.shape != lab.shape:
                raise InputError(f"{p} has shape {c.shape} but its label {case.labels[0]} has shape {lab.shape}")
        return CaseData(np.stack(chans)[..., None], lab[..., None], (1.0, 1.0, 1.0))
    vols = [read_nifti(p) for p in case.images]
    label = read_label_nifti(case.labels[0])
    chans = []
    for v in vols:
        check_same_geometry(v, label)
        chans += [v.data] if v.data.ndim == 3 else [v.data[..., c] for c in range(v.data.shape[-1])]
    image = np.stack(chans).astype(np.float32)  # (C, X, Y, Z)
    return CaseData(image, label.data, vols[0].spacing, vols[0])


# --------------------------------------------------------------------------- inputs given to predict
#
# ``pixeldrl predict`` takes files and folders, not a dataset root. These functions say which cases
# they form for a run trained on the layout ``fmt`` (its ``source_format``), what a case's
# prediction is called and how it is written. Input cases carry no labels.


def is_volume_input(inputs: list[str | os.PathLike], fmt: str = "") -> bool:
    """True when the inputs are volumes: they name NIfTI files (or folders holding them), or the run
    was trained on LGG (whose ``PATIENT_N.tif`` slices form a patient's volume)."""
    if fmt == "lgg":
        return True
    for item in map(Path, inputs):
        if item.is_file() and is_nifti(item):
            return True
        if item.is_dir() and any(is_nifti(p) for p in item.iterdir()):
            return True
    return False


def _is_lgg_slice(path: Path) -> bool:
    return bool(LGG_SLICE.match(path.name)) and not path.name.endswith("_mask.tif")


def _group_channel_files(files: list[Path], kind: str, fmt: str, n_channels: int | None,
                         selected: bool) -> list[Case]:
    """One case per file, except nnU-Net channel files, grouped by case (see :func:`in_nnunet_folder`).

    nnU-Net keeps one file per channel, ``CASE_0000<ending>`` …, and names the case's labels
    ``CASE<ending>``: the case takes that name whatever the number of channels, so that a prediction
    named after it pairs up with ``labelsTs``. A run trained on nnU-Net reads every such file this way.
    """
    nnunet_run = fmt == "nnunet"
    cases: list[Case] = []
    groups: dict[tuple[Path, str], list[Path]] = {}
    for p in files:
        ch = nnunet_channel(p)
        if ch and (nnunet_run or in_nnunet_folder(p)):
            groups.setdefault((p.parent, ch[0]), []).append(p)
        elif kind == "nifti" and nnunet_run and n_channels is not None and n_channels > 1:
            raise InputError(f"{p}: expected nnU-Net channel files CASE_0000.nii.gz … (the checkpoint "
                             f"takes {n_channels} channels)")
        else:
            cases.append(Case(nifti_stem(p), nifti_stem(p), [p], [], kind))
    for (_, name), group in sorted(groups.items()):
        group = sorted(set(group))
        if n_channels is not None and not selected and len(group) != n_channels:
            raise InputError(f"{group[0]}: case {name!r} has {len(group)} channel file(s), the checkpoint "
                             f"takes {n_channels}")
        cases.append(Case(name, name, group, [], kind))
    return cases


def volume_cases(inputs: list[str | os.PathLike], fmt: str = "", n_channels: int | None = None,
                 selected: bool = False) -> list[Case]:
    """The volumes among ``predict``'s inputs: NIfTI files (nnU-Net channel files grouped by case) and,
    for a run trained on LGG, patient folders (or single slices) of ``PATIENT_N.tif`` files.

    ``n_channels``: the channels the checkpoint takes (None: not checked): a case of grouped channel
    files must have that many, unless ``selected`` (the run kept some of the files' channels,
    ``--channels``); a run trained on nnU-Net with several channels takes only channel files.
    """
    nifti: list[Path] = []
    lgg: dict[Path, list[Path]] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            found = [p for p in sorted(item.iterdir()) if not p.name.startswith(".")]
            vols = [p for p in found if is_nifti(p)]
            tifs = [p for p in found if _is_lgg_slice(p)]
            if vols:
                nifti += vols
            elif tifs and fmt == "lgg":
                lgg.setdefault(item, []).extend(tifs)
            else:
                raise InputError(f"{item}: folder holds no .nii/.nii.gz volumes"
                                 + (" nor LGG slices" if fmt == "lgg" else ""))
        elif item.is_file() and is_nifti(item):
            nifti.append(item)
        elif item.is_file() and fmt == "lgg" and LGG_SLICE.match(item.name):
            lgg.setdefault(item.parent, []).append(item)
        elif not item.exists():
            raise InputError(f"{item}: no such file or folder")
        else:
            raise InputError(f"{item}: not a NIfTI volume (.nii, .nii.gz)")
    cases = _group_channel_files(nifti, "nifti", fmt, n_channels, selected)
    for folder, files in lgg.items():
        files = sorted(set(files), key=lambda p: int(LGG_SLICE.match(p.name).group(2)))
        cases.append(Case(folder.name, folder.name, files, [], "lgg"))
    return cases


def image_cases(inputs: list[str | os.PathLike], fmt: str = "", n_channels: int | None = None,
                selected: bool = False) -> list[Case]:
    """The 2-D images among ``predict``'s inputs (files, and the PNG/TIFF files of folders), each a case
    of kind ``image``; nnU-Net 2-D channel files ``CASE_0000.png`` … are grouped by case like
    volumes (:func:`volume_cases`). Each file is listed once, whatever the number of times named."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{item}: folder holds no {'/'.join(IMAGE_EXTENSIONS)} images")
            files += found
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_EXTENSIONS:
                raise InputError(f"{item}: unsupported file type; expected one of {', '.join(IMAGE_EXTENSIONS)}")
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return _group_channel_files(unique, "image", fmt, n_channels, selected)


def prediction_names(case: Case) -> list[str]:
    """The file names of a case's prediction: the case name with its files' ending (a single file's
    own name; nnU-Net channel files ``CASE_0000.nii.gz`` -> ``CASE.nii.gz``, like its labels), or for
    an LGG patient one per slice, with the slice's name."""
    if case.kind == "lgg":
        return [p.name for p in case.images]
    first = case.images[0]
    return [case.name + first.name[len(nifti_stem(first)):]]


def read_case_image(case: Case) -> tuple[np.ndarray, Volume | None]:
    """A case's image without labels -> ((C, X, Y, Z) float32 stored intensities, the first NIfTI
    file's :class:`Volume` or None). A 2-D image is (C, H, W, 1); an LGG patient (C, H, W, N)."""
    if case.kind == "lgg":
        imgs = [read_lgg_slice(p) for p in case.images]
        for p, a in zip(case.images, imgs):
            if a.shape != imgs[0].shape:
                raise InputError(f"{p}: shape {a.shape} differs from the patient's first slice {imgs[0].shape}")
        return np.stack(imgs, axis=2).astype(np.float32).transpose(3, 0, 1, 2), None
    if case.kind in ("image", "png"):
        chans = [read_image(p) for p in case.images]
        for p, c in zip(case.images, chans):
            if c.shape != chans[0].shape:
                raise InputError(f"{p}: shape {c.shape} differs from {case.images[0]} {chans[0].shape}")
        return np.stack(chans).astype(np.float32)[..., None], None
    vols = [read_nifti(p) for p in case.images]
    chans = []
    for v in vols:
        if v.data.shape[:3] != vols[0].data.shape[:3]:
            raise InputError(f"{v.path}: shape {v.data.shape[:3]} differs from {vols[0].path} {vols[0].data.shape[:3]}")
        chans += [v.data] if v.data.ndim == 3 else [v.data[..., c] for c in range(v.data.shape[-1])]
    return np.stack(chans).astype(np.float32), vols[0]


def write_prediction(case: Case, mask: np.ndarray, out_dir: str | os.PathLike,
                     like: Volume | None = None) -> list[Path]:
    """Write a case's (X, Y, Z) mask into ``out_dir`` under :func:`prediction_names`, atomically:
    NIfTI cases as ``uint8`` 0/1 with ``like``'s affine and header, 2-D cases (Z = 1) and LGG slices
    as 8-bit 0/255 images."""
    out_dir = Path(out_dir)
    names = prediction_names(case)
    if case.kind == "nifti":
        return [write_nifti_mask(out_dir / names[0], mask, like)]
    for k, name in enumerate(names):
        write_mask(out_dir / name, mask[:, :, k])
    return [out_dir / n for n in names]
