"""Training configuration: one flat dataclass, a docstring per field, and the two presets.

``paper`` follows the hyper-parameters the paper gives (docs/METHOD.md) (Adam 1e-3 ×0.9 every 25 epochs, 200 epochs,
batch 2, γ 0.95, t_max 10); ``small`` is a narrow network with a CPU-sized budget for demos and
tests. Values marked "chosen" are ours where the paper is silent.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

from pixeldrl.errors import InputError, dataclass_from_dict
from pixeldrl.nets.pixeldrl_mg import PRESETS, NetConfig, net_config

# Every trainable method: PixelDRL-MG, the PixelRL baseline (both PA3C) and MONAI's U-Net variants
# trained with Dice + cross-entropy (``nets/baselines.py``, ``training/supervised.py``).
PA3C_MODELS = ("pixeldrl", "pixelrl")
SUPERVISED_MODELS = ("unet", "attention-unet", "unet++", "swin-unetr")
MODELS = PA3C_MODELS + SUPERVISED_MODELS


@dataclass
class TrainConfig:
    # --- data
    data: str = ""
    """Dataset folder: 2-D folder, MSD, nnU-Net, Kaggle LGG, NIfTI pairs (``data/layouts.py``) or a prepared store."""
    image_size: int = 256
    """Side of the square the network sees; images are padded to square and resized to it."""
    split_seed: int = 0
    """Seed of the 70/10/20 split (and of the k-shot draw) when the data has no split folders."""
    format: str = "auto"
    """Dataset layout: auto (detected), msd, nnunet, lgg, paired, folder or prepared (``data/layouts.py``)."""
    source_format: str = ""
    """The raw data's layout, resolved by ``train`` (also for a prepared store); ``predict`` reads it."""
    labels: list[int] | None = None
    """Label values that form the binary target (None: every nonzero label)."""
    channels: list[int] | None = None
    """Input channels kept, by index (None: all)."""
    axis: int = 2
    """Voxel axis (0, 1, 2) volumes are sliced along; 2 = the third, axial in MSD / the slice order in LGG."""
    keep_empty: bool = False
    """Keep slices without foreground (the paper removes them)."""
    modality: str = "auto"
    """Volume intensities: ``mri`` (percentile clip + z-score onto [0, 1]), ``ct`` (window), auto (dataset.json)."""
    ct_window: tuple[float, float] = (-160.0, 240.0)
    """CT window in HU mapped onto [0, 1] (chosen: soft tissue, level 40 width 400)."""
    split_level: str = "patient"
    """Split volumes by ``patient`` (chosen default, no leakage) or by ``slice`` (the paper's protocol as written)."""
    k_shot: int = 0
    """Keep this many training slices drawn at random (Table 4: 50, 100); 0 keeps all."""
    # --- model
    model: str = "pixeldrl"
    """Method: ``pixeldrl`` (PixelDRL-MG), ``pixelrl`` or a U-Net baseline (see ``MODELS``)."""
    preset: str = "paper"
    """Network preset: ``paper`` (7.14 M parameters), ``medium`` (1.15 M) or ``small`` (0.29 M)."""
    use_sam: bool = True
    """Table 3 ablation switch: self-attention module."""
    use_dilation: bool = True
    """Table 3 ablation switch: dilated convolutions."""
    in_channels: int = 1
    """Input channels of the images."""
    norm: str = "group"
    """Normalisation in the network: ``group`` (GroupNorm, chosen) or ``none`` (as VGG16; collapses)."""
    # --- PA3C
    t_max: int = 10
    """Steps per training episode, and the most greedy steps at inference (paper: 10; the ``small``
    preset: 3 — the learned policy decides in its first step or two, and a 3-step episode costs a
    third of a 10-step one, so the same time buys three times the updates; the demo: 2; README,
    "Training recipe")."""
    gamma: float = 0.95
    """Discount factor γ (paper: 0.95)."""
    returns: str = "one_step"
    """Eq. 8's form: ``one_step`` ``r + γ·w∗V(s(t+1))`` (the paper's text, chosen) or ``multi_step``
    ``r + γ·w∗R(t+1)`` (PixelRL's reward map convolution). See ``pa3c.one_step_returns``."""
    kernel: str = "delta"
    """Neighbour kernel ``w`` of Eq. 8: ``delta`` (fixed identity, chosen) or ``learned`` (normalised
    weights learned through the value loss; see ``pa3c.ReturnKernel``)."""
    kernel_size: int = 3
    """Side of the neighbour kernel ``w`` of Eq. 8 (chosen: 3; PixelRL used 33)."""
    policy_gradient: str = "sampled"
    """``sampled`` (A3C: ``−log π(a|s)·A``) or ``all_actions`` (both actions' outcomes are known per
    pixel: ``−Σ_a π(a|s)·(Q(s,a) − V(s))``; see ``pa3c.pa3c_losses``)."""
    entropy_beta: float = 0.01
    """Entropy bonus β (chosen)."""
    value_coef: float = 0.5
    """Weight of the value loss ½(R−V)² in the total (chosen)."""
    value_loss: str = "mse"
    """The critic's loss per pixel: ``mse`` ½(R−V)² (A3C's, chosen) or ``huber`` (quadratic for
    |R−V| ≤ 1, linear beyond), which bounds the gradient of a pixel whose target jumps."""
    bootstrap_value: bool = False
    """R(t_max) = V(s(t_max)) as Eq. 8 is written (True) or 0 because the episode ends (False, chosen)."""
    alive_only: bool = False
    """Policy/entropy terms averaged over still-unzeroed pixels only (True) or over all pixels as
    the paper does (False, chosen by ``benchmarks/learning.py``; see ``pa3c.pa3c_losses``)."""
    mask_dead: bool = False
    """Drop the policy/entropy terms of pixels already zeroed (their action changes nothing, so the
    terms are zero-mean noise) while still averaging over all pixels, so the expected gradient is
    the paper's (see ``pa3c.pa3c_losses``)."""
    pixel_done: bool = False
    """A pixel's episode ends when it is zeroed: its next-state value is 0 in Eq. 8's target, and
    zeroed pixels drop out of the losses (averaged over all pixels still). See ``pa3c.pa3c_losses``.
    Off by default: measured at 64² only (README, "Training recipe")."""
    ema_decay: float = 0.0
    """Validate, checkpoint and segment with an exponential moving average of the weights, updated
    after every update with this decay (0.95: about the last 20 updates; 0: off, the weights as
    trained). Off by default (with 10-step episodes it did not raise the mean); the ``small`` preset
    uses 0.95 (with 3-step episodes it did, and narrowed the seeds' spread; see ``training.train``)."""
    head_init_std: float = 0.1
    """Std of the policy/value output layers' initial weights (chosen; see ``model.HEAD_INIT_STD``)."""
    init_keep_prob: float | None = None
    """Starting π(keep) set through the policy's output bias; None keeps the network's own init
    (π ≈ 0.5, input-dependent logits; chosen, see ``pa3c.Agent``)."""
    grad_steps: int = 0
    """Back-propagate through this many of the t_max steps per update, drawn at random, the others
    run without a graph (0: all steps, the paper's; see ``pa3c.draw_grad_steps``)."""
    infer_steps: int = 0
    """Greedy steps at inference: 0 = the step validation scores best, recorded in each checkpoint
    (chosen); k = always k (the paper: t_max). Inference also stops once a step changes nothing."""
    # --- optimisation
    epochs: int = 200
    """Training epochs (paper: 200)."""
    batch_size: int = 2
    """Images per update (paper: 2)."""
    lr: float = 1e-3
    """Adam learning rate (paper: 1e-3)."""
    lr_decay: float = 0.9
    """Step decay factor of the learning rate (paper: 0.9)."""
    lr_step: int = 25
    """Epochs between learning-rate decays (paper: 25)."""
    lr_schedule: str = "step"
    """``step`` (×``lr_decay`` every ``lr_step`` epochs, the paper's) or ``cosine`` (from ``lr`` down
    towards 0 over the run's epochs, half a cosine; see ``training.run.make_scheduler``)."""
    grad_clip: float = 5.0
    """Clip the global gradient norm to this (0: off; chosen 5, the paper does not say)."""
    augment: bool = False
    """Random horizontal/vertical flips of training slices (chosen off: not in the paper)."""
    zoom_out: float = 0.0
    """Scale augmentation: each training slice, with probability ½, is shrunk about its centre by a
    factor drawn from [1 − zoom_out, 1] and zero-padded, so the network sees structures smaller than
    the training labels (``data.transforms.random_zoom_out``). 0: off (not in the paper)."""
    coarse_epochs: int = 0
    """Train the first this many epochs on ``coarse_size`` slices (progressive resizing: on the demo
    an epoch at half the side cost about 0.4 of a full one), made as ``coarse_mode`` says, then at
    ``image_size``; validation and every checkpoint stay at ``image_size``. 0: off (see
    ``training.run.coarse_dataset``)."""
    coarse_size: int = 0
    """Side of the coarse epochs' slices; 0: half of ``image_size``."""
    coarse_mode: str = "shrink"
    """How the coarse epochs make their ``coarse_size`` slices: ``shrink`` the whole slice, or ``crop``
    a random window of that side from the full-size slice, redrawn every epoch (the structures keep
    their size; see ``training.run.epoch_dataset``)."""
    # --- speed (``benchmarks/bench.py`` measures them; ``amp`` and ``workers`` also change the numbers, the rest only the time)
    channels_last: bool | None = None
    """NHWC memory format for the network; None: by device (on for CPU, off for CUDA, see ``Agent.set_fast_paths``)."""
    amp: str = "none"
    """``bf16``: bfloat16 autocast of the forward passes; losses stay in float32. GPU, or a CPU with
    AVX512-BF16/AMX (there it runs in NCHW: oneDNN's channels-last bf16 weight gradient crashes)."""
    two_phase: bool = False
    """Roll each episode out without gradients, then run one forward and backward pass over all
    t_max·B states at once (``pa3c.rollout_two_phase``): the same losses and gradients, in big GPU
    batches instead of t_max small sequential ones; one extra forward pass per step. Not with
    ``--grad-steps`` or BatchNorm."""
    recompute: bool = False
    """Activation checkpointing of every step: ~t_max× less activation memory, ~⅓ more compute."""
    shards: int = 1
    """Split each batch into this many shards, each on its own thread (CPU; the same gradient, see ``parallel``)."""
    workers: int = 1
    """Asynchronous PA3C worker processes (Algorithm 1, Hogwild); 1 = the synchronous batched form.
    An epoch still takes one step per batch, but each gradient comes from weights up to N − 1 steps
    old and the workers update the shared Adam moments without locks: on the demo two workers learned
    far less per epoch than one process, at Adam 4e-3 and at 2e-3 (README, "Speed and parallel training")."""
    # --- bookkeeping
    val_every: int = 1
    """Validate (greedy Dice on the val split) every this many epochs; best checkpoint by it."""
    tensorboard: bool = False
    """Also log to TensorBoard in RUN/tensorboard (needs the ``tensorboard`` package): the log's
    scalars every epoch and, when validating, the masks after each step of a few validation slices."""
    seed: int = 0
    """Seed of weights, shuffling and action sampling."""
    device: str = "cpu"
    """``cpu`` or ``cuda`` (or ``cuda:N``)."""
    out: str = ""
    """Run folder; derived from the dataset, preset and seed when empty."""

    def net_config(self) -> NetConfig:
        return net_config(self.preset, in_channels=self.in_channels, use_sam=self.use_sam,
                          use_dilation=self.use_dilation, norm=self.norm)

    def coarse_side(self) -> int:
        """Side of the coarse epochs' slices (``coarse_size``, or half of ``image_size``)."""
        return self.coarse_size or max(8, self.image_size // 2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "run config") -> "TrainConfig":
        """The config in ``d`` (a run's config.json or a checkpoint's), type-checked and validated;
        InputError naming ``source`` when an entry has the wrong type or value. Keys that are no
        field, such as the retired ``compile`` of older runs, are ignored."""
        if isinstance(d, dict):  # runs from before these options trained without them
            d = {**LEGACY_DEFAULTS, **d}
        cfg = dataclass_from_dict(cls, d, source)
        try:
            validate(cfg)
        except InputError as e:
            raise InputError(f"{source}: {e}") from None
        return cfg


LEGACY_DEFAULTS = dict(pixel_done=False, mask_dead=False, ema_decay=0.0, coarse_epochs=0, coarse_size=0,
                       coarse_mode="shrink", zoom_out=0.0)
"""What a stored config without these (newer) fields trained with: a resumed or re-evaluated older
run keeps its recipe."""

# Training defaults per preset; CLI options override them.
TRAIN_PRESETS: dict[str, dict] = {
    "paper": {},
    # CPU budget: 128×128, batch 8 and a constant Adam 4e-3, the best of benchmarks/learning.py
    # (a cosine decay scored lower at 64², 3 seeds); training episodes of 3 steps, scored through a
    # weight average: 60 such epochs cost less than 20 of 10-step episodes and scored higher on
    # every seed (64²: test DICE 0.925 ± 0.007 against 0.872 ± 0.016; on the demo, README "Demo").
    "small": dict(image_size=128, epochs=60, batch_size=8, lr=4e-3, lr_step=1000, lr_decay=1.0, t_max=3,
                  ema_decay=0.95),
    # small's recipe on the twice-as-wide network at half the learning rate: at 4e-3 it learned slower
    # than small (Table 2's 128² run, seeds 0-1: val DICE 0.81 / 0.85 against 0.88 / 0.89 at epoch 62);
    # at 2e-3 it scored above small's mean DICE and BIoU (BENCHMARKS.md, "The medium preset").
    "medium": dict(image_size=128, epochs=60, batch_size=8, lr=2e-3, lr_step=1000, lr_decay=1.0, t_max=3,
                   ema_decay=0.95),
}


def make_config(preset: str = "paper", **overrides) -> TrainConfig:
    """The preset's training config with ``overrides`` (``None`` values are ignored)."""
    if preset not in PRESETS or preset not in TRAIN_PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = {**TRAIN_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = TrainConfig(preset=preset, **values)
    validate(cfg)
    return cfg


# Input sizes the U-Net baselines take, as (multiple of, at least), measured on MONAI's networks: the
# U-Net and Attention U-Net halve the input four times and normalise the 1×1 bottom of a 16² input
# to nothing; UNet++ pads odd sizes but fails below 32; Swin-UNETR's windows need 32 and 64.
# PixelDRL-MG and PixelRL are fully convolutional at full resolution and take any size >= 8.
IMAGE_SIZE_RULES = {"unet": (16, 32), "attention-unet": (16, 32), "unet++": (1, 32), "swin-unetr": (32, 64)}


def check_image_size(model: str, size: int, option: str = "--image-size") -> None:
    """InputError when ``model`` cannot take ``size`` × ``size`` inputs (:data:`IMAGE_SIZE_RULES`)."""
    multiple, least = IMAGE_SIZE_RULES.get(model, (1, 8))
    if size % multiple or size < least:
        what = f"a multiple of {multiple} that is at least {least}" if multiple > 1 else f"at least {least}"
        raise InputError(f"{option} {size}: {model} needs {what}")


MAX_IMAGE_SIZE = 4096
"""Largest network input side (a 4096² slice: 16 M pixels; the memory check refines this per batch)."""

DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def is_device_name(name: str) -> bool:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: the devices this tool runs on."""
    return isinstance(name, str) and DEVICE_NAME.match(name) is not None


def validate(cfg: TrainConfig) -> None:
    """Reject impossible settings with a one-line message naming the option."""
    checks = [
        (cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (8 <= cfg.image_size <= MAX_IMAGE_SIZE, f"--image-size must be in 8..{MAX_IMAGE_SIZE}, got {cfg.image_size}"),
        (math.isfinite(cfg.lr) and cfg.lr > 0, f"--lr must be a finite number > 0, got {cfg.lr}"),
        (cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}"),
        (cfg.split_seed >= 0, f"--split-seed must be >= 0, got {cfg.split_seed}"),
        (cfg.in_channels >= 1, f"in_channels must be >= 1, got {cfg.in_channels}"),
        (cfg.channels is None or (len(cfg.channels) >= 1 and min(cfg.channels) >= 0),
         f"--channels must list channel indices >= 0, got {cfg.channels}"),
        (cfg.labels is None or (len(cfg.labels) >= 1 and min(cfg.labels) >= 1),
         f"--labels must list label values >= 1, got {cfg.labels}"),
        (math.isfinite(cfg.lr_decay) and cfg.lr_decay > 0, f"lr_decay must be a finite number > 0, got {cfg.lr_decay}"),
        (cfg.lr_step >= 1, f"lr_step must be >= 1, got {cfg.lr_step}"),
        (is_device_name(cfg.device), f"--device {cfg.device}: not a device name (use auto, cpu, cuda or cuda:N)"),
        (cfg.t_max >= 1, f"--t-max must be >= 1, got {cfg.t_max}"),
        (0 <= cfg.grad_steps <= cfg.t_max, f"--grad-steps must be in 0..t_max ({cfg.t_max}), got {cfg.grad_steps}"),
        (0 <= cfg.infer_steps <= cfg.t_max, f"--infer-steps must be in 0..t_max ({cfg.t_max}), got {cfg.infer_steps}"),
        (math.isfinite(cfg.grad_clip), f"--grad-clip must be finite (0 = off), got {cfg.grad_clip}"),
        (math.isfinite(cfg.entropy_beta), f"--entropy-beta must be finite, got {cfg.entropy_beta}"),
        (0 <= cfg.gamma <= 1, f"--gamma must be in [0, 1], got {cfg.gamma}"),
        (0 <= cfg.ema_decay < 1, f"--ema-decay must be in [0, 1), got {cfg.ema_decay}"),
        (0 <= cfg.zoom_out < 1, f"--zoom-out must be in [0, 1), got {cfg.zoom_out}"),
        (cfg.grad_clip >= 0, f"--grad-clip must be >= 0 (0 = off), got {cfg.grad_clip}"),
        (cfg.head_init_std > 0, f"head_init_std must be > 0, got {cfg.head_init_std}"),
        (cfg.entropy_beta >= 0, f"--entropy-beta must be >= 0, got {cfg.entropy_beta}"),
        (cfg.kernel_size >= 1 and cfg.kernel_size % 2 == 1, f"kernel size must be odd, got {cfg.kernel_size}"),
        (cfg.norm in ("group", "batch", "none"), f"norm must be group, batch or none, got {cfg.norm!r}"),
        (cfg.lr_schedule in ("step", "cosine"), f"--lr-schedule must be step or cosine, got {cfg.lr_schedule!r}"),
        (cfg.returns in ("one_step", "multi_step"), f"returns must be one_step or multi_step, got {cfg.returns!r}"),
        (cfg.kernel in ("delta", "learned"), f"kernel must be delta or learned, got {cfg.kernel!r}"),
        (cfg.value_loss in ("mse", "huber"), f"value_loss must be mse or huber, got {cfg.value_loss!r}"),
        (cfg.policy_gradient in ("sampled", "all_actions"),
         f"policy_gradient must be sampled or all_actions, got {cfg.policy_gradient!r}"),
        (cfg.init_keep_prob is None or 0 < cfg.init_keep_prob < 1,
         f"init_keep_prob must be in (0, 1) or None, got {cfg.init_keep_prob}"),
        (cfg.amp in ("none", "bf16"), f"--amp must be none or bf16, got {cfg.amp!r}"),
        (cfg.workers >= 1, f"--workers must be >= 1, got {cfg.workers}"),
        (cfg.shards >= 1, f"--shards must be >= 1, got {cfg.shards}"),
        (not cfg.two_phase or (cfg.grad_steps == 0 and cfg.norm != "batch"),
         "--two-phase works with all steps' gradients (--grad-steps 0) and per-sample normalisation (not --norm batch)"),
        (cfg.shards == 1 or cfg.workers == 1, "--shards and --workers cannot be combined; each worker has its own thread"),
        (cfg.val_every >= 1, f"val_every must be >= 1, got {cfg.val_every}"),
        (cfg.coarse_epochs >= 0, f"--coarse-epochs must be >= 0, got {cfg.coarse_epochs}"),
        (cfg.coarse_size == 0 or 8 <= cfg.coarse_size < cfg.image_size,
         f"--coarse-size must be 0 (half the image size) or in 8..{cfg.image_size - 1} (below --image-size), "
         f"got {cfg.coarse_size}"),
        (cfg.coarse_mode in ("shrink", "crop"), f"--coarse-mode must be shrink or crop, got {cfg.coarse_mode!r}"),
        (cfg.coarse_mode != "crop" or not cfg.coarse_epochs or cfg.workers == 1,
         "--coarse-mode crop draws new windows every epoch in the main process; it does not work with --workers"),
        (cfg.axis in (0, 1, 2), f"--axis must be 0, 1 or 2, got {cfg.axis}"),
        (cfg.k_shot >= 0, f"--k-shot must be >= 0, got {cfg.k_shot}"),
        (cfg.split_level in ("patient", "slice"), f"--split-level must be patient or slice, got {cfg.split_level!r}"),
        (cfg.modality in ("auto", "mri", "ct"), f"--modality must be auto, mri or ct, got {cfg.modality!r}"),
        (cfg.format in ("auto", "msd", "nnunet", "lgg", "paired", "folder", "prepared"),
         f"--format must be auto, msd, nnunet, lgg, paired, folder or prepared, got {cfg.format!r}"),
        (cfg.model in MODELS, f"--model {cfg.model}: unknown model; choose one of {', '.join(MODELS)}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise InputError(msg)
    check_image_size(cfg.model, cfg.image_size)
    if cfg.coarse_epochs:
        check_image_size(cfg.model, cfg.coarse_side(), "--coarse-size")
