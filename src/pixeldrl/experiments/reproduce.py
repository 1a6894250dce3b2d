"""The paper's experiments, one command each: Tables 2, 3, 4 and test-time robustness.

    pixeldrl reproduce --data DATA --experiment table2 [--epochs N] [--seeds K] [--out OUT]

* ``table2`` — PixelDRL-MG against every baseline (``models.py``): PixelRL and MONAI's U-Net,
  Attention U-Net, UNet++ and Swin-UNETR.
* ``table3`` — the ablation: PA3C alone (no SAM, no dilation), + SAM, + DC, + SAM + DC.
* ``table4`` — k-shot training (k = 50 and 100 by default, ``--shots``) for PixelDRL-MG and the
  U-Net baselines: k training slices drawn at random from the training split (``train --k-shot``'s
  draw, seeded by the split seed: the same k slices for every method and seed); validation and test
  splits unchanged.
* ``robustness`` — every ``table2`` model evaluated on the test split corrupted at test time
  (``corruptions.py``: Gaussian noise, bias field, blur), next to the clean score.

Every step reads the data as training does (``data.dataset.load_dataset``), so 2-D folders, MSD,
nnU-Net, LGG, NIfTI pairs and prepared stores all work. Resolution of the numbers:

* Tables 2, 3, 4: each run's ``summary.json`` (``evaluate_checkpoint``): the test split at the
  images' original size (HD95 in pixels for 2-D folders, in mm for volumes).
* ``robustness`` (every condition, ``clean`` included) and ``comparison.png``: the test split's
  slices at the network's input size S × S (``--image-size``), segmented greedily
  (``rl.pa3c.segment``); HD95 in network pixels. So the robustness table's ``clean`` column can
  differ a little from Table 2, but its conditions are comparable with each other.

Input size: ``--image-size S`` is always used. Without it the size follows the data
(:func:`auto_image_size`): the largest in-plane side of the data, rounded up to a multiple of 32
and at least 64 (what Swin-UNETR needs; the U-Nets need a multiple of 16, PixelDRL-MG of 8, so one
size serves every experiment and runs stay shared between them), at most the preset's size (paper
256, medium and small 128). The choice is printed and written into ``results.md``.

Every method shares the data pipeline, splits, input size, epoch budget, batch size, optimiser
schedule, augmentation and gradient clip (``--lr``, ``--coarse-epochs``, ``--coarse-mode``,
``--zoom-out``, ``--grad-clip``), checkpoint selection (best validation Dice) and metrics; only the
model and its loss differ (``--t-max``: the PA3C methods' training episodes), and each method's Adam rate
where ``--method-lr`` gives one (a fair table gives each method the rate its validation picks,
``benchmarks/reproduce_lr.py``).
Layout under ``--out``::

    runs/ROW/eE-lrLR-seedS/   one run folder per (method, setting, rate, seed) — train.py's files, plus
                              robustness/CONDITION.json (clean.json too) for the robustness experiment;
                              ROW of a PA3C method names the preset (pixeldrl-medium): presets and
                              rates in one --out share what they can (the U-Net runs)
    data/k50-seedS/           the k-shot data set (symlinks into --data)
    EXPERIMENT/results.md     mean ± std over seeds of DICE, PPV, SEN, IoU, BIoU, HD95 and the
    EXPERIMENT/results.csv    parameter count per row; best value per column in bold
    EXPERIMENT/bars.png       DICE and BIoU per row
    EXPERIMENT/comparison.png the same test slices segmented by each method (seed 0)

Runs are shared between experiments (``table3``'s full model is ``table2``'s PixelDRL-MG) and a
finished run (``summary.json`` present) is skipped, so an interrupted reproduce resumes where it
stopped (an unfinished run continues from its ``checkpoint_latest.pt``). A run folder whose stored
settings differ from the requested ones is refused rather than silently reused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixeldrl.checkpoint import agent_from_checkpoint, resolve_device
from pixeldrl.config import LEGACY_DEFAULTS, MODELS, PA3C_MODELS, SUPERVISED_MODELS, TrainConfig, make_config
from pixeldrl.data.dataset import largest_in_plane, load_dataset
from pixeldrl.errors import InputError
from pixeldrl.evaluate import empty_result, write_result
from pixeldrl.experiments.corruptions import CORRUPTIONS, Corruption, corrupt_batch
from pixeldrl.fileio import atomic_write, write_csv
from pixeldrl.metrics import METRIC_NAMES, dice, evaluate_pairs
from pixeldrl.models import parameter_counts
from pixeldrl.predict import segment_slices
from pixeldrl.report import _save, overlay_rgb, plt
from pixeldrl.training.train import train


EXPERIMENTS = ("table2", "table3", "table4", "robustness")
LABELS = {"pixeldrl": "PixelDRL-MG", "pixelrl": "PixelRL", "unet": "U-Net", "attention-unet": "Attention U-Net",
          "unet++": "UNet++", "swin-unetr": "Swin-UNETR"}
TABLE2_MODELS = ("pixeldrl", "pixelrl", "unet", "attention-unet", "unet++", "swin-unetr")
LOWER_IS_BETTER = {"HD95", "parameters"}
CLEAN = "clean"
# Without --image-size: the data's largest in-plane side rounded up to a multiple of SIZE_MULTIPLE,
# at least MIN_SIZE (Swin-UNETR's needs, the strictest of the methods), at most the preset's size.
SIZE_MULTIPLE = 32
MIN_SIZE = 64
# Settings that must match for a finished run folder to be reused.
_RUN_KEYS = ("model", "use_sam", "use_dilation", "image_size", "epochs", "batch_size", "lr", "seed",
             "split_seed", "lr_step", "lr_decay", "coarse_epochs", "coarse_mode", "zoom_out", "grad_clip")
# ... and, for the PA3C methods, their network and the recipe's settings that a preset sets (the U-Nets
# ignore them, so one U-Net run serves every preset).
_PA3C_RUN_KEYS = ("preset", "t_max", "ema_decay")


@dataclass(frozen=True)
class Row:
    """One method in one setting: a row of a results table."""

    model: str
    label: str
    use_sam: bool = True
    use_dilation: bool = True
    k_shot: int = 0
    """0: the whole training split; k: k training images drawn at random."""

    @property
    def key(self) -> str:
        """Folder name under ``runs/``: what the run is."""
        return (self.model + ("" if self.use_sam else "-nosam") + ("" if self.use_dilation else "-nodc")
                + (f"-k{self.k_shot}" if self.k_shot else ""))

    @property
    def setting(self) -> str:
        return f"{self.k_shot}-shot" if self.k_shot else "full"


@dataclass
class Settings:
    """What ``pixeldrl reproduce`` was asked for (CLI options)."""

    data: str
    out: str = ""
    epochs: int | None = None
    seeds: int = 3
    preset: str = "paper"
    image_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    """Adam learning rate of every run, unless ``method_lr`` names the method (None: the preset's)."""
    method_lr: dict[str, float] = field(default_factory=dict)
    """Adam learning rate per method (``--method-lr pixeldrl=0.002,swin-unetr=0.002``): each method at the rate
    its validation picks (``benchmarks/reproduce_lr.py``); methods not named take ``lr``."""
    t_max: int | None = None
    """Training episode length of the PA3C methods, PixelDRL-MG and PixelRL (None: the preset's)."""
    coarse_epochs: int | None = None
    """First epochs of every run on slices shrunk to half the side (None: the preset's, none)."""
    coarse_mode: str | None = None
    """The coarse epochs' slices: ``shrink`` or ``crop`` (windows at full resolution; None: shrink)."""
    zoom_out: float | None = None
    """Scale augmentation of every run: slices shrunk by up to this fraction (None: the preset's, none)."""
    grad_clip: float | None = None
    """Gradient-norm clip of every run (None: the preset's, 5)."""
    models: tuple[str, ...] = ()
    """Methods whose rows are trained and tabulated (empty: every row of the experiment); a table limited
    this way says which methods it leaves out."""
    device: str = "cpu"
    shots: tuple[int, ...] = (50, 100)
    corruptions: tuple[Corruption, ...] = field(default=CORRUPTIONS)
    progress: bool = True


def experiment_rows(experiment: str, shots: tuple[int, ...] = (50, 100)) -> list[Row]:
    """The rows of an experiment's table, in table order."""
    if experiment in ("table2", "robustness"):
        return [Row(m, LABELS[m]) for m in TABLE2_MODELS]
    if experiment == "table3":
        return [Row("pixeldrl", "PA3C", use_sam=False, use_dilation=False),
                Row("pixeldrl", "PA3C + SAM", use_sam=True, use_dilation=False),
                Row("pixeldrl", "PA3C + DC", use_sam=False, use_dilation=True),
                Row("pixeldrl", "PA3C + SAM + DC", use_sam=True, use_dilation=True)]
    if experiment == "table4":
        return [Row(m, LABELS[m], k_shot=k) for k in shots for m in ("pixeldrl",) + SUPERVISED_MODELS]
    raise InputError(f"--experiment {experiment}: choose one of {', '.join(EXPERIMENTS)}")


def select_rows(rows: list[Row], models: tuple[str, ...], experiment: str) -> list[Row]:
    """The rows whose method is in ``models`` (all of them when it is empty), in table order."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise InputError(f"--models {','.join(models)}: unknown method {unknown[0]!r}; "
                         f"choose from {', '.join(MODELS)}")
    kept = [r for r in rows if not models or r.model in models]
    if not kept:
        raise InputError(f"--models {','.join(models)}: {experiment} has no row of these methods "
                         f"(its methods: {', '.join(dict.fromkeys(r.model for r in rows))})")
    return kept


# --------------------------------------------------------------------------- data and runs


def output_dir(s: Settings) -> Path:
    """``--out``, or ``runs/reproduce/DATASET`` when it is not given."""
    return Path(s.out) if s.out else Path("runs") / "reproduce" / Path(s.data).resolve().name


def run_config(s: Settings, row: Row, seed: int, out: Path) -> TrainConfig:
    """The TrainConfig of one (row, seed) run: the preset's budget with the method swapped in."""
    # k-shot rows: the protocol's own draw (``data.splits.k_shot_indices``, seeded by the split seed),
    # whatever the layout, so every method and seed trains on the same k slices.
    cfg = make_config(s.preset, model=row.model, data=s.data, epochs=s.epochs, image_size=s.image_size,
                      batch_size=s.batch_size, lr=s.method_lr.get(row.model, s.lr), t_max=s.t_max,
                      coarse_epochs=s.coarse_epochs, coarse_mode=s.coarse_mode, zoom_out=s.zoom_out,
                      grad_clip=s.grad_clip, device=s.device, seed=seed, use_sam=row.use_sam,
                      use_dilation=row.use_dilation, k_shot=row.k_shot)
    cfg.out = str(run_dir(out, row, cfg))
    return cfg


def run_dir(out: Path, row: Row, cfg: TrainConfig) -> Path:
    """``out/runs/ROW/eE-lrLR-seedS``, where a PA3C row's name also carries the preset (``pixeldrl-medium``):
    runs of two presets or two rates live side by side and share the rest (the U-Net runs).

    A run of the same preset and rate in ``out/runs/ROW/eE-seedS`` (how ``reproduce`` named them before
    presets and rates shared an ``--out``) is reused."""
    name = row.key + (f"-{cfg.preset}" if cfg.model in PA3C_MODELS else "")
    named = out / "runs" / name / f"e{cfg.epochs}-lr{cfg.lr:g}-seed{cfg.seed}"
    legacy = out / "runs" / row.key / f"e{cfg.epochs}-seed{cfg.seed}"
    if not named.exists() and (legacy / "config.json").is_file():
        stored = json.loads((legacy / "config.json").read_text())
        if stored.get("lr") == cfg.lr and (cfg.model not in PA3C_MODELS or stored.get("preset") == cfg.preset):
            return legacy
    return named


def is_complete(run: Path) -> bool:
    return (run / "summary.json").is_file() and (run / "checkpoint_best.pt").is_file()


def _check_same(cfg: TrainConfig, run: Path) -> None:
    stored = json.loads((run / "config.json").read_text())
    if Path(stored.get("data", "")).resolve() != Path(cfg.data).resolve():
        raise InputError(f"{run}: holds a run on {stored.get('data')}, not on {cfg.data}; use another --out")
    keys = _RUN_KEYS + (_PA3C_RUN_KEYS if cfg.model in PA3C_MODELS else ())
    stored = {**LEGACY_DEFAULTS, **stored}  # a run from before a field existed trained without it
    for k in keys:
        if k in stored and stored[k] != getattr(cfg, k):
            hint = f" or pass --image-size {stored[k]} to reuse it" if k == "image_size" else ""
            raise InputError(f"{run}: holds a run with {k}={stored[k]!r}, not {getattr(cfg, k)!r}; "
                             f"use another --out{hint}")


def ensure_run(cfg: TrainConfig, progress: bool = True) -> tuple[Path, str]:
    """Train the run unless it is finished; returns (run folder, "skipped" | "resumed" | "trained")."""
    run = Path(cfg.out)
    if (run / "config.json").is_file():
        _check_same(cfg, run)
    if is_complete(run):
        return run, "skipped"
    resume = (run / "checkpoint_latest.pt").is_file()
    train(cfg, resume=resume, progress=progress)
    return run, "resumed" if resume else "trained"


def auto_image_size(data: str | Path, preset: str) -> tuple[int, str]:
    """The input size when ``--image-size`` is not given, and why (one sentence).

    The data's largest in-plane side (:func:`pixeldrl.data.dataset.largest_in_plane`), rounded up
    to a multiple of ``SIZE_MULTIPLE`` and at least ``MIN_SIZE`` (Swin-UNETR's constraint, the
    strictest; one size for every experiment keeps runs shared), capped at the preset's image size.
    """
    cap = make_config(preset).image_size
    side = largest_in_plane(data)
    rounded = max(MIN_SIZE, -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE)
    size = min(rounded, cap)
    why = f"the data's largest in-plane side is {side}"
    if rounded != side:
        why += f", rounded up to {rounded}, a multiple of {SIZE_MULTIPLE} and at least {MIN_SIZE} as Swin-UNETR needs"
    if size < rounded:
        why += f", capped at the {preset} preset's {cap}"
    return size, why


def load_test_split(cfg: TrainConfig, data: str, progress: bool = False):
    """The test split of ``data`` at network size, read as training reads it (any layout).

    A copy of ``cfg`` with ``data`` and no k-shot draw (the test split does not depend on it).
    """
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "data": data, "k_shot": 0})
    return load_dataset(cfg, progress=progress)["test"]


