"""Faults a careless or hostile user causes, and what the tool promises about each (README, "What is
guaranteed"): run folders that protect themselves, one-line errors for OS failures and bad files,
bounded inputs, interrupted commands that leave nothing half-done.

Kills and file-size limits run the real command in a subprocess (``python -m pixeldrl.cli``); the
rest runs in-process on the tiny data of ``test_cli.py``. A full disk and a read-only folder are
simulated in-process where the test runs as root (root writes anywhere).
"""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from pixeldrl.checkpoint import load_checkpoint
from pixeldrl.data.store import open_store
from pixeldrl.fileio import LOCK_NAME, folder_lock
from synth_datasets import make_folder, make_msd
from test_cli import FAST, read_log, run_cli, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args, cwd=None, preexec=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixeldrl.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, preexec_fn=preexec, timeout=timeout)


def assert_input_error(rc: int, err: str, *names: str) -> None:
    """Exit 2, no traceback, one error line (besides progress bars) naming every one of ``names``."""
    assert rc == 2, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("pixeldrl ")]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"


def one_line_error(proc: subprocess.CompletedProcess, *names: str) -> None:
    assert_input_error(proc.returncode, proc.stderr, *names)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch run on tiny data; tests copy it before changing anything."""
    base = tmp_path_factory.mktemp("faults")
    data = make_folder(base / "data")
    out = base / "run"
    from pixeldrl.cli import main
    assert main(["train", "--data", str(data), *FAST, "--out", str(out)]) == 0
    return {"data": data, "run": out}


def copy_run(run, dest: Path) -> Path:
    shutil.copytree(run["run"], dest)
    return dest


# --------------------------------------------------------------------------- 1. the run folder is the unit


def test_resume_continues_the_named_folder_after_a_copy(run, tmp_path, capsys):
    original = snapshot(run["run"])
    copy = copy_run(run, tmp_path / "copy")
    rc, out, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", copy)
    assert rc == 0, err
    assert [r["epoch"] for r in read_log(copy)] == ["1", "2"]
    assert snapshot(run["run"]) == original  # the run it was copied from is untouched
    assert json.loads((copy / "config.json").read_text())["out"] == str(copy)


def test_a_moved_run_resumes_from_another_working_directory(run, tmp_path, capsys, monkeypatch):
    moved = copy_run(run, tmp_path / "a")
    moved = moved.rename(tmp_path / "b")
    cfg = json.loads((moved / "config.json").read_text())
    assert Path(cfg["data"]).is_absolute() and Path(cfg["out"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, _, err = run_cli(capsys, "train", "--data", os.path.relpath(run["data"]), "--resume", "--epochs", "2",
                         "--out", "../b")
    assert rc == 0, err
    assert [r["epoch"] for r in read_log(moved)] == ["1", "2"]


# --------------------------------------------------------------------------- 2. one writer per run folder


def test_a_live_run_folder_is_refused(run, tmp_path, capsys):
    folder = copy_run(run, tmp_path / "busy")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pixeldrl.fileio import folder_lock\n"
                               "with folder_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
                               str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(folder)
        rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder)
        assert_input_error(rc, err, str(folder), f"pid {holder.pid}")
        assert snapshot(folder) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(run, tmp_path, capsys):
    folder = copy_run(run, tmp_path / "stale")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / LOCK_NAME).write_text(dead.stdout)  # the lock file of a process that is gone
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder)
    assert rc == 0, err
    assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(Exception, match="in use by another pixeldrl process"):
            with folder_lock(tmp_path):
                pass
    with folder_lock(tmp_path):  # released
        pass


def test_out_that_is_not_a_run_or_lies_in_the_data_is_refused(run, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], *FAST, "--out", foreign)
    assert_input_error(rc, err, str(foreign), "not a pixeldrl run folder")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    inside = run["data"] / "runs" / "x"
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], *FAST, "--out", inside)
    assert_input_error(rc, err, "inside the dataset")
    assert not (run["data"] / "runs").exists()


def test_a_failed_start_leaves_no_new_folder(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    (data / "masks" / "img0.png").unlink()  # a dataset error, found after the folder is claimed
    rc, _, err = run_cli(capsys, "train", "--data", data, *FAST, "--out", tmp_path / "new")
    assert rc == 2, err
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- 3. OS errors: one line, nothing lost


def test_a_file_size_limit_mid_training_keeps_the_previous_checkpoint(run, tmp_path):
    folder = copy_run(run, tmp_path / "full")
    before = (folder / "checkpoint_latest.pt").read_bytes()
    limit = len(before) // 2  # the next checkpoint cannot be written

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = cli("train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder, preexec=small_files)
    one_line_error(proc, str(folder / "checkpoint_"), "File too large")
    assert (folder / "checkpoint_latest.pt").read_bytes() == before
    assert load_checkpoint(folder / "checkpoint_latest.pt")["epoch"] == 1
    assert not [p for p in folder.iterdir() if p.name.startswith(".checkpoint")]  # no temporary left


def test_disk_full_names_the_file_and_keeps_the_old_one(run, tmp_path, capsys, monkeypatch):
    folder = copy_run(run, tmp_path / "nospace")
    before = (folder / "checkpoint_latest.pt").read_bytes()
    real_write = Path.write_bytes

    def full(self, data):
        if self.name.startswith(".checkpoint"):
            real_write(self, bytes(data)[:100])  # part of it reached the disk, then the disk filled
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder)
    assert_input_error(rc, err, "No space left on device", str(folder / "checkpoint_"))
    assert (folder / "checkpoint_latest.pt").read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".checkpoint")]


def test_read_only_destination(run, tmp_path, capsys, monkeypatch):
    dest = tmp_path / "ro"
    dest.mkdir()
    if os.geteuid() != 0:
        dest.chmod(0o555)
    else:  # root writes anywhere: make the destination's files fail as a read-only mount would
        import tempfile

        real = tempfile.mkstemp

        def refuse(*a, dir=None, **k):
            if dir is not None and Path(dir).resolve().is_relative_to(dest.resolve()):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", run["run"] / "checkpoint_best.pt",
                         run["data"] / "images", "--out", dest / "pred")
    assert rc == 2 and "Traceback" not in err, err
    assert str(dest) in err and ("Read-only" in err or "Permission denied" in err), err
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", run["run"] / "checkpoint_best.pt", "--data", run["data"],
                         "--csv", dest / "table.csv")
    assert rc == 2 and str(dest) in err, err
    dest.chmod(0o755)


def test_file_names_that_are_not_utf8_round_trip(run, tmp_path, capsys):
    # "café" in Latin-1: bytes that are not valid UTF-8, as an older scanner export may name files
    images, gts = tmp_path / "img", tmp_path / "gt"
    images.mkdir(), gts.mkdir()
    shutil.copy(run["data"] / "images" / "img0.png", os.fsencode(images) + b"/caf\xe9.png")
    shutil.copy(run["data"] / "masks" / "img0.png", os.fsencode(gts) + b"/caf\xe9.png")
    pred = tmp_path / "pred"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", run["run"] / "checkpoint_best.pt", images, "--out", pred,
                         "--save-steps")
    assert rc == 0, err
    assert os.listdir(os.fsencode(pred / "steps")) == [b"caf\xe9.png"]
    assert b"caf\xe9.png" in os.listdir(os.fsencode(pred))
    rc, _, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", gts, "--csv", tmp_path / "t.csv")
    assert rc == 0, err
    assert (tmp_path / "t.csv").read_bytes().splitlines()[1].startswith(b"caf\xe9,")  # the name as on disk


# --------------------------------------------------------------------------- 4. files the tool reads are validated


def _save(payload, path: Path) -> Path:
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "no_config", "config_wrong_type", "net_config_missing_key",
                                    "weights_of_another_model"])
def test_damaged_checkpoints_give_one_line(run, tmp_path, capsys, damage):
    good = run["run"] / "checkpoint_best.pt"
    ckpt = torch.load(good, weights_only=True)
    path = tmp_path / "c.pt"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(good.read_bytes()[:1000])
    elif damage == "no_config":
        _save({k: v for k, v in ckpt.items() if k != "config"}, path)
    elif damage == "config_wrong_type":
        _save({**ckpt, "config": {**ckpt["config"], "t_max": "ten"}}, path)
    elif damage == "net_config_missing_key":
        _save({**ckpt, "net_config": {k: v for k, v in ckpt["net_config"].items() if k != "widths"}}, path)
    else:
        _save({**ckpt, "model": {"w": torch.zeros(3)}}, path)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", path, run["data"] / "images", "--out", tmp_path / "p")
    assert_input_error(rc, err, str(path))
    assert not (tmp_path / "p").exists()


def test_resume_with_another_models_checkpoint(run, tmp_path, capsys):
    folder = copy_run(run, tmp_path / "mixed")
    other = tmp_path / "pixelrl"
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], *FAST, "--model", "pixelrl", "--out", other)
    assert rc == 0, err
    shutil.copy(other / "checkpoint_latest.pt", folder / "checkpoint_latest.pt")
    before = snapshot(folder)
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder)
    assert_input_error(rc, err, str(folder / "checkpoint_latest.pt"))
    assert snapshot(folder) == before


@pytest.mark.parametrize("edit", [{"lr": "fast"}, {"epochs": None}, {"image_size": [16]}, {"labels": "1,2"}])
def test_hand_edited_config_json(run, tmp_path, capsys, edit):
    folder = copy_run(run, tmp_path / "edited")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **edit}))
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder)
    assert_input_error(rc, err, str(folder / "config.json"), next(iter(edit)))


def test_hand_edited_store_manifest(tmp_path, capsys):
    raw = make_msd(tmp_path / "raw", n=3)
    store = tmp_path / "store"
    rc, _, err = run_cli(capsys, "prepare", raw, "--out", store, "--image-size", "16")
    assert rc == 0, err
    man = json.loads((store / "manifest.json").read_text())
    for broken in ({**man, "slices": "all"}, {**man, "settings": {**man["settings"], "axis": "z"}},
                   {**man, "slices": [{k: v for k, v in man["slices"][0].items() if k != "split"}] + man["slices"][1:]}):
        (store / "manifest.json").write_text(json.dumps(broken))
        rc, _, err = run_cli(capsys, "train", "--data", store, *FAST, "--out", tmp_path / "r")
        assert_input_error(rc, err, str(store / "manifest.json"))


@pytest.mark.parametrize("image", [5, "../outside.nii.gz", "ABSOLUTE"])
def test_dataset_json_entries_wrong_or_outside_the_folder(tmp_path, capsys, image):
    raw = make_msd(tmp_path / "raw", n=3)
    outside = tmp_path / "outside.nii.gz"  # a readable volume, but not the dataset's
    shutil.copy(raw / "imagesTr" / sorted(os.listdir(raw / "imagesTr"))[0], outside)
    d = json.loads((raw / "dataset.json").read_text())
    d["training"][0]["image"] = str(outside) if image == "ABSOLUTE" else image
    (raw / "dataset.json").write_text(json.dumps(d))
    rc, _, err = run_cli(capsys, "prepare", raw, "--out", tmp_path / "store", "--image-size", "16")
    assert_input_error(rc, err, str(raw / "dataset.json"))
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------- 5. bounded inputs


def tiff_declaring(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes of TIFF whose header declares a ``width`` × ``height`` 8-bit image."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, width * height)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(64))
    return path


def test_images_declaring_too_many_pixels_are_refused_from_the_header(run, tmp_path, capsys):
    big_tif = tiff_declaring(tmp_path / "big.tif", 20000, 20000)
    assert big_tif.stat().st_size < 1000
    big_png = tmp_path / "big.png"
    Image.new("L", (9000, 9000)).save(big_png)  # 81 M pixels in about 80 kB
    for path in (big_tif, big_png):
        rc, _, err = run_cli(capsys, "predict", "--checkpoint", run["run"] / "checkpoint_best.pt", path,
                             "--out", tmp_path / "p")
        assert_input_error(rc, err, str(path), "more than the limit")


def test_training_options_that_cannot_fit_in_memory(run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--preset", "paper", "--image-size", "4096",
                         "--batch-size", "64", "--out", tmp_path / "r")
    assert_input_error(rc, err, "--batch-size 64", "GiB")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 6. interrupted prepare leaves nothing


def _start_prepare(raw: Path, out: Path) -> subprocess.Popen:
    """A ``prepare`` caught in the middle of writing its slices, stopped (SIGSTOP) there.

    The process is frozen as soon as its temporary store holds the first slice, so a signal the test
    sends next always lands before the store is complete (a timed sleep raced the prepare: on a fast
    run it finished first). The caller sends its signal, then SIGCONT.
    """
    proc = subprocess.Popen([sys.executable, "-m", "pixeldrl.cli", "prepare", str(raw), "--out", str(out),
                             "--image-size", "32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 60
    while not any(f.stat().st_size for f in out.parent.glob(f".{out.name}.*.tmp/images.raw")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(signal.SIGSTOP)
    (tmp,) = out.parent.glob(f".{out.name}.*.tmp")
    assert not (tmp / "manifest.json").exists()  # stopped before the store was complete
    return proc


@pytest.fixture(scope="module")
def raw40(tmp_path_factory):
    return make_msd(tmp_path_factory.mktemp("raw") / "msd", n=40)


def test_sigterm_during_prepare_leaves_nothing(raw40, tmp_path):
    out = tmp_path / "store"
    proc = _start_prepare(raw40, out)
    proc.send_signal(signal.SIGTERM)  # delivered when the process resumes, mid-write
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


class _SignalsInDel:
    """Sends itself SIGTERM from ``__del__``, so Python runs the handler there and drops its exception."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100_000):  # bytecodes after the kill: the handler runs inside __del__
            pass


