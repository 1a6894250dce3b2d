"""The main job, ``pixeldrl demo``, end to end (one epoch instead of 150): real MNI152 slices from the
nilearn wheel, PA3C training, test metrics and the three figures; a second call on the same folder
continues the run instead of training anew, and says so."""

from __future__ import annotations

import csv

import pytest

from pixeldrl.experiments.demo import demo_config, run_demo


def test_the_demo_trains_a_quarter_of_its_epochs_at_half_the_side_whatever_the_budget(tmp_path):
    default = demo_config(tmp_path)
    assert (default.epochs, default.coarse_epochs, default.coarse_side(), default.image_size) == (150, 38, 64, 128)
    assert default.zoom_out == 0.5
    assert (default.t_max, default.ema_decay) == (2, 0.95)  # 2-step episodes, scored through the weight average
    assert (default.data, default.out) == (str(tmp_path / "data"), str(tmp_path / "run"))
    shorter = demo_config(tmp_path, epochs=20)
    assert (shorter.epochs, shorter.coarse_epochs) == (20, 5)  # 38/150 of 20, to the nearest epoch
    assert demo_config(tmp_path, epochs=94).coarse_epochs == 24  # 23.8: the measured 24 + 70 schedule
    assert demo_config(tmp_path, epochs=62).coarse_epochs == 16  # 15.7: the measured 16 + 46 schedule
    assert demo_config(tmp_path, epochs=1).coarse_epochs == 0  # one epoch: at the full size


@pytest.mark.slow
def test_demo_trains_evaluates_draws_and_a_second_call_only_evaluates(tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_demo(out, epochs=1, progress=False)
    run = out / "run"
    for name in ("overlays.png", "steps.png", "training_curve.png", "summary.json", "test_per_image.csv",
                 "checkpoint_best.pt", "checkpoint_final.pt", "config.json", "log.csv"):
        assert (run / name).stat().st_size > 0, name
    assert result["n"] == 29  # the demo's test split
    assert 0.0 <= result["mean"]["DICE"] <= 1.0 and result["mean"]["HD95"] >= 0.0
    printed = capsys.readouterr().out
    assert "DICE" in printed and "holds a run" not in printed

    again = run_demo(out, epochs=1, progress=False)
    assert "holds a run; continuing it" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(run / "log.csv")))) == 1  # nothing retrained
    assert again["mean"] == result["mean"]  # the same best checkpoint, evaluated again
