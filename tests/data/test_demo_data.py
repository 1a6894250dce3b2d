import json

import numpy as np
import pytest

import pixeldrl.data.demo as demo
from pixeldrl.data.folder import find_pairs, load_splits
from pixeldrl.errors import InputError
from pixeldrl.data.images import read_image, read_mask
from pixeldrl.data.demo import MANIFEST, PATTERN, block_split, make_demo_dataset, template_paths

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    counts = make_demo_dataset(out)  # defaults: size 128, block 8, seed 0
    return out, counts


def _names(out, split, sub="images"):
    folder = out / split / sub
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_template_paths_exist():
    t1, wm = template_paths()
    assert t1.name == demo.T1_FILE and wm.name == demo.WM_FILE
    assert t1.stat().st_size > 100_000 and wm.stat().st_size > 100_000


def test_missing_nilearn_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="nilearn is not installed"):
        make_demo_dataset(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_block_split_pattern():
    labels = block_split(25, 2)
    assert labels[:6] == ["train", "train", "train", "train", "test", "test"]
    assert labels[8:10] == ["val", "val"]
    assert block_split(3, 1, seed=2) == [PATTERN[2], PATTERN[3], PATTERN[4]]
    assert PATTERN.count("train") == 7 and PATTERN.count("val") == 1 and PATTERN.count("test") == 2


def test_counts_add_up_and_splits_disjoint(demo_dir):
    out, counts = demo_dir
    # the MNI152 2009a template: 149 axial slices hold WM (prob >= 0.5), 141 keep a label at 128 px
    assert counts == {"train": 96, "val": 16, "test": 29}
    seen = {}
    for s in SPLITS:
        imgs, masks = _names(out, s), _names(out, s, "masks")
        assert imgs == masks and len(imgs) == counts[s]
        for n in imgs:
            assert n not in seen, f"{n} in {seen.get(n)} and {s}"
            seen[n] = s
    assert len(seen) == sum(counts.values()) == 141
    # contiguous blocks of 8 slices in z order, following PATTERN: every split spans the brain
    order = sorted(seen)
    assert [seen[n] for n in order] == block_split(len(order), 8)
    for s in SPLITS:
        zs = [int(n[5:8]) for n in order if seen[n] == s]
        assert min(zs) < 60 and max(zs) > 100
    man = json.loads((out / MANIFEST).read_text())
    assert man["counts"] == counts and man["params"]["size"] == 128


def test_images_and_masks(demo_dir):
    out, _ = demo_dir
    for s in SPLITS:
        for n in _names(out, s)[::5]:
            img = read_image(out / s / "images" / n)
            m = read_mask(out / s / "masks" / n)
            assert img.shape == m.shape == (128, 128)
            assert img.max() > img.min() and img.min() == 0.0 and img.max() <= 65535
            assert m.any() and not m.all()
            raw = np.unique(read_image(out / s / "masks" / n))
            assert set(raw.tolist()) <= {0.0, 255.0}
    # a mid-brain slice: WM is brighter than the rest of the brain on T1, anterior is up
    img = read_image(out / "train" / "images" / "mni_z080.png")
    m = read_mask(out / "train" / "masks" / "mni_z080.png")
    brain = (img > 0.2 * img.max()) & ~m
    assert img[m].mean() > img[brain].mean()
    assert 0.05 < m.mean() < 0.3
    assert img.max() > 30000  # 16-bit scale used
    # anterior up: the brain (sagittal extent ~ 172 mm) is longer from top to bottom than wide
    rows, cols = np.nonzero(img > 0.1 * img.max())
    assert np.ptp(rows) > np.ptp(cols)


def test_loadable_with_data_module(demo_dir):
    out, counts = demo_dir
    pairs = find_pairs(out)
    assert {s: len(pairs[s]) for s in SPLITS} == counts
    ds = load_splits(out, 64)["val"]
    assert ds.images.shape == (16, 1, 64, 64) and ds.masks.sum() > 0


def test_second_call_is_a_noop(demo_dir):
    out, counts = demo_dir
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert make_demo_dataset(out) == counts
    after = sorted(p for p in out.rglob("*") if p.is_file())
    assert after == files
    assert {p: p.stat().st_mtime_ns for p in after} == before


def test_rewrites_on_new_parameters_and_incomplete_data(tmp_path):
    out = tmp_path / "d"
    c1 = make_demo_dataset(out, size=32, block=20, seed=0)
    assert sum(c1.values()) > 100 and all(c1.values())
    names1 = {s: _names(out, s) for s in SPLITS}
    c2 = make_demo_dataset(out, size=32, block=20, seed=4)  # shifted pattern
    assert sum(c2.values()) == sum(c1.values())
    all2 = [n for s in SPLITS for n in _names(out, s)]
    assert len(all2) == len(set(all2)) == sum(c2.values())  # old files removed, none duplicated
    assert {s: _names(out, s) for s in SPLITS} != names1
    # a missing file makes the data set incomplete: it is written again
    victim = out / "train" / "masks" / _names(out, "train", "masks")[0]
    victim.unlink()
    assert make_demo_dataset(out, size=32, block=20, seed=4) == c2
    assert victim.is_file()


def test_refuses_foreign_files(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "images" / "mine.png").write_bytes(b"x")
    with pytest.raises(InputError, match=r"mine\.png: not a demo file"):
        make_demo_dataset(tmp_path, size=16)
    assert (tmp_path / "train" / "images" / "mine.png").read_bytes() == b"x"
