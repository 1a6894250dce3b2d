"""The ``pixeldrl`` command. Each subcommand parses its arguments and calls one plain function.

    pixeldrl demo                      # embedded real-MRI default: train, evaluate, figures
    pixeldrl train --data DIR [--model NAME] [--preset small] [--epochs N] ...
    pixeldrl prepare RAW_DIR --out PREPARED_DIR [--image-size S] [--labels 1,2] ...
    pixeldrl predict --checkpoint CKPT INPUT... --out DIR [--save-steps]     # images or NIfTI volumes
    pixeldrl evaluate --pred DIR --gt DIR [--json]
    pixeldrl evaluate --checkpoint CKPT --data DIR [--split test] [--json]
    pixeldrl info [--model NAME] [--preset paper|medium|small] [--json]
    pixeldrl reproduce --data DIR --experiment table2|table3|table4|robustness [--epochs N] [--seeds K] ...
    pixeldrl export --checkpoint CKPT --format torchscript|onnx OUT
    pixeldrl view PRED_DIR [--images DIR] [--gt DIR] [--out view.html]

Bad input raises :class:`~pixeldrl.errors.InputError`; ``main`` prints its one line and exits 2,
as it does for an OS error (disk full, permission denied), naming the file.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path

from pixeldrl import __version__
from pixeldrl.checkpoint import resolve_device
from pixeldrl.config import MODELS, TrainConfig, make_config, validate
from pixeldrl.data.protocol import Protocol
from pixeldrl.data.store import MAX_STORE_SIZE, open_store, prepare
from pixeldrl.data.volumes import DEFAULT_CT_WINDOW
from pixeldrl.errors import InputError, first_line
from pixeldrl.evaluate import evaluate_checkpoint, evaluate_folders, write_result
from pixeldrl.experiments.demo import run_demo
from pixeldrl.experiments.reproduce import Settings, reproduce
from pixeldrl.export import export_checkpoint
from pixeldrl.fileio import os_error_message
from pixeldrl.metrics import format_table
from pixeldrl.models import check_model, parameter_counts
from pixeldrl.nets.pixeldrl_mg import PRESETS, PixelDRLNet, count_parameters, net_config
from pixeldrl.predict import predict_files
from pixeldrl.progress import set_quiet
from pixeldrl.training.parallel import dist_env
from pixeldrl.training.train import train
from pixeldrl.viewer import view_folder



def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in HU, got {text!r}") from None
    return lo, hi


def _add_protocol_args(p: argparse.ArgumentParser, prepared_ok: bool = True) -> None:
    """The data-protocol options shared by train and prepare (see pixeldrl.data.protocol)."""
    formats = ["auto", "msd", "nnunet", "lgg", "paired", "folder"] + (["prepared"] if prepared_ok else [])
    p.add_argument("--format", choices=formats, help="dataset layout (default: detected)")
    p.add_argument("--labels", type=_int_list,
                   help="label values forming the target, e.g. 1,2,3 (default: every nonzero label)")
    p.add_argument("--channels", type=_int_list, help="input channels to keep, e.g. 0,2 (default: all)")
    p.add_argument("--axis", type=int, choices=[0, 1, 2], help="voxel axis to slice volumes along (default 2)")
    p.add_argument("--keep-empty", action="store_true", default=None,
                   help="keep slices without foreground (the paper removes them)")
    p.add_argument("--modality", choices=["auto", "mri", "ct"],
                   help="volume intensities: MRI clip + z-score onto [0,1], CT window (default: dataset.json or mri)")
    p.add_argument("--ct-window", type=_window, help="CT window LOW,HIGH in HU (default -160,240)")
    p.add_argument("--split-level", choices=["patient", "slice"],
                   help="70/10/20 split by patient (default) or by slice (the paper)")
    p.add_argument("--split-seed", type=int, help="seed of the split and the k-shot draw (default 0)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True,
                   help="dataset folder in any layout (see README, Datasets) or a prepared store")
    _add_protocol_args(d)
    d.add_argument("--k-shot", type=int, help="train on K training slices drawn at random (Table 4; default all)")
    d.add_argument("--augment", action="store_true", default=None,
                   help="random flips of training slices (not in the paper)")
    d.add_argument("--zoom-out", type=float,
                   help="shrink half the training slices by a random factor in [1 - Z, 1] (not in the paper; default 0)")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="pixeldrl (PixelDRL-MG, default), pixelrl, unet, attention-unet, unet++ or swin-unetr")
    m.add_argument("--preset", help="paper (7.14 M parameters, the paper's schedule; default), medium (1.15 M) "
                                    "or small (0.29 M), the CPU presets")
    m.add_argument("--image-size", type=int, help="side of the square the network sees (preset default)")
    m.add_argument("--no-sam", dest="use_sam", action="store_false", default=None,
                   help="ablation: no self-attention module")
    m.add_argument("--no-dilation", dest="use_dilation", action="store_false", default=None,
                   help="ablation: no dilated convolutions")
    m.add_argument("--norm", choices=["group", "batch", "none"],
                   help="normalisation after every 3×3 conv of the PixelDRL-MG network (preset default)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help="training epochs (preset default)")
    o.add_argument("--batch-size", type=int, help="images per update (preset default)")
    o.add_argument("--lr", type=float, help="Adam learning rate (preset default)")
    o.add_argument("--lr-schedule", choices=["step", "cosine"],
                   help="step: ×0.9 every 25 epochs (paper preset); cosine: down to 0 over the run")
    o.add_argument("--coarse-epochs", type=int,
                   help="train the first N epochs on slices shrunk to --coarse-size (progressive resizing; default 0)")
    o.add_argument("--coarse-size", type=int, help="side of the coarse epochs' slices (default: half of --image-size)")
    o.add_argument("--coarse-mode", choices=["shrink", "crop"],
                   help="coarse epochs on whole slices shrunk (default) or on random windows of the full-size slices")
    o.add_argument("--seed", type=int, help="seed of weights, shuffling and actions (default 0)")
    r = p.add_argument_group("PA3C recipe (defaults: README, \"Training recipe\")")
    r.add_argument("--returns", choices=["one_step", "multi_step"],
                   help="Eq. 8: one-step r + γ·w∗V(s(t+1)) (default) or PixelRL's multi-step r + γ·w∗R(t+1)")
    r.add_argument("--kernel", choices=["delta", "learned"],
                   help="Eq. 8's neighbour kernel w: fixed identity (default) or normalised and learned")
    r.add_argument("--policy-gradient", choices=["sampled", "all_actions"],
                   help="policy loss on the sampled action (A3C) or on both actions' known outcomes")
    r.add_argument("--value-loss", choices=["mse", "huber"],
                   help="the critic's loss: ½(R−V)² (default) or Huber (linear beyond |R−V| = 1)")
    r.add_argument("--alive-only", action="store_true", default=None,
                   help="average the policy/entropy terms over still-unzeroed pixels only")
    r.add_argument("--pixel-done", action=argparse.BooleanOptionalAction, default=None,
                   help="a zeroed pixel's episode ends: no bootstrap from it, no loss terms (default off)")
    r.add_argument("--mask-dead", action="store_true", default=None,
                   help="drop zeroed pixels' policy/entropy terms, averaging over all pixels (implied by --pixel-done)")
    r.add_argument("--ema-decay", type=float,
                   help="validate and save a moving average of the weights with this decay per update, e.g. 0.95 (default 0: off)")
    r.add_argument("--init-keep-prob", type=float, help="start the policy at this π(keep) (default: network init)")
    r.add_argument("--t-max", type=int, help="steps per training episode, and the most greedy steps at inference "
                                             "(default 10, the paper's; the small preset 3, the demo 2)")
    r.add_argument("--gamma", type=float, help="discount γ (default 0.95, the paper's)")
    r.add_argument("--entropy-beta", type=float, help="entropy bonus β (default 0.01)")
    r.add_argument("--grad-clip", type=float, help="clip the gradient norm to this, 0 = off (default 5)")
    r.add_argument("--grad-steps", type=int,
                   help="back-propagate through K random steps of each episode, the rest without a graph (0 = all)")
    r.add_argument("--infer-steps", type=int,
                   help="greedy steps at inference: 0 = the step validation scores best (default), k = always k")
    f = p.add_argument_group("speed (--amp and --workers also change the numbers a run learns; the rest only how fast)")
    f.add_argument("--device", help="auto (default: CUDA when available, else CPU), cpu, cuda or cuda:N")
    f.add_argument("--amp", choices=["none", "bf16"], help="bf16 autocast of the forward passes (GPU, or CPU with AVX512-BF16)")
    f.add_argument("--recompute", action="store_true", default=None, help="activation checkpointing: large batches fit")
    f.add_argument("--two-phase", action="store_true", default=None,
                   help="roll out without gradients, then one forward/backward over all t_max·B states (GPU)")
    f.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None,
                   help="NCHW instead of the faster NHWC layout")
    f.add_argument("--workers", type=int, help="asynchronous PA3C worker processes (Algorithm 1; default 1); "
                   "stale gradients: on the demo they learn less per epoch than one process")
    f.add_argument("--shards", type=int, help="split each batch over this many threads, same gradient (CPU; default 1)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="", help="run folder (default runs/DATASET/PRESET/seedK)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--config", help="start from a run's config.json (its settings; options given here override them)")
    g.add_argument("--val-every", type=int, help="validate every N epochs (default 1)")
    g.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log to TensorBoard in RUN/tensorboard: losses, reward, Dice, lr, masks per step")


# Options of ``train`` that are TrainConfig fields under the same name (None: not given).
_TRAIN_FIELDS = ("model", "preset", "epochs", "batch_size", "image_size", "lr", "lr_schedule", "norm", "device", "seed",
                 "val_every", "use_sam", "use_dilation", "augment", "zoom_out", "amp", "recompute", "channels_last", "workers",
                 "shards", "format", "labels", "channels", "axis", "keep_empty", "modality", "ct_window", "split_level",
                 "split_seed", "k_shot", "returns", "kernel", "policy_gradient", "value_loss", "alive_only", "pixel_done", "mask_dead", "ema_decay", "init_keep_prob", "t_max", "gamma",
                 "entropy_beta", "grad_clip", "infer_steps", "grad_steps", "tensorboard", "two_phase",
                 "coarse_epochs", "coarse_size", "coarse_mode")


def _read_run_config(path: Path) -> TrainConfig:
    try:
        stored = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a readable run config ({first_line(e)})") from None
    return TrainConfig.from_dict(stored, str(path))


# What ``--resume`` may change: the budget and where and how it runs, not what it learns.
_RESUME_MAY_CHANGE = ("epochs", "device", "tensorboard")


def _refuse_changed_settings(a: argparse.Namespace, cfg: TrainConfig, path: Path) -> None:
    """``--resume`` continues a run with its stored settings: an option given with another value
    than the run's (``--lr``, ``--ema-decay``, …) would otherwise be silently ignored, so refuse it."""
    given = {k: getattr(a, k) for k in _TRAIN_FIELDS if k not in _RESUME_MAY_CHANGE and getattr(a, k, None) is not None}
    asked = TrainConfig.from_dict({**cfg.to_dict(), **given}, "the options")  # the options' values, normalised
    changed = [f"--{k.replace('_', '-')} {getattr(asked, k)} (the run's: {getattr(cfg, k)})"
               for k in given if getattr(asked, k) != getattr(cfg, k)]
    if changed:
        raise InputError(f"--resume continues the run with its own settings ({path}); these options differ from "
                         f"them: {', '.join(changed)}. Drop them, or start a new run from its settings with "
                         f"--config {path} and another --out")