def _resolution_tag(test) -> str:
    return f"network {test.size}x{test.size}"


def robustness_results(run: Path, test, corruptions, device: str = "cpu") -> dict[str, dict]:
    """Metrics of a finished run on the clean and on each corrupted test split, cached in the run.

    ``test`` is the test :class:`~pixeldrl.data.folder.SliceDataset` (:func:`load_test_split`). Every
    condition, ``clean`` included, is scored at the network size S × S against the network-size
    masks (HD95 in network pixels), and cached as ``robustness/CONDITION.json`` with a
    ``resolution`` entry; a cache of another resolution (an older pixeldrl's) is recomputed.
    """
    tag = _resolution_tag(test)
    conditions: list[Corruption | None] = [None, *corruptions]

    def path(c: Corruption | None) -> Path:
        return run / "robustness" / f"{c.name if c else CLEAN}.json"

    def cached(c: Corruption | None) -> bool:
        try:
            return json.loads(path(c).read_text()).get("resolution") == tag
        except (OSError, ValueError):
            return False

    todo = [c for c in conditions if not cached(c)]
    if todo:
        agent, cfg = agent_from_checkpoint(run / "checkpoint_best.pt", device)
        if cfg.image_size != test.size:
            raise InputError(f"{run}: trained at {cfg.image_size}×{cfg.image_size}, the test split is at "
                             f"{test.size}×{test.size}; use another --out")
        gts = test.masks.numpy() > 0.5
        for c in todo:
            if len(test):
                x = test.images if c is None else corrupt_batch(test.images, c, seed=0)
                preds = segment_slices(agent, x, cfg.infer_steps, device, batch_size=16)
                result = evaluate_pairs(list(preds), list(gts), test.names)
            else:  # no test split (a tiny data set): nothing to measure
                result = empty_result()
            result.update(resolution=tag, hd95_unit="network pixels")
            write_result(result, path(c))
    return {CLEAN if c is None else c.name: json.loads(path(c).read_text()) for c in conditions}