def test_a_signal_python_drops_inside_del_is_raised_again():
    from pixeldrl.cli import Terminated, _SignalsDelivered

    before = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    with pytest.raises(Terminated), _SignalsDelivered() as signals:
        _SignalsInDel()  # collected at once: the handler's Terminated is dropped ("Exception ignored")
        assert signals.dropped is Terminated
        deadline = time.time() + 5
        while time.time() < deadline:  # ... and raised again here, 10 ms later
            time.sleep(0.001)
    assert (signal.getsignal(signal.SIGTERM), sys.unraisablehook) == before


def test_sigkill_leftover_is_never_a_store_and_the_next_prepare_removes_it(raw40, tmp_path, capsys):
    out = tmp_path / "store"
    proc = _start_prepare(raw40, out)
    proc.kill()  # a stopped process is killed at once
    proc.wait()
    (left,) = tmp_path.glob(".store.*.tmp")
    with pytest.raises(Exception, match="unfinished or interrupted prepare"):
        open_store(left)
    rc, _, err = run_cli(capsys, "train", "--data", left, *FAST, "--out", tmp_path / "r")
    assert rc == 2, err
    rc, _, err = run_cli(capsys, "prepare", raw40, "--out", out, "--image-size", "32")
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path)) == ["store"]
    assert open_store(out).manifest["n_slices"] > 0


