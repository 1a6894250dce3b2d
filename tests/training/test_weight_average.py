"""The moving average of the weights (``ema_decay``): what it averages, what the checkpoints hold,
and that a resumed run continues both; older runs keep the recipe they trained with."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from pixeldrl.checkpoint import agent_from_checkpoint, load_checkpoint
from pixeldrl.config import TrainConfig, make_config
from pixeldrl.training.train import ema_avg_fn, train
from synth_datasets import make_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_decay_warms_up_then_holds():
    avg = ema_avg_fn(0.95)
    one, zero = torch.ones(1), torch.zeros(1)
    # After n updates the old average keeps min(0.95, (1 + n)/(10 + n)) of its weight.
    for n, kept in ((1, 2 / 11), (10, 11 / 20), (200, 0.95)):
        assert math.isclose(avg(one, zero, torch.tensor(n)).item(), kept, rel_tol=1e-6)
    # AveragedModel copies the first weights, then applies the update with n = 1, 2, ...
    net = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(net, avg_fn=avg, use_buffers=True)
    values = [1.0, 2.0, 4.0]
    expected = None
    for n, v in enumerate(values):
        net.weight.data.fill_(v)
        ema.update_parameters(net)
        expected = v if n == 0 else expected * min(0.95, (1 + n) / (10 + n)) + v * (1 - min(0.95, (1 + n) / (10 + n)))
    assert math.isclose(ema.module.weight.item(), expected, rel_tol=1e-6)


def _cfg(tmp_path, **kw):
    data = make_folder(tmp_path / "data", n=8, size=24)
    return make_config("small", data=str(data), out=str(tmp_path / "run"), image_size=24, batch_size=4,
                       epochs=2, seed=0, **kw)


def test_checkpoints_hold_the_average_and_the_trained_weights_and_resume_continues_both(tmp_path):
    cfg = _cfg(tmp_path, ema_decay=0.95)
    run = train(cfg, progress=False, evaluate_test=False)
    ckpt = load_checkpoint(run / "checkpoint_latest.pt")
    # 6 training images (make_folder's split), batch 4: 2 updates per epoch
    assert ckpt["ema_updates"] == 4
    diff = max((ckpt["model"][k] - ckpt["online_model"][k]).abs().max().item() for k in ckpt["model"])
    assert diff > 0  # the saved model is the average, not the last weights
    agent, _ = agent_from_checkpoint(run / "checkpoint_latest.pt")
    for k, v in agent.state_dict().items():
        torch.testing.assert_close(v, ckpt["model"][k])
    # Two more epochs from the checkpoint give what four epochs in one go give.
    resumed = train(make_config(**{**cfg.to_dict(), "epochs": 4}), resume=True, progress=False, evaluate_test=False)
    straight = train(make_config(**{**cfg.to_dict(), "epochs": 4, "out": str(tmp_path / "straight")}),
                     progress=False, evaluate_test=False)
    a, b = (load_checkpoint(r / "checkpoint_latest.pt") for r in (resumed, straight))
    assert a["ema_updates"] == b["ema_updates"] == 8
    for key in ("model", "online_model"):
        for k in a[key]:
            torch.testing.assert_close(a[key][k], b[key][k], msg=f"{key}.{k}")


def test_without_the_average_the_checkpoint_holds_the_trained_weights(tmp_path):
    run = train(_cfg(tmp_path, ema_decay=0.0), progress=False, evaluate_test=False)  # the average off
    ckpt = load_checkpoint(run / "checkpoint_latest.pt")
    assert "online_model" not in ckpt and "ema_updates" not in ckpt


def test_a_stored_config_from_before_these_options_keeps_its_recipe():
    new = TrainConfig(pixel_done=True, mask_dead=True, ema_decay=0.9).to_dict()
    old = {k: v for k, v in new.items() if k not in ("pixel_done", "mask_dead", "ema_decay")}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.pixel_done, cfg.mask_dead, cfg.ema_decay) == (False, False, 0.0)
    cfg = TrainConfig.from_dict(new)
    assert (cfg.pixel_done, cfg.mask_dead, cfg.ema_decay) == (True, True, 0.9)


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan")])
def test_invalid_decay_is_refused(tmp_path, bad):
    from pixeldrl.config import validate
    from pixeldrl.errors import InputError

    with pytest.raises(InputError, match="--ema-decay"):
        validate(make_config("small", data="x", ema_decay=bad))
