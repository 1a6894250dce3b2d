"""What a training run leaves in its folder while it trains: the curve is redrawn now and then, not
every epoch (a matplotlib figure costs about a thirtieth of a demo epoch), and always after the last."""

from __future__ import annotations

import pytest

import pixeldrl.training.run as run_module
from pixeldrl.config import make_config
from pixeldrl.training.train import train
from synth_datasets import make_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("model", ["pixeldrl", "unet"])
def test_the_curve_is_drawn_first_and_last_but_not_after_every_quick_epoch(tmp_path, monkeypatch, model):
    drawn = []
    real = run_module.plot_training_curve

    def plot(log_csv, png):
        with open(log_csv) as f:
            drawn.append(sum(1 for _ in f) - 1)  # epochs in the log when drawn
        return real(log_csv, png)

    monkeypatch.setattr(run_module, "plot_training_curve", plot)
    monkeypatch.setattr(run_module, "CURVE_REDRAW_S", 3600.0)
    data = make_folder(tmp_path / "data", n=8, size=32)
    cfg = make_config("small", model=model, data=str(data), out=str(tmp_path / "run"), image_size=32,
                      batch_size=4, epochs=4, seed=0)
    run = train(cfg, progress=False, evaluate_test=False)
    assert drawn == [1, 4]
    assert (run / "training_curve.png").stat().st_size > 0

    # Once the interval has passed, the next epoch redraws it.
    monkeypatch.setattr(run_module, "CURVE_REDRAW_S", 0.0)
    drawn.clear()
    train(make_config(**{**cfg.to_dict(), "epochs": 6}), resume=True, progress=False, evaluate_test=False)
    assert drawn == [5, 6]