def test_training_killed_at_a_random_point_resumes_to_the_same_weights(run, tmp_path):
    folder = tmp_path / "killed"
    args = ["train", "--data", run["data"], "--preset", "small", "--epochs", "3", "--image-size", "16",
            "--batch-size", "2", "--out", folder]
    proc = subprocess.Popen([sys.executable, "-m", "pixeldrl.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (folder / "config.json").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0, 1.5))
    proc.kill()
    proc.wait()
    resume = (folder / "checkpoint_latest.pt").exists()
    if resume:  # every file the run left is whole
        assert load_checkpoint(folder / "checkpoint_latest.pt")["epoch"] >= 1
    done = cli(*args, *(["--resume"] if resume else []))
    assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in read_log(folder)] == ["1", "2", "3"]
    straight = tmp_path / "straight"
    uninterrupted = cli(*args[:-1], straight)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    a = load_checkpoint(folder / "checkpoint_final.pt")["model"]
    b = load_checkpoint(straight / "checkpoint_final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- 7. options validated


@pytest.mark.parametrize("options, name", [(["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "0"], "--lr"),
                                           (["--seed", "-1"], "--seed"), (["--device", "mps"], "--device mps"),
                                           (["--device", "cuda:x"], "--device cuda:x"), (["--epochs", "0"], "--epochs"),
                                           (["--split-seed", "-3"], "--split-seed"), (["--labels", "0"], "--labels")])
def test_invalid_training_options(run, tmp_path, capsys, options, name):
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], *FAST, *options, "--out", tmp_path / "r")
    assert_input_error(rc, err, name)
    assert not (tmp_path / "r").exists()


def test_invalid_channel_count(capsys):
    rc, _, err = run_cli(capsys, "info", "--in-channels", "0")
    assert_input_error(rc, err, "--in-channels")


def test_resume_with_fewer_epochs_than_done_is_refused(run, tmp_path, capsys):
    folder = copy_run(run, tmp_path / "two")
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "2", "--out", folder)
    assert rc == 0, err
    before = snapshot(folder)
    rc, _, err = run_cli(capsys, "train", "--data", run["data"], "--resume", "--epochs", "1", "--out", folder)
    assert_input_error(rc, err, "--epochs 1", "already done 2 epochs")
    assert snapshot(folder) == before


# --------------------------------------------------------------------------- predict --skip-existing


def test_predict_skip_existing_continues_an_interrupted_folder(run, tmp_path, capsys):
    out = tmp_path / "pred"
    ckpt = run["run"] / "checkpoint_best.pt"
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", ckpt, run["data"] / "images", "--out", out)
    assert rc == 0, err
    full = snapshot(out)
    (out / "img3.png").unlink()  # interrupted before this one
    kept = out / "img0.png"
    os.utime(kept, (0, 0))
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", ckpt, run["data"] / "images", "--out", out, "--skip-existing")
    assert rc == 0, err
    assert snapshot(out) == full
    assert kept.stat().st_mtime == 0  # finished masks are left alone
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", ckpt, run["data"] / "images", "--out", out,
                         "--skip-existing", "--overwrite")
    assert_input_error(rc, err, "--skip-existing")
