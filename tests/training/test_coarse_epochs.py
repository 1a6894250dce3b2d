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


def test_the_first_epochs_train_at_the_coarse_size_and_the_rest_at_the_image_size(tmp_path, monkeypatch):
    seen = []
    real = update.pa3c_update

    def spy(agent, opt, images, masks, *args, **kw):
        seen.append(tuple(images.shape[-2:]))
        return real(agent, opt, images, masks, *args, **kw)

    monkeypatch.setattr(update, "pa3c_update", spy)
    data = make_folder(tmp_path / "data", n=8, size=24)
    cfg = make_config("small", data=str(data), out=str(tmp_path / "run"), image_size=24, batch_size=4,
                      epochs=3, coarse_epochs=2, seed=0)
    run = train(cfg, progress=False, evaluate_test=False)
    # 6 training images, batch 4: two updates an epoch; epochs 1-2 at 12², epoch 3 at 24²
    assert seen == [(12, 12)] * 4 + [(24, 24)] * 2
    ckpt = load_checkpoint(run / "checkpoint_latest.pt")
    assert ckpt["config"]["coarse_epochs"] == 2 and ckpt["epoch"] == 3
    # Resuming past the coarse epochs continues at the image size.
    seen.clear()
    train(make_config(**{**cfg.to_dict(), "epochs": 4}), resume=True, progress=False, evaluate_test=False)
    assert seen == [(24, 24)] * 2


@pytest.mark.parametrize("kw,name", [(dict(coarse_size=24), "--coarse-size"), (dict(coarse_epochs=-1), "--coarse-epochs")])
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


def test_asynchronous_workers_take_the_coarse_slices_in_the_coarse_epochs():
    # One worker process on the coarse slices makes the same update as the synchronous loop on
    # them: the worker reads the shrunk copy when the epoch is coarse.
    import copy

    from pixeldrl.data.dataset import SliceDataset
    from pixeldrl.rl.pa3c import Agent
    from pixeldrl.training.parallel import AsyncWorkers
    from pixeldrl.training.run import epoch_batches
    from pixeldrl.training.update import train_epoch

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 16, 16, generator=gen)
    masks = (images[:, 0] > 0.5).float()
    small_images, small_masks = shrink(images, masks, 8)
    cfg = make_config("small", data="unused", image_size=16, batch_size=2, lr=1e-3, seed=3, coarse_epochs=1)
    torch.manual_seed(0)
    sync_agent = Agent(cfg.net_config(), cfg.kernel_size, cfg.init_keep_prob)
    async_agent = copy.deepcopy(sync_agent)
    for agent in (sync_agent, async_agent):
        agent.set_fast_paths(cfg.channels_last)
    sync_opt = torch.optim.Adam(sync_agent.parameters(), lr=cfg.lr)
    async_opt = torch.optim.Adam(async_agent.parameters(), lr=cfg.lr)
    batches = epoch_batches(4, cfg.batch_size, torch.Generator().manual_seed(0))
    coarse = SliceDataset(small_images, small_masks, [f"s{i}" for i in range(4)], [(16, 16)] * 4)
    train_epoch(sync_agent, sync_opt, coarse, cfg, torch.device("cpu"), torch.Generator(),
                torch.Generator().manual_seed(cfg.seed + 1), False, batches)
    workers = AsyncWorkers(cfg, async_agent, async_opt, images.clone(), masks.clone(),
                           (small_images.clone(), small_masks.clone()))
    try:
        workers.run_epoch(batches, cfg.lr, coarse=True)
    finally:
        workers.close()
    diff = max((p - q).abs().max().item() for p, q in zip(sync_agent.parameters(), async_agent.parameters()))
    assert diff < 1e-5
