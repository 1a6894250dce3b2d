import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from pixeldrl.errors import InputError
from pixeldrl.data.images import (
    IMAGE_EXTENSIONS,
    is_image_file,
    read_image,
    read_mask,
    write_image_uint16,
    write_mask,
)


def test_extensions():
    assert IMAGE_EXTENSIONS == (".png", ".tif", ".tiff")
    assert is_image_file("a/B.PNG") and is_image_file("x.tiff") and not is_image_file("x.jpg")


def test_png_8bit_round_trip(tmp_path):
    a = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    out = read_image(p)
    assert out.dtype == np.float32 and out.shape == (4, 5)
    np.testing.assert_array_equal(out, a.astype(np.float32))
    assert out[3, 4] == 228.0


def test_png_16bit_round_trip(tmp_path):
    a = (np.arange(12).reshape(3, 4) * 5000 + 7).astype(np.uint16)
    p = tmp_path / "b.png"
    write_image_uint16(p, a)
    assert Image.open(p).mode == "I;16"
    out = read_image(p)
    np.testing.assert_array_equal(out, a.astype(np.float32))
    assert out.max() == 55007.0


def test_write_image_uint16_float_rounds_and_checks_range(tmp_path):
    p = tmp_path / "f.tif"
    write_image_uint16(p, np.array([[0.4, 1.6], [65535.0, 10.5]]))
    np.testing.assert_array_equal(read_image(p), [[0, 2], [65535, 10]])
    with pytest.raises(ValueError):
        write_image_uint16(tmp_path / "g.png", np.array([[-1.0, 2.0]]))
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int16])
def test_tiff_round_trip(tmp_path, dtype):
    a = (np.arange(30).reshape(5, 6) * 3 - (10 if dtype == np.int16 else 0)).astype(dtype)
    p = tmp_path / "c.tiff"
    tifffile.imwrite(p, a)
    out = read_image(p)
    assert out.dtype == np.float32 and out.shape == (5, 6)
    np.testing.assert_array_equal(out, a.astype(np.float32))


def test_tiff_leading_singleton_axis(tmp_path):
    a = np.arange(6, dtype=np.uint16).reshape(1, 2, 3)
    tifffile.imwrite(tmp_path / "s.tif", a)
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif"), a[0])


def test_equal_channel_rgb_and_rgba_png_is_grayscale(tmp_path):
    g = np.array([[0, 50], [100, 255]], dtype=np.uint8)
    Image.fromarray(np.stack([g, g, g], -1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([g, g, g, np.full_like(g, 9)], -1)).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), g)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), g)


def test_colour_png_rejected(tmp_path):
    rgb = np.zeros((3, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    p = tmp_path / "colour.png"
    Image.fromarray(rgb).save(p)
    with pytest.raises(InputError, match="colour.png.*has 3 channels; expected a grayscale image"):
        read_image(p)
    with pytest.raises(InputError, match="3 channels"):
        read_mask(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match=r"nope\.tif: file not found"):
        read_mask(tmp_path / "nope.tif")


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InputError, match=r"d\.png: not a file"):
        read_image(tmp_path / "d.png")


def test_empty_file(tmp_path):
    for name in ("e.png", "e.tif"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputError, match=name.replace(".", r"\.") + r": file is empty"):
            read_image(tmp_path / name)


def test_corrupt_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not a png at all")
    (tmp_path / "junk.tif").write_bytes(b"this is not a tiff at all")
    with pytest.raises(InputError, match=r"junk\.png: cannot read PNG"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(InputError, match=r"junk\.tif: cannot read TIFF"):
        read_mask(tmp_path / "junk.tif")


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "full.png"
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    t = tmp_path / "trunc.png"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"trunc\.png: cannot read PNG"):
        read_image(t)


def test_truncated_tiff(tmp_path):
    p = tmp_path / "full.tif"
    tifffile.imwrite(p, np.ones((64, 64), dtype=np.uint16))
    data = p.read_bytes()
    t = tmp_path / "trunc.tif"
    t.write_bytes(data[:100])
    with pytest.raises(InputError, match=r"trunc\.tif: cannot read TIFF"):
        read_image(t)


def test_unsupported_extension(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InputError, match=r"x\.jpg: unsupported file type '\.jpg'"):
        read_image(tmp_path / "x.jpg")


@pytest.mark.filterwarnings("ignore:.*zero-size array")
@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_zero_dimension(tmp_path, shape):
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, np.zeros(shape, dtype=np.uint8))
    with pytest.raises(InputError, match=r"z\.tif: image has a zero dimension \(shape \(\d, \d\)\)"):
        read_image(p)


def test_non_finite(tmp_path):
    a = np.ones((3, 3), dtype=np.float32)
    a[1, 1] = np.nan
    a[0, 2] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", a)
    with pytest.raises(InputError, match=r"nan\.tif: image contains 2 non-finite"):
        read_image(tmp_path / "nan.tif")
    with pytest.raises(InputError, match=r"nan\.tif: image contains 2 non-finite"):
        read_mask(tmp_path / "nan.tif")


def test_not_2d(tmp_path):
    tifffile.imwrite(tmp_path / "vol.tif", np.zeros((4, 5, 6), dtype=np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match=r"vol\.tif: expected a 2-D image, got an array of shape \(4, 5, 6\)"):
        read_image(tmp_path / "vol.tif")


def test_read_mask_threshold(tmp_path):
    a = np.array([[0, 1], [128, 255]], dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.dtype == bool
    np.testing.assert_array_equal(m, [[False, True], [True, True]])
    f = np.array([[-1.0, 0.0], [0.2, 3.0]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "m.tif", f)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), [[False, False], [True, True]])


@pytest.mark.parametrize("name", ["out.png", "out.tif", "out.tiff", "OUT.PNG"])
def test_write_mask_round_trip(tmp_path, name):
    m = np.array([[0, 1, 0], [1, 1, 0]], dtype=bool)
    p = tmp_path / "sub" / name
    write_mask(p, m)
    np.testing.assert_array_equal(read_mask(p), m)
    raw = np.asarray(Image.open(p)) if name.lower().endswith(".png") else tifffile.imread(p)
    assert raw.dtype == np.uint8
    assert sorted(np.unique(raw).tolist()) == [0, 255]
    assert os.listdir(p.parent) == [name]  # no temporary file left behind


def test_write_mask_atomic_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "keep.png"
    write_mask(p, np.ones((2, 2)))
    before = p.read_bytes()

    import PIL.Image

    def boom(self, fp, *a, **k):
        with open(fp, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(PIL.Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_mask(p, np.zeros((2, 2)))
    assert p.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["keep.png"]  # and the temporary file is gone


def test_write_mask_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match=r"m\.jpg: unsupported output file type"):
        write_mask(tmp_path / "m.jpg", np.ones((2, 2)))
    with pytest.raises(ValueError):
        write_mask(tmp_path / "m.png", np.ones((2, 2, 2)))
    assert list(tmp_path.iterdir()) == []
