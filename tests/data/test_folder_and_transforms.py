import numpy as np
import pytest
import torch

from pixeldrl.data.folder import Pair, SliceDataset, find_pairs, load_splits
from pixeldrl.data.splits import split_sizes
from pixeldrl.data.transforms import augment_batch, from_network, normalize_intensity, random_zoom_out, to_network
from pixeldrl.errors import InputError
from pixeldrl.data.images import read_image, write_image_uint16, write_mask


def _make(folder, names, shape=(6, 8), img_ext=".png", mask_ext=".png", seed=0):
    """Write images/NAME and masks/NAME; image = ramp + index, mask = a box."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, n in enumerate(names):
        img = rng.integers(0, 60000, size=shape).astype(np.uint16)
        write_image_uint16(folder / "images" / f"{n}{img_ext}", img)
        m = np.zeros(shape, dtype=bool)
        m[1 : 1 + 1 + k % 3, 2:5] = True
        write_mask(folder / "masks" / f"{n}{mask_ext}", m)


# --------------------------------------------------------------------------- find_pairs


@pytest.mark.parametrize("n,expected", [(1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)),
                                        (5, (3, 1, 1)), (10, (7, 1, 2)), (20, (14, 2, 4)),
                                        (101, (71, 10, 20))])
def test_split_sizes(n, expected):
    assert split_sizes(n) == expected
    assert sum(split_sizes(n)) == n


def test_find_pairs_10_images_split(tmp_path):
    names = [f"img{i:02d}" for i in range(10)]
    _make(tmp_path, names)
    s = find_pairs(tmp_path, seed=0)
    assert set(s) == {"train", "val", "test"}
    assert [len(s[k]) for k in ("train", "val", "test")] == [7, 1, 2]
    got = [p.name for k in s for p in s[k]]
    assert sorted(got) == names  # every image exactly once
    assert len(set(got)) == 10
    for k in s:
        assert [p.name for p in s[k]] == sorted(p.name for p in s[k])
        for p in s[k]:
            assert isinstance(p, Pair)
            assert p.image_path == tmp_path / "images" / f"{p.name}.png"
            assert p.mask_path == tmp_path / "masks" / f"{p.name}.png"
    # deterministic for a seed, different for another seed
    assert find_pairs(tmp_path, seed=0) == s
    others = [find_pairs(tmp_path, seed=k)["test"] for k in range(1, 6)]
    assert any(o != s["test"] for o in others)
    with pytest.raises(AttributeError):  # frozen
        s["train"][0].name = "x"


def test_find_pairs_3_images(tmp_path):
    _make(tmp_path, ["a", "b", "c"])
    s = find_pairs(tmp_path, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    assert sorted(p.name for k in s for p in s[k]) == ["a", "b", "c"]


def test_find_pairs_pairs_across_extensions(tmp_path):
    _make(tmp_path, ["a"], img_ext=".png", mask_ext=".tif")
    _make(tmp_path, ["b"], img_ext=".tiff", mask_ext=".png")
    _make(tmp_path, ["c"], img_ext=".TIF", mask_ext=".tiff")
    s = find_pairs(tmp_path)
    pairs = {p.name: p for k in s for p in s[k]}
    assert pairs["a"].image_path.name == "a.png" and pairs["a"].mask_path.name == "a.tif"
    assert pairs["b"].image_path.name == "b.tiff" and pairs["b"].mask_path.name == "b.png"
    assert pairs["c"].image_path.name == "c.TIF"


def test_find_pairs_ignores_hidden_files(tmp_path):
    _make(tmp_path, ["a", "b", "c"])
    (tmp_path / "images" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "masks" / "sub").mkdir()
    assert sum(len(v) for v in find_pairs(tmp_path).values()) == 3


def test_find_pairs_split_folders(tmp_path):
    _make(tmp_path / "train", ["t1", "t2"])
    _make(tmp_path / "test", ["x1"])
    s = find_pairs(tmp_path, seed=123)
    assert [p.name for p in s["train"]] == ["t1", "t2"]
    assert s["val"] == []
    assert [p.name for p in s["test"]] == ["x1"]
    assert s["test"][0].image_path == tmp_path / "test" / "images" / "x1.png"


def test_find_pairs_errors(tmp_path):
    with pytest.raises(InputError, match=r"nothere: data folder not found"):
        find_pairs(tmp_path / "nothere")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match=r"f\.txt: not a folder"):
        find_pairs(tmp_path / "f.txt")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match=r"d: no images/ subfolder"):
        find_pairs(tmp_path / "d")
    (tmp_path / "d" / "images").mkdir()
    with pytest.raises(InputError, match=r"d: no masks/ subfolder"):
        find_pairs(tmp_path / "d")
    (tmp_path / "d" / "masks").mkdir()
    with pytest.raises(InputError, match=r"images: no images"):
        find_pairs(tmp_path / "d")


def test_find_pairs_image_without_mask(tmp_path):
    _make(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(InputError, match=r"images/b\.png: no mask for this image \(expected .*masks/b\."):
        find_pairs(tmp_path)


def test_find_pairs_mask_without_image(tmp_path):
    _make(tmp_path, ["a", "b"])
    write_mask(tmp_path / "masks" / "zz.tif", np.ones((2, 2)))
    with pytest.raises(InputError, match=r"masks/zz\.tif: mask has no image"):
        find_pairs(tmp_path)


def test_find_pairs_duplicate_stems(tmp_path):
    _make(tmp_path, ["a"])
    _make(tmp_path, ["a"], img_ext=".tif", mask_ext=".png")
    with pytest.raises(InputError, match=r"duplicate name 'a' with different extensions \(a\.png and a\.tif\)"):
        find_pairs(tmp_path)


def test_find_pairs_unsupported_file(tmp_path):
    _make(tmp_path, ["a"])
    (tmp_path / "images" / "b.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match=r"b\.jpg: unsupported file type"):
        find_pairs(tmp_path)


def test_find_pairs_layout_errors(tmp_path):
    _make(tmp_path / "one", ["a"])
    _make(tmp_path / "one" / "train", ["b"])
    with pytest.raises(InputError, match="both images/ and split folders"):
        find_pairs(tmp_path / "one")
    _make(tmp_path / "two" / "val", ["a"])
    with pytest.raises(InputError, match="no train/ folder"):
        find_pairs(tmp_path / "two")
    _make(tmp_path / "three" / "train", ["a"])
    (tmp_path / "three" / "test").mkdir()
    with pytest.raises(InputError, match=r"test: no images/ subfolder"):
        find_pairs(tmp_path / "three")


# --------------------------------------------------------------------------- normalisation


def test_normalize_intensity_range_and_percentiles():
    a = np.arange(1000, dtype=np.float32).reshape(25, 40)
    a[0, 0] = -1e6  # outliers beyond the 0.5 / 99.5 percentiles
    a[-1, -1] = 1e6
    out = normalize_intensity(a)
    assert out.dtype == np.float32 and out.shape == a.shape
    assert out.min() == 0.0 and out.max() == 1.0
    lo, hi = np.percentile(a, [0.5, 99.5])
    assert 4 < lo < 6 and 993 < hi < 995
    # a pixel in the middle maps linearly, unaffected by the outliers
    assert out[12, 20] == pytest.approx((a[12, 20] - lo) / (hi - lo), abs=1e-6)
    # everything at or below the low percentile reads as 0 (darkest), at or above the high one as 1
    assert (out[a <= lo] == 0).all() and (out[a >= hi] == 1).all()
    # low=0, high=100 is plain min-max
    mm = normalize_intensity(np.array([[2.0, 4.0], [6.0, 10.0]]), 0, 100)
    np.testing.assert_allclose(mm, [[0, 0.25], [0.5, 1.0]])


def test_normalize_intensity_ignores_a_flat_background_floor():
    # A skull-stripped slice that is 97 % background: tissue 100..200 on a floor of 0. Over all pixels
    # the 99.5th percentile would fall inside the tissue and clip its brightest class; over the
    # tissue it sits near its top, as on a slice where the brain fills the image.
    rng = np.random.default_rng(0)
    a = np.zeros((100, 100), dtype=np.float32)
    tissue = rng.uniform(100, 200, 300).astype(np.float32)
    a.flat[rng.choice(a.size, 300, replace=False)] = tissue
    out = normalize_intensity(a)
    lo, hi = np.percentile(tissue, [0.5, 99.5])
    assert hi > np.percentile(a, 99.5)  # the all-pixel percentile is lower: it would clip more tissue
    on = a > 0
    np.testing.assert_allclose(out[on], np.clip((a[on] - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert (out[~on] == 0).all()  # the floor reads as removed / darkest
    assert (out[on] == 1).sum() <= 2  # only the top 0.5 % of the tissue saturates
    # A few dark pixels are no floor: an image with 2 % of them keeps the all-pixel percentiles.
    b = np.arange(1000, dtype=np.float32).reshape(25, 40)
    b.flat[:20] = 0
    lo, hi = np.percentile(b, [0.5, 99.5])
    np.testing.assert_allclose(normalize_intensity(b), np.clip((b - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_normalize_intensity_constant_and_sparse():
    np.testing.assert_array_equal(normalize_intensity(np.full((4, 4), 7.0)), np.zeros((4, 4)))
    # fewer than 0.5 % bright pixels: percentiles coincide, falls back to min-max
    a = np.zeros((100, 100), dtype=np.float32)
    a[0, :3] = 50
    out = normalize_intensity(a)
    assert out.max() == 1.0 and out.sum() == 3.0
    with pytest.raises(ValueError):
        normalize_intensity(a, 60, 40)


# --------------------------------------------------------------------------- network mapping


@pytest.mark.parametrize("shape", [(6, 10), (11, 4), (7, 7)])
@pytest.mark.parametrize("size", [8, 16, 5])
def test_to_from_network_shapes(shape, size):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    net = to_network(img, size, order=1)
    assert net.shape == (size, size) and net.dtype == np.float32
    back = from_network(net, shape, order=1)
    assert back.shape == shape and back.dtype == np.float32
    m = img > 0.5
    mnet = to_network(m, size, order=0)
    assert mnet.dtype == bool and mnet.shape == (size, size)
    assert from_network(mnet, shape, order=0).shape == shape


def test_to_network_pads_centred_with_zeros():
    img = np.ones((2, 6), dtype=np.float32)
    net = to_network(img, 6, order=1)  # same size as the padded square: no resize
    expected = np.zeros((6, 6))
    expected[2:4] = 1
    np.testing.assert_array_equal(net, expected)
    net = to_network(np.ones((6, 3), dtype=np.float32), 6, order=0)
    assert (net[:, 1:4] == 1).all() and net[:, [0, 4, 5]].sum() == 0


@pytest.mark.parametrize("shape", [(9, 14), (14, 9), (10, 10)])
def test_mask_round_trip_exact_at_same_size(shape):
    m = np.random.default_rng(1).random(shape) > 0.6
    size = max(shape)
    np.testing.assert_array_equal(from_network(to_network(m, size, 0), shape, 0), m)
    f = m.astype(np.float32)
    np.testing.assert_array_equal(from_network(to_network(f, size, 0), shape, 0), f)


def test_mask_round_trip_upsampled_by_integer_factor():
    m = np.zeros((10, 16), dtype=bool)
    m[2:7, 3:12] = True
    back = from_network(to_network(m, 64, 0), m.shape, 0)
    np.testing.assert_array_equal(back, m)


def test_image_round_trip_close_when_upsampled():
    y, x = np.mgrid[0:20, 0:30]
    img = (x + y).astype(np.float32) / 50
    back = from_network(to_network(img, 60, 1), img.shape, 1)
    assert np.abs(back - img)[2:-2, 2:-2].max() < 0.02


# --------------------------------------------------------------------------- datasets


def test_slice_dataset_from_pairs(tmp_path):
    _make(tmp_path, ["a", "b", "c"], shape=(6, 8))
    pairs = [p for k in ("train", "val", "test") for p in find_pairs(tmp_path)[k]]
    ds = SliceDataset.from_pairs(pairs, 16)
    assert len(ds) == 3
    assert ds.images.shape == (3, 1, 16, 16) and ds.images.dtype == torch.float32
    assert ds.masks.shape == (3, 16, 16) and ds.masks.dtype == torch.float32
    assert set(torch.unique(ds.masks).tolist()) == {0.0, 1.0}
    assert ds.images.min().item() == 0.0 and 0.5 < ds.images.max().item() <= 1.0
    same = SliceDataset.from_pairs(pairs, 8)  # padded square is 8 x 8: no resize, values exact
    assert same.images.max().item() == 1.0
    assert torch.equal(same.images[:, 0, 1:7], torch.from_numpy(np.stack(
        [normalize_intensity(read_image(p.image_path)) for p in pairs])))
    assert ds.names == [p.name for p in pairs]
    assert ds.original_shapes == [(6, 8)] * 3
    # padding rows (8 - 6 = 2 rows: 1 on top, 1 below -> 2 network rows each) are zero
    # (the second network row is bilinearly blended with the first image row)
    assert ds.images[:, 0, 0].abs().max().item() == 0.0
    assert ds.images[:, 0, -1].abs().max().item() == 0.0
    assert ds.images[:, 0, 1].abs().max().item() > 0.0
    assert same.images[:, 0, [0, 7]].abs().max().item() == 0.0
    assert ds.masks[:, :2].sum().item() == 0.0 and ds.masks[:, -2:].sum().item() == 0.0
    img, mask = ds[1]
    assert img.shape == (1, 16, 16) and mask.shape == (16, 16)
    # mask maps back exactly (integer scale factor 2)
    k = ds.names.index("a")
    back = from_network(ds.masks[k].numpy() > 0.5, (6, 8), 0)
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:2, 2:5] = True
    np.testing.assert_array_equal(back, expected)


def test_slice_dataset_shape_mismatch(tmp_path):
    _make(tmp_path, ["a"], shape=(6, 8))
    write_mask(tmp_path / "masks" / "a.png", np.ones((5, 8)))
    pair = Pair("a", tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    with pytest.raises(InputError, match=r"images/a\.png has shape \(6, 8\) but its mask .*masks/a\.png has shape \(5, 8\)"):
        SliceDataset.from_pairs([pair], 8)


def test_slice_dataset_empty():
    ds = SliceDataset.from_pairs([], 8)
    assert len(ds) == 0 and ds.images.shape == (0, 1, 8, 8) and ds.masks.shape == (0, 8, 8)


def test_load_splits(tmp_path):
    _make(tmp_path, [f"s{i}" for i in range(10)], shape=(12, 9))
    d = load_splits(tmp_path, 12, seed=0)
    assert {k: len(v) for k, v in d.items()} == {"train": 7, "val": 1, "test": 2}
    assert d["train"].images.shape == (7, 1, 12, 12)
    assert d["test"].masks.shape == (2, 12, 12)
    names = d["train"].names + d["val"].names + d["test"].names
    assert sorted(names) == [f"s{i}" for i in range(10)]


def _square_batch(n=64, size=64):
    """n slices with a 32×32 bright square (image 1, mask 1) in the centre."""
    images, masks = torch.zeros(n, 1, size, size), torch.zeros(n, size, size)
    images[:, :, 16:48, 16:48] = 1
    masks[:, 16:48, 16:48] = 1
    return images, masks


def test_zoom_out_shrinks_about_the_centre_and_keeps_image_and_mask_aligned():
    images, masks = _square_batch()
    out_i, out_m = random_zoom_out(images.clone(), masks.clone(), torch.Generator().manual_seed(0), 0.5)
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(out_i, images)])
    assert 16 < kept.sum() < 48  # about half the slices pass untouched ...
    assert torch.equal(out_m[kept], masks[kept])
    area = out_m.sum((1, 2))
    shrunk = ~kept  # ... the others shrink by a factor in [0.5, 1]: area 256 to 1024 pixels
    assert (area[shrunk] <= 32 * 32).all() and (area[shrunk] >= 0.9 * 16 * 16).all()
    assert area[shrunk].float().mean() < 0.75 * 32 * 32
    for m, im in zip(out_m[shrunk], out_i[shrunk, 0]):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert abs(ys.float().mean() - 31.5) < 0.6 and abs(xs.float().mean() - 31.5) < 0.6  # centred
        assert ((im > 0.5) == (m > 0)).float().mean() > 0.995  # the mask follows the image
    assert out_m.dtype == masks.dtype and out_i.shape == images.shape


def test_zoom_out_is_reproducible_and_off_draws_nothing():
    images, masks = _square_batch(8)
    a = random_zoom_out(images.clone(), masks.clone(), torch.Generator().manual_seed(3), 0.4)
    b = random_zoom_out(images.clone(), masks.clone(), torch.Generator().manual_seed(3), 0.4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    out = augment_batch(images.clone(), masks.clone(), gen, flip=False, zoom_out=0.0)
    assert torch.equal(gen.get_state(), state)  # a run without augmentation replays exactly
    assert torch.equal(out[0], images) and torch.equal(out[1], masks)