def train_config(a: argparse.Namespace) -> TrainConfig:
    """The TrainConfig ``train``'s options describe: the preset's values (or ``--config``'s), then
    every option given on the command line."""
    given = {k: getattr(a, k) for k in _TRAIN_FIELDS if getattr(a, k, None) is not None}
    if a.config:
        base = _read_run_config(Path(a.config)).to_dict()
        if "preset" in given and given["preset"] != base["preset"]:
            raise InputError(f"--preset {given['preset']}: --config {a.config} is a {base['preset']} run; "
                             f"give the options that should differ instead")
        cfg = TrainConfig.from_dict({**base, **given, "data": a.data, "out": a.out}, "the options")
        validate(cfg)
        return cfg
    return make_config(given.pop("preset", "paper"), data=a.data, out=a.out, **{"device": "auto", **given})


def cmd_train(a: argparse.Namespace) -> int:
    if not Path(a.data).is_dir():
        raise InputError(f"{a.data}: no such dataset folder")
    if a.out and Path(a.out).exists() and not Path(a.out).is_dir():
        raise InputError(f"--out {a.out}: exists and is not a folder")
    if a.resume and a.out and (Path(a.out) / "config.json").is_file():
        # Resume with the run's own settings; only the epoch budget and the device may change. The
        # run is the folder named here, wherever it was copied or moved: its recorded ``out`` is
        # only a record.
        path = Path(a.out) / "config.json"
        cfg = _read_run_config(path)
        if Path(a.data).resolve() != Path(cfg.data).resolve():
            raise InputError(f"--data {a.data}: the run in {a.out} was trained on {cfg.data}; resume with that dataset")
        _refuse_changed_settings(a, cfg, path)
        cfg.out = a.out
        cfg.epochs = a.epochs or cfg.epochs
        cfg.device = a.device or cfg.device
        cfg.tensorboard = cfg.tensorboard if a.tensorboard is None else a.tensorboard
        validate(cfg)
        run_dir = train(cfg, resume=True)
        print(f"run folder: {run_dir}")
        return 0
    manifest = Path(a.data) / "manifest.json"
    if manifest.is_file() and (a.split_level is None or a.split_seed is None):
        # A prepared store: split as prepare recorded, unless the options say otherwise.

        man = open_store(a.data).manifest
        a.split_level = a.split_level or man.get("split_level")
        a.split_seed = man.get("split_seed") if a.split_seed is None else a.split_seed
    cfg = train_config(a)
    device = resolve_device(cfg.device)  # an unusable --device fails here with its name, not mid-training
    print(f"device: {device}" + (" (--device auto)" if cfg.device == "auto" else ""), flush=True)
    run_dir = train(cfg, resume=a.resume)

    if dist_env()[0] != 0:
        return 0  # torchrun: rank 0 reports
    print(f"run folder: {run_dir}")
    summary = run_dir / "summary.json"
    if summary.exists():
        print(format_table(json.loads(summary.read_text())))
    return 0