# --------------------------------------------------------------------------- tables


def _parameters(row: Row, cfg: TrainConfig, run: Path) -> int:
    """The row's parameter count at the input channels its run found in the data (its config.json)."""
    in_channels = json.loads((run / "config.json").read_text())["in_channels"]
    return parameter_counts(row.model, in_channels, cfg=cfg)["total"]


def summarize(rows: list[Row], runs: dict[Row, list[Path]], params: dict[Row, int],
              conditions: list[str] | None = None) -> list[dict]:
    """One record per (row, condition): mean and std over seeds of each metric, and the run folders.

    ``conditions`` None: the test split as trained (summary.json); else the robustness conditions
    (``robustness/CONDITION.json``, ``clean`` included: all at network size).
    The std is the sample standard deviation (ddof 1), NaN with one seed.
    """
    records = []
    for cond in conditions or [None]:
        for row in rows:
            means = []
            for run in runs[row]:
                path = run / "summary.json" if cond is None else run / "robustness" / f"{cond}.json"
                means.append(json.loads(path.read_text())["mean"])
            rec = {"method": row.label, "model": row.model, "setting": cond or row.setting,
                   "n_seeds": len(means), "parameters": params[row]}
            for m in METRIC_NAMES:
                vals = np.array([x[m] for x in means], dtype=float)
                rec[f"{m}_mean"] = float(vals.mean())
                rec[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            rec["runs"] = ";".join(str(r) for r in runs[row])
            records.append(rec)
    return records


CSV_FIELDS = (["method", "model", "setting", "n_seeds", "parameters"]
              + [f"{m}_{s}" for m in METRIC_NAMES for s in ("mean", "std")] + ["runs"])


def write_results_csv(records: list[dict], path: Path) -> None:
    write_csv(path, CSV_FIELDS, [{k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()} for r in records])


def _best(records: list[dict], col: str) -> float:
    vals = [r[col] for r in records if not math.isnan(r[col])]
    if not vals:
        return math.nan
    return min(vals) if col.split("_")[0] in LOWER_IS_BETTER else max(vals)


def markdown_table(records: list[dict]) -> str:
    """Rows grouped by setting; the best value of each column within a setting in bold."""
    head = ["method", "setting", "parameters", *METRIC_NAMES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    settings = list(dict.fromkeys(r["setting"] for r in records))
    for setting in settings:
        group = [r for r in records if r["setting"] == setting]
        best = {c: _best(group, c) for c in ["parameters"] + [f"{m}_mean" for m in METRIC_NAMES]}
        for r in group:
            p = f"{r['parameters']:,d}"
            cells = [r["method"], setting, f"**{p}**" if r["parameters"] == best["parameters"] and len(group) > 1 else p]
            for m in METRIC_NAMES:
                mean, std = r[f"{m}_mean"], r[f"{m}_std"]
                digits = 2 if m == "HD95" else 4
                text = f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")
                if len(group) > 1 and mean == best[f"{m}_mean"]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pivot_table(records: list[dict], metric: str = "DICE") -> str:
    """Methods × conditions for one metric (the robustness overview); best per condition in bold."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    conds = list(dict.fromkeys(r["setting"] for r in records))
    by = {(r["method"], r["setting"]): r for r in records}
    lines = ["| method | " + " | ".join(conds) + " |", "|---|" + "---:|" * len(conds)]
    best = {c: _best([by[(m, c)] for m in methods], f"{metric}_mean") for c in conds}
    for m in methods:
        cells = []
        for c in conds:
            v = by[(m, c)][f"{metric}_mean"]
            cells.append(f"**{v:.4f}**" if v == best[c] else f"{v:.4f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def bar_chart(records: list[dict], path: Path, title: str) -> Path:
    """DICE and BIoU per method, grouped by setting, with the std over seeds as error bars."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    settings = list(dict.fromkeys(r["setting"] for r in records))
    by = {(r["method"], r["setting"]): r for r in records}
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(settings) * len(methods) / 2 + 4), 3.8))
    width = 0.8 / len(methods)
    x = np.arange(len(settings))
    for ax, metric in zip(axes, ("DICE", "BIoU")):
        for i, m in enumerate(methods):
            vals = [by[(m, s)][f"{metric}_mean"] if (m, s) in by else math.nan for s in settings]
            errs = [by[(m, s)][f"{metric}_std"] if (m, s) in by else math.nan for s in settings]
            errs = [0.0 if math.isnan(e) else e for e in errs]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, yerr=errs, label=m, capsize=2)
        ax.set_xticks(x, settings, rotation=30 if len(settings) > 3 else 0, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def comparison_figure(rows: list[Row], runs: dict[Row, list[Path]], test, path: Path, n_slices: int = 4,
                      device: str = "cpu", corruption: Corruption | None = None) -> Path | None:
    """The same test slices (evenly spaced) segmented by each method's seed-0 run.

    ``test`` is the test :class:`~pixeldrl.data.folder.SliceDataset` (:func:`load_test_split`): slices
    at the network size, so every layout is drawn the same way. Columns: the image (first channel),
    then one column per method (prediction outline red, ground truth green, DICE at network size in
    the title). With ``corruption`` the slices are corrupted first (:func:`corrupt_batch`). No
    figure (None) when the test split is empty.
    """
    if not len(test):
        return None
    pick = list(dict.fromkeys(np.linspace(0, len(test) - 1, min(n_slices, len(test))).round().astype(int).tolist()))
    images = test.images[pick].numpy()  # (k, C, S, S)
    if corruption is not None:
        images = corrupt_batch(images, corruption, seed=0)
    gts = test.masks[pick].numpy() > 0.5
    names = [test.names[i] for i in pick]
    fig, axes = plt.subplots(len(pick), len(rows) + 1, figsize=(2.2 * (len(rows) + 1), 2.3 * len(pick)),
                             squeeze=False)
    for r, name in enumerate(names):
        axes[r, 0].imshow(overlay_rgb(images[r, 0], np.zeros_like(gts[r]), gts[r]))
        axes[r, 0].set_title(name, fontsize=7)
    for c, row in enumerate(rows, start=1):
        agent, cfg = agent_from_checkpoint(runs[row][0] / "checkpoint_best.pt", device)
        preds = segment_slices(agent, images, cfg.infer_steps, device, batch_size=16)
        for r, (im, gt, pred) in enumerate(zip(images, gts, preds)):
            axes[r, c].imshow(overlay_rgb(im[0], pred, gt))
            axes[r, c].set_title(f"{row.label} {row.setting if row.k_shot else ''}\nDICE {dice(pred, gt):.3f}",
                                 fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    what = f" ({corruption.name})" if corruption else ""
    fig.suptitle(f"test slices{what} at {test.size}×{test.size}: prediction (red) vs ground truth (green)",
                 fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------- the command


def reproduce(experiment: str, s: Settings) -> Path:
    """Run (or resume) one experiment and write its results; returns ``OUT/EXPERIMENT``."""
    if experiment not in EXPERIMENTS:
        raise InputError(f"--experiment {experiment}: choose one of {', '.join(EXPERIMENTS)}")
    if not Path(s.data).is_dir():
        raise InputError(f"--data {s.data}: no such dataset folder")
    if s.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {s.seeds}")
    if any(k < 1 for k in s.shots):
        raise InputError(f"--shots must be positive, got {','.join(map(str, s.shots))}")
    resolve_device(s.device)
    out = output_dir(s)
    all_rows = experiment_rows(experiment, tuple(s.shots))
    rows = select_rows(all_rows, s.models, experiment)
    left_out = list(dict.fromkeys(r.label for r in all_rows if r not in rows))
    if s.image_size is None:
        size, why = auto_image_size(s.data, s.preset)
        size_note = f"chosen from the data: {why}; --image-size sets it"
        print(f"[{experiment}] NOTE: no --image-size given: every model sees {size}×{size} inputs, because "
              f"{why}. Pass --image-size to choose another size.", flush=True)
        s = dataclasses.replace(s, image_size=size)
    else:
        size_note = "from --image-size"
    configs = {row: [run_config(s, row, seed, out) for seed in range(s.seeds)] for row in rows}
    t0 = time.perf_counter()
    runs: dict[Row, list[Path]] = {}
    for row in rows:
        runs[row] = []
        for cfg in configs[row]:
            run, what = ensure_run(cfg, s.progress)
            print(f"[{experiment}] {row.label} {row.setting} seed {cfg.seed}: {what} ({run})", flush=True)
            runs[row].append(run)
    params = {row: _parameters(row, configs[row][0], runs[row][0]) for row in rows}
    # The test split as training reads it (any layout), at network size: for the figure and robustness.
    test = load_test_split(configs[rows[0]][0], s.data, progress=s.progress)

    exp_dir = out / experiment
    exp_dir.mkdir(parents=True, exist_ok=True)
    conditions = None
    if experiment == "robustness":
        for row in rows:
            for run in runs[row]:
                robustness_results(run, test, s.corruptions, s.device)
        conditions = [CLEAN] + [c.name for c in s.corruptions]
    records = summarize(rows, runs, params, conditions)
    write_results_csv(records, exp_dir / "results.csv")
    title = {"table2": "Table 2: PixelDRL-MG against the baselines",
             "table3": "Table 3: ablation of PixelDRL-MG's network",
             "table4": f"Table 4: {' and '.join(f'{k}-shot' for k in s.shots)} training",
             "robustness": "Robustness: test images corrupted at test time"}[experiment]
    bar_chart(records, exp_dir / "bars.png", title)
    corruption = None
    if experiment == "robustness" and s.corruptions:
        noise = [c for c in s.corruptions if c.kind == "noise"]
        corruption = noise[len(noise) // 2] if noise else s.corruptions[0]
    fig_rows = rows if experiment != "table4" else [r for r in rows if r.k_shot == s.shots[0]]
    figure = comparison_figure(fig_rows, runs, test, exp_dir / "comparison.png", device=s.device,
                               corruption=corruption)
    cfg0 = configs[rows[0]][0]
    by_lr: dict[float, list[str]] = {}  # rate -> the rows' labels trained at it (a label once)
    for row in rows:
        labels = by_lr.setdefault(configs[row][0].lr, [])
        if row.label not in labels:
            labels.append(row.label)
    lr_note = f"{cfg0.lr}" if len(by_lr) == 1 else " and ".join(f"{lr} ({', '.join(ls)})" for lr, ls in by_lr.items())
    hd95 = json.loads((runs[rows[0]][0] / "summary.json").read_text()).get("hd95_unit", "pixels")
    where = (f"metrics on the test split's {len(test)} slices at the network's {cfg0.image_size}×{cfg0.image_size} "
             f"input size, every condition including clean (HD95 in network pixels; Table 2's numbers are at the "
             f"original size, so its clean scores can differ a little)" if conditions else
             f"metrics on the test split at the images' original size (HD95 in {hd95})")
    lines = [f"# {title}", "",
             f"Data `{s.data}`; {s.seeds} seed(s) (mean ± sample std over seeds); {cfg0.epochs} epochs, batch "
             f"{cfg0.batch_size}, {cfg0.image_size}×{cfg0.image_size} input ({size_note}), Adam lr {lr_note} "
             f"×{cfg0.lr_decay} every {cfg0.lr_step} epochs, gradients clipped at norm {cfg0.grad_clip:g}; "
             f"PixelDRL-MG preset `{s.preset}`, training episodes of "
             f"{cfg0.t_max} steps for the PA3C methods"
             + (f"; the first {cfg0.coarse_epochs} epochs at {cfg0.coarse_side()}×{cfg0.coarse_side()}"
                + (" (random windows of the slices)" if cfg0.coarse_mode == "crop" else " (slices shrunk)")
                if cfg0.coarse_epochs else "")
             + (f"; slices shrunk by up to {cfg0.zoom_out:g} at random in training" if cfg0.zoom_out else "")
             + "; best validation Dice "
             f"picks the checkpoint; {where}."
             + (f" Rows limited by --models: {', '.join(left_out)} not trained or shown." if left_out else "")
             + " Best value per column (per setting) in bold; for HD95 and parameters "
             f"lower is better.", "",
             ]
    if conditions:
        lines += ["DICE per test-time corruption, applied to each normalised network-size test slice and clipped "
                  "to [0, 1] (noise-S: Gaussian noise of S × the slice's 0.5–99.5 percentile range; bias-C: bias "
                  "field, coefficients in [−C, C]; blur-σ: Gaussian blur, σ network pixels):", "",
                  pivot_table(records, "DICE"), "", "BIoU per corruption:", "", pivot_table(records, "BIoU"), "",
                  "All metrics:", ""]
    lines += [markdown_table(records), ""]
    lines += ["Figures: `bars.png` (DICE and BIoU)"
              + (f", `comparison.png` (the same test slices by each method at {test.size}×{test.size}"
                 + (f", corrupted with {corruption.name}" if corruption else "") + ")" if figure else
                 " (no `comparison.png`: the test split is empty)") + ".", "",
              f"Run folders: `{out / 'runs'}`. Wall time of this call: {time.perf_counter() - t0:.0f} s "
              "(finished runs are skipped)."]
    with atomic_write(exp_dir / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return exp_dir
