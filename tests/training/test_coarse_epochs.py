"""Progressive resizing (``coarse_epochs``): the first epochs train on shrunk slices, the rest,
validation and the checkpoints at the run's image size."""

from __future__ import annotations

import pytest
import torch

import pixeldrl.training.update as update
from pixeldrl.checkpoint import load_checkpoint
from pixeldrl.config import make_config
from pixeldrl.data.transforms import shrink
from pixeldrl.errors import InputError
from pixeldrl.training.train import train
from synth_datasets import make_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_shrink_keeps_a_pixel_where_half_of_it_was_foreground():
    masks = torch.zeros(1, 4, 4)
    masks[0, 0, :2] = 1  # top-left 2×2 block: half foreground -> kept
    masks[0, 2, 2] = 1  # bottom-right block: a quarter -> dropped
    masks[0, :2, 2:] = 1  # top-right block: all -> kept
    images = torch.rand(1, 1, 4, 4)
    small_images, small_masks = shrink(images, masks, 2)
    assert small_images.shape == (1, 1, 2, 2) and small_masks.shape == (1, 2, 2)
    assert small_masks.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]
    # 2× exactly: each new pixel is the mean of a 2×2 block
    torch.testing.assert_close(small_images, images.reshape(1, 1, 2, 2, 2, 2).mean((3, 5)))


def test_crops_are_windows_of_the_full_size_slices_redrawn_every_epoch():
    from pixeldrl.data.folder import SliceDataset
    from pixeldrl.training.run import coarse_dataset, epoch_dataset

    n, s = 6, 16
    coords = torch.arange(s * s, dtype=torch.float32).reshape(s, s)  # each pixel holds its own position
    images = torch.stack([coords + 1000 * i for i in range(n)]).unsqueeze(1)  # (N, 1, S, S)
    masks = (torch.rand(n, s, s, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    ds = SliceDataset(images, masks, [f"s{i}" for i in range(n)], [(s, s)] * n)
    cfg = make_config("small", image_size=s, coarse_epochs=2, coarse_mode="crop", seed=3)
    coarse = coarse_dataset(cfg, ds)
    first = epoch_dataset(cfg, 1, ds, coarse)
    assert first.images.shape == (n, 1, 8, 8) and first.masks.shape == (n, 8, 8)
    for i in range(n):
        top, left = divmod(int(first.images[i, 0, 0, 0].item()) - 1000 * i, s)  # the window's corner
        assert 0 <= top <= s - 8 and 0 <= left <= s - 8
        assert torch.equal(first.images[i], images[i, :, top:top + 8, left:left + 8])
        assert torch.equal(first.masks[i], masks[i, top:top + 8, left:left + 8])  # the image's window
    again = epoch_dataset(cfg, 1, ds, coarse)
    assert torch.equal(again.images, first.images)  # an epoch's crops are fixed: a resumed run replays them
    assert not torch.equal(epoch_dataset(cfg, 2, ds, coarse).images, first.images)  # a new draw each epoch
    assert epoch_dataset(cfg, 3, ds, coarse) is ds  # after the coarse epochs: the slices themselves


@pytest.mark.parametrize("mode", ["shrink", "crop"])
def test_the_first_epochs_train_at_the_coarse_size_and_the_rest_at_the_image_size(tmp_path, monkeypatch, mode):
    seen = []
    real = update.pa3c_update

    def spy(agent, opt, images, masks, *args, **kw):
        seen.append(tuple(images.shape[-2:]))
        return real(agent, opt, images, masks, *args, **kw)

    monkeypatch.setattr(update, "pa3c_update", spy)
    data = make_folder(tmp_path / "data", n=8, size=24)
    cfg = make_config("small", data=str(data), out=str(tmp_path / "run"), image_size=24, batch_size=4,
                      epochs=3, coarse_epochs=2, coarse_mode=mode, seed=0)
    run = train(cfg, progress=False, evaluate_test=False)
    # 6 training images, batch 4: two updates an epoch; epochs 1-2 at 12², epoch 3 at 24²
    assert seen == [(12, 12)] * 4 + [(24, 24)] * 2
    ckpt = load_checkpoint(run / "checkpoint_latest.pt")
    assert ckpt["config"]["coarse_epochs"] == 2 and ckpt["epoch"] == 3
    # Resuming past the coarse epochs continues at the image size.
    seen.clear()
    train(make_config(**{**cfg.to_dict(), "epochs": 4}), resume=True, progress=False, evaluate_test=False)
    assert seen == [(24, 24)] * 2


@pytest.mark.parametrize("kw,name", [(dict(coarse_size=24), "--coarse-size"),
                                     (dict(coarse_epochs=-1), "--coarse-epochs"),
                                     (dict(coarse_mode="tile"), "--coarse-mode"),
                                     (dict(coarse_mode="crop", coarse_epochs=2, workers=2), "--coarse-mode crop")])
def test_impossible_coarse_settings_are_refused(kw, name):
    with pytest.raises(InputError, match=name):
        make_config("small", image_size=24, **kw)


def test_the_u_net_baseline_takes_the_same_coarse_epochs(tmp_path, monkeypatch):
    import pixeldrl.training.supervised as supervised

    seen = []
    real = supervised.train_epoch

    def spy(model, loss_fn, opt, ds, *args, **kw):
        seen.append(tuple(ds.images.shape[-2:]))
        return real(model, loss_fn, opt, ds, *args, **kw)

    monkeypatch.setattr(supervised, "train_epoch", spy)
    data = make_folder(tmp_path / "data", n=8, size=64)
    cfg = make_config("small", model="unet", data=str(data), out=str(tmp_path / "run"), image_size=64, batch_size=4,
                      epochs=2, coarse_epochs=1, seed=0)
    train(cfg, progress=False, evaluate_test=False)
    assert seen == [(32, 32), (64, 64)]
    with pytest.raises(InputError, match="--coarse-size 16: unet needs"):
        make_config("small", model="unet", image_size=32, coarse_epochs=1)