def cmd_prepare(a: argparse.Namespace) -> int:
    proto = Protocol(a.format or "auto", a.labels, a.channels, 2 if a.axis is None else a.axis, bool(a.keep_empty),
                     a.modality or "auto", a.ct_window or DEFAULT_CT_WINDOW, a.image_size)
    if not 8 <= a.image_size <= MAX_STORE_SIZE:
        raise InputError(f"--image-size must be in 8..{MAX_STORE_SIZE}, got {a.image_size}")
    if a.split_seed is not None and a.split_seed < 0:
        raise InputError(f"--split-seed must be >= 0, got {a.split_seed}")
    out = prepare(a.raw, a.out, proto, a.split_level or "patient", a.split_seed or 0, progress=True)
    man = open_store(out).manifest
    counts = {s: sum(1 for r in man["slices"] if r["split"] == s) for s in ("train", "val", "test")}
    print(f"prepared {man['n_slices']} slices from {len(man['cases'])} {man['format']} cases "
          f"({man['in_channels']} channel(s), {man['image_size']}x{man['image_size']}, {man['settings']['modality']}; "
          f"split {counts['train']}/{counts['val']}/{counts['test']} by {man['split_level']}) into {out}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    written = predict_files(a.checkpoint, a.inputs, a.out, save_steps=a.save_steps, device=a.device,
                            batch_size=a.batch_size, overwrite=a.overwrite, skip_existing=a.skip_existing,
                            save_prob=a.save_prob)
    kept = " (finished ones kept)" if a.skip_existing else ""
    print(f"{len(written)} masks in {a.out}{kept}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    if a.csv and Path(a.csv).suffix.lower() != ".csv":
        # The JSON goes beside it with the suffix swapped: any other name would be overwritten.
        raise InputError(f"--csv {a.csv}: the file name must end in .csv")
    if a.checkpoint:
        if a.pred or a.gt or not a.data:
            raise InputError("evaluate: give --checkpoint with --data (and optionally --split), not --pred/--gt")
        result = evaluate_checkpoint(a.checkpoint, a.data, a.split, device=a.device, progress=not a.json)
        if not result["n"]:
            raise InputError(f"--split {a.split}: no images in that split of {a.data}")
    else:
        if not (a.pred and a.gt):
            raise InputError("evaluate: give --pred DIR --gt DIR, or --checkpoint CKPT --data DIR")
        result = evaluate_folders(a.pred, a.gt)
    if a.csv:
        write_result(result, Path(a.csv).with_suffix(".json"), a.csv)
    if a.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
        if result.get("ground_truth") == "store":
            print(f"prepared store: the store's masks mapped back to each slice's original size "
                  f"(HD95 in {result['hd95_unit']}); no per-volume metrics")
        if result.get("volume_mean"):
            vm = result["volume_mean"]
            print(f"per volume (3-D, n={len(result['per_volume'])}): "
                  + "  ".join(f"{k} {vm[k]:.4f}" for k in vm) + "  (HD95 in mm)")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    if a.in_channels < 1:
        raise InputError(f"--in-channels must be >= 1, got {a.in_channels}")
    if a.preset not in PRESETS:
        raise InputError(f"--preset {a.preset}: unknown preset; choose one of {sorted(PRESETS)}")
    if a.model != "pixeldrl":
        check_model(a.model)
        counts = parameter_counts(a.model, a.in_channels)
        if a.json:
            print(json.dumps({"model": a.model, "parameters": counts}))
        else:
            print(f"{a.model} (in_channels {a.in_channels})")
            for k, v in counts.items():
                print(f"  {k:<14} {v:>12,d}")
        return 0
    cfg = net_config(a.preset, in_channels=a.in_channels, use_sam=not a.no_sam, use_dilation=not a.no_dilation)
    counts = count_parameters(PixelDRLNet(cfg))
    if a.json:
        print(json.dumps({"model": "pixeldrl", "preset": a.preset, "parameters": counts}))
    else:
        print(f"PixelDRL-MG, preset {a.preset}" + (" (no SAM)" if a.no_sam else "") + (" (no DC)" if a.no_dilation else ""))
        for k, v in counts.items():
            print(f"  {k:<8} {v:>12,d}")
    return 0


def method_rates(text: str) -> dict[str, float]:
    """``--method-lr``'s ``METHOD=LR,...`` as a dict; InputError naming the entry that is not one."""
    rates = {}
    for entry in filter(None, text.split(",")):
        method, _, value = entry.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if method not in MODELS or not (math.isfinite(rate) and rate > 0):
            raise InputError(f"--method-lr {text}: {entry!r} is not METHOD=RATE with a method of "
                             f"{', '.join(MODELS)} and a rate > 0")
        rates[method] = rate
    return rates


def reproduce_settings(a: argparse.Namespace) -> Settings:
    """The :class:`Settings` of parsed ``reproduce`` options."""
    try:
        shots = tuple(int(k) for k in a.shots.split(","))
    except ValueError:
        raise InputError(f"--shots {a.shots}: expected comma-separated integers, e.g. 50,100") from None
    return Settings(data=a.data, out=a.out, epochs=a.epochs, seeds=a.seeds, preset=a.preset, image_size=a.image_size,
                    batch_size=a.batch_size, lr=a.lr, method_lr=method_rates(a.method_lr), t_max=a.t_max,
                    coarse_epochs=a.coarse_epochs, coarse_mode=a.coarse_mode, zoom_out=a.zoom_out,
                    grad_clip=a.grad_clip, device=a.device, shots=shots,
                    models=tuple(m for m in a.models.split(",") if m), progress=sys.stderr.isatty())


def cmd_reproduce(a: argparse.Namespace) -> int:
    s = reproduce_settings(a)
    exp_dir = reproduce(a.experiment, s)
    print((exp_dir / "results.md").read_text())
    files = [exp_dir / f for f in ("results.md", "results.csv", "bars.png", "comparison.png")]
    print("results: " + ", ".join(str(f) for f in files if f.exists()))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    path = export_checkpoint(a.checkpoint, a.out, a.format)
    print(f"wrote {path} and {path.name}.json (inputs, outputs, the episode loop, the input preparation)")
    return 0


def cmd_view(a: argparse.Namespace) -> int:
    path = view_folder(a.pred, a.out, images=a.images, gt=a.gt)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB): open it in any browser")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    if a.seed < 0 or (a.epochs is not None and a.epochs < 1):
        raise InputError(f"--seed must be >= 0 and --epochs >= 1, got {a.seed} and {a.epochs}")
    run_demo(a.out, epochs=a.epochs, device=a.device, seed=a.seed)
    return 0


