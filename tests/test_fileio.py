"""Files the tool writes get the mode the umask gives (0o644 under 0o022), not tempfile's private 0600."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from pixeldrl.data.images import write_image_uint16, write_mask
from pixeldrl.data.protocol import Protocol
from pixeldrl.data.store import prepare
from pixeldrl.data.volumes import read_nifti, write_nifti_mask
from pixeldrl.evaluate import write_result
from pixeldrl.fileio import atomic_dir, atomic_write, default_mode
from pixeldrl.checkpoint import load_checkpoint, save_checkpoint
from synth_datasets import make_paired, save_nifti, volume


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_default_mode_follows_the_umask(umask):
    assert (default_mode(), default_mode(directory=True)) == (0o644, 0o755)
    os.umask(0o077)
    assert (default_mode(), default_mode(directory=True)) == (0o600, 0o700)


@pytest.mark.parametrize("umask", [0o022, 0o002], indirect=True, ids=["umask022", "umask002"])
def test_mask_nifti_and_checkpoint_are_readable_by_others(tmp_path, umask):
    want = 0o666 & ~umask  # 0o644 / 0o664
    write_mask(tmp_path / "m.png", np.eye(4))
    write_mask(tmp_path / "m.tif", np.eye(4))
    write_image_uint16(tmp_path / "i.png", np.eye(4) * 1000)
    img, lab = volume(0)
    like = read_nifti(save_nifti(tmp_path / "in.nii.gz", img))
    write_nifti_mask(tmp_path / "pred" / "in.nii.gz", lab > 0, like)
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.zeros(2)}, "config": {}})
    write_result({"n": 0}, tmp_path / "summary.json")
    for name in ("m.png", "m.tif", "i.png", "pred/in.nii.gz", "c.pt", "summary.json"):
        assert mode(tmp_path / name) == want, name
    assert load_checkpoint(tmp_path / "c.pt")["model"]["w"].shape == (2,)
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["in.nii.gz"]  # no temporary left


def test_prepared_store_folder_follows_the_umask(tmp_path, umask):
    store = prepare(make_paired(tmp_path / "raw", n=2), tmp_path / "prep", Protocol(image_size=16), progress=False)
    assert mode(store) == 0o755
    assert {p.name: mode(p) for p in store.iterdir()} == {n: 0o644 for n in ("images.npy", "masks.npy",
                                                                              "manifest.json")}


def test_failed_atomic_writes_leave_nothing(tmp_path, umask):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(tmp_path / "keep.txt") as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "store") as tmp:
            (tmp / "x").write_text("half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["keep.txt"] and (tmp_path / "keep.txt").read_text() == "old"