EXAMPLES = {
    "train": "pixeldrl train --data slices/ --preset small --image-size 128 --epochs 20 --out runs/mine",
    "prepare": "pixeldrl prepare Task02_Heart --out prepared/heart --image-size 320",
    "predict": "pixeldrl predict --checkpoint runs/mine/checkpoint_best.pt new_slices/ --out predictions/",
    "evaluate": "pixeldrl evaluate --pred predictions/ --gt masks/ --csv scores.csv",
    "info": "pixeldrl info --preset paper",
    "reproduce": "pixeldrl reproduce --data prepared/heart --experiment table2 --seeds 3",
    "demo": "pixeldrl demo --out runs/demo",
    "export": "pixeldrl export --checkpoint runs/mine/checkpoint_best.pt --format onnx runs/mine/pixeldrl.onnx",
    "view": "pixeldrl view predictions/ --images new_slices/ --gt masks/ --out view.html",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixeldrl", description="PixelDRL-MG: pixel-level deep RL segmentation")
    parser.add_argument("--version", action="version", version=f"pixeldrl {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true",
                        help="no progress bars (they are also off when stderr is not a terminal)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser

    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        return add_parser(name, parents=[common], epilog=f"example:\n  {EXAMPLES[name]}",
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    sub.add_parser = add

    p = sub.add_parser("train", help="train PixelDRL-MG (PA3C) or a baseline (--model)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("prepare", help="convert a raw dataset once into a memory-mappable slice store")
    p.add_argument("raw", metavar="RAW_DIR", help="raw dataset (MSD, nnU-Net, LGG or NIfTI pairs)")
    p.add_argument("--out", required=True, help="new folder for the store (never overwritten)")
    p.add_argument("--image-size", type=int, default=256,
                   help="in-plane size of the stored slices (default 256; the paper: 320 Cardiac, 256 Brain)")
    _add_protocol_args(p, prepared_ok=False)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("predict", help="segment 2-D images or NIfTI volumes with a trained checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of pixeldrl train (e.g. RUN/checkpoint_best.pt)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files or folders (png, tif, tiff), NIfTI volumes (.nii, .nii.gz) or folders of them")
    p.add_argument("--out", required=True, help="folder for the masks (same file names as the inputs)")
    p.add_argument("--save-steps", action="store_true",
                   help="also write the mask after each step (steps/: a figure per 2-D image, a 4-D NIfTI per "
                        "volume) and removal/NAME: the step each pixel was set to zero (0 = kept)")
    p.add_argument("--save-prob", action="store_true",
                   help="also write prob/NAME: the policy's keep-probability π(keep) at the step that decided "
                        "each pixel (float32 TIFF for 2-D, NIfTI for volumes)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8, help="slices segmented together (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace masks already in --out")
    p.add_argument("--skip-existing", action="store_true",
                   help="keep the masks already in --out and predict the rest (continue an interrupted run)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="DICE, PPV, SEN, IoU, BIoU, HD95 per image and mean")
    p.add_argument("--pred", help="folder of predicted masks")
    p.add_argument("--gt", help="folder of ground-truth masks")
    p.add_argument("--checkpoint", help="evaluate this checkpoint on --data instead")
    p.add_argument("--data", help="dataset folder for --checkpoint")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--csv", help="also write the per-image table to this CSV (and the JSON beside it)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="parameter counts, total and per component")
    p.add_argument("--model", default="pixeldrl", help="pixeldrl, pixelrl, unet, attention-unet, unet++, swin-unetr")
    p.add_argument("--in-channels", type=int, default=1, help="input channels (default 1)")
    p.add_argument("--preset", default="paper", help="paper (default), medium or small")
    p.add_argument("--no-sam", action="store_true", help="without the self-attention module")
    p.add_argument("--no-dilation", action="store_true", help="without dilated convolutions")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("reproduce", help="the paper's experiments: Tables 2, 3, 4 and robustness")
    p.add_argument("--data", required=True, help="dataset folder (as for train)")
    p.add_argument("--experiment", required=True, help="table2, table3, table4 or robustness")
    p.add_argument("--epochs", type=int, help="epochs of every run (preset default)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row (default 3): mean ± std")
    p.add_argument("--out", default="", help="results and run folders (default runs/reproduce/DATASET)")
    p.add_argument("--preset", default="paper", help="PixelDRL-MG preset and the shared training budget")
    p.add_argument("--image-size", type=int,
                   help="input side of every model (default: follows the data: its largest in-plane side rounded "
                        "up to a multiple of 32, at least 64, at most the preset's size; printed)")
    p.add_argument("--batch-size", type=int, help="images per update of every model (preset default)")
    p.add_argument("--lr", type=float, help="Adam learning rate of every model (preset default)")
    p.add_argument("--method-lr", default="",
                   help="Adam learning rate per method, e.g. pixeldrl=0.002,swin-unetr=0.002: each method at the "
                        "rate its validation picks (methods not named: --lr)")
    p.add_argument("--t-max", type=int, help="training episode length of PixelDRL-MG and PixelRL (preset default)")
    p.add_argument("--coarse-epochs", type=int,
                   help="first epochs of every run on slices at half the side (progressive resizing; default 0)")
    p.add_argument("--coarse-mode", choices=["shrink", "crop"],
                   help="the coarse epochs' slices: shrunk whole (default) or random windows at full resolution")
    p.add_argument("--zoom-out", type=float,
                   help="scale augmentation of every run: slices shrunk by up to this fraction (default 0)")
    p.add_argument("--grad-clip", type=float, help="gradient-norm clip of every run (preset default, 5)")
    p.add_argument("--shots", default="50,100", help="table4: training images per k-shot setting")
    p.add_argument("--models", default="",
                   help="train and show only these methods' rows, e.g. pixeldrl,unet (default: every row; "
                        "results.md names the rows left out)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("export", help="the checkpoint's one-step network as TorchScript or ONNX, for other runtimes")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of pixeldrl train")
    p.add_argument("--format", default="torchscript", choices=["torchscript", "onnx"],
                   help="torchscript (default) or onnx (needs the onnx package)")
    p.add_argument("out", metavar="OUT", help="the file to write; OUT.json beside it describes how to run it")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("view", help="one self-contained HTML page to scrub through a result, slice by slice and step by step")
    p.add_argument("pred", metavar="PRED_DIR", help="a folder written by pixeldrl predict --save-steps [--save-prob]")
    p.add_argument("--images", help="the input images or volumes (matched by file name) to show under the masks")
    p.add_argument("--gt", help="ground-truth masks (matched by file name): outline and per-slice DICE")
    p.add_argument("--out", default="view.html", help="the page to write (default view.html)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("demo", help="train and evaluate on slices of the MNI152 template (white matter)")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--epochs", type=int,
                   help="override the demo's epoch budget (150; a quarter of them at half the side)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and actions (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_demo)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, batch schedulers), raised where the program is so that every ``finally`` and
    atomic writer cleans up exactly as for Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


class _SignalsDelivered:
    """SIGTERM raises :class:`Terminated`, and a signal's exception that Python drops is raised again.

    Python runs a signal handler between bytecodes, wherever the main thread is; when that is inside a
    ``__del__`` or a weakref callback (nibabel's and torch's objects have them), the exception is
    "ignored" and the program would carry on as if no signal came, finishing its files and exiting 0.
    The unraisable hook catches such a dropped ``KeyboardInterrupt``/``Terminated`` and re-raises it
    10 ms later from a SIGALRM timer, at whatever the program is doing then. No library offers this.
    """

    def __enter__(self):
        # signals can only be handled in the main thread; Windows has no SIGALRM timer to re-deliver with
        self.active = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if self.active:
            self.previous = {s: signal.signal(s, h) for s, h in
                             ((signal.SIGTERM, _terminate), (signal.SIGALRM, self._redeliver))}
            self.previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        self.dropped: type[BaseException] | None = None
        return self

    def _unraisable(self, hook_args):
        if isinstance(hook_args.exc_value, KeyboardInterrupt):  # Ctrl-C or Terminated
            self.dropped = type(hook_args.exc_value)
            signal.setitimer(signal.ITIMER_REAL, 0.01)
        else:
            self.previous_hook(hook_args)

    def _redeliver(self, signum, frame):
        if self.dropped is not None:
            raise self.dropped()

    def __exit__(self, *exc):
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.unraisablehook = self.previous_hook
            for s, h in self.previous.items():
                signal.signal(s, h)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    with _SignalsDelivered():
        return _run(args)


def _run(args) -> int:
    try:
        return args.func(args)
    except InputError as e:
        print(f"pixeldrl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only or forbidden destination, ...: the file and the OS's words
        print(f"pixeldrl {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"pixeldrl {args.command}: terminated (SIGTERM); unfinished files removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"pixeldrl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
