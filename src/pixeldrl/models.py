"""Every model by name: the one place that turns a model name (and a TrainConfig) into a network.

    pixeldrl info --model unet --json
    pixeldrl train --data DATA --model attention-unet --preset small --epochs 20

``pixeldrl`` is PixelDRL-MG (``nets/pixeldrl_mg.py``) inside a PA3C ``rl.pa3c.Agent``; ``pixelrl`` is
the same agent with PixelRL's network (:class:`PixelRLAgent`: same return kernel, same losses, same
greedy episode); the U-Nets are MONAI's, wrapped in ``nets.baselines.Segmenter``. Parameter
counts: :func:`parameter_counts`.
"""

from __future__ import annotations

from torch import nn

from pixeldrl.config import MODELS, PA3C_MODELS, check_image_size, make_config
from pixeldrl.errors import InputError
from pixeldrl.nets.baselines import SUPERVISED, PixelRLNet, Segmenter
from pixeldrl.nets.pixeldrl_mg import HEAD_INIT_STD, count_parameters
from pixeldrl.rl.pa3c import Agent


def check_model(name: str, image_size: int | None = None) -> None:
    """InputError for an unknown model name, or an image size the model cannot take."""
    if name not in MODELS:
        raise InputError(f"--model {name}: unknown model; choose one of {', '.join(MODELS)}")
    if image_size is not None:
        check_image_size(name, image_size)


class PixelRLAgent(Agent):
    """``pa3c.Agent`` with :class:`PixelRLNet` instead of PixelDRL-MG's network; same return kernel
    and the same starting π(keep) (set through the policy output's bias, as ``Agent`` does)."""

    def __init__(self, in_channels: int = 1, kernel_size: int = 3, init_keep_prob: float | None = None,
                 kernel_mode: str = "delta", head_init_std: float = HEAD_INIT_STD):
        super().__init__(None, kernel_size, init_keep_prob, net=PixelRLNet(in_channels), kernel_mode=kernel_mode,
                         head_init_std=head_init_std)


def build_agent(cfg) -> Agent:
    """The PA3C agent a TrainConfig asks for: PixelDRL-MG (``pixeldrl``) or PixelRL (``pixelrl``)."""
    if cfg.model == "pixelrl":
        return PixelRLAgent(cfg.in_channels, cfg.kernel_size, cfg.init_keep_prob, cfg.kernel, cfg.head_init_std)
    if cfg.model == "pixeldrl":
        return Agent(cfg.net_config(), cfg.kernel_size, cfg.init_keep_prob, kernel_mode=cfg.kernel,
                     head_init_std=cfg.head_init_std)
    raise InputError(f"--model {cfg.model}: not a PA3C model; choose one of {', '.join(PA3C_MODELS)}")


def build_model(name: str, in_channels: int = 1, image_size: int | None = None, cfg=None) -> nn.Module:
    """Any model by name: a :class:`Segmenter` for the U-Nets, an ``Agent`` for the PA3C models.

    ``cfg`` (a TrainConfig) supplies the PixelDRL-MG preset and ablation switches; without it the
    ``paper`` preset is used.
    """
    check_model(name, image_size)
    if name in SUPERVISED:
        return Segmenter(name, in_channels)
    cfg = cfg if cfg is not None else make_config("paper")
    cfg = type(cfg).from_dict({**cfg.to_dict(), "model": name, "in_channels": in_channels})
    return build_agent(cfg)


def parameter_counts(name: str, in_channels: int = 1, cfg=None) -> dict[str, int]:
    """Trainable parameters of the network (the PA3C return kernel ``w`` excluded, as in ``info``)."""
    model = build_model(name, in_channels, cfg=cfg)
    return count_parameters(model.net)


# Peak bytes per input pixel of one PA3C update of PixelDRL-MG with stored activations at t_max = 10,
# measured by benchmarks/memory.py on CPU (benchmarks/results/memory_cpu_{small,medium,paper}.txt: batch 8
# at 128² for small and medium, batch 4 at 256² for paper); --recompute needs at least 4× less there.
UPDATE_BYTES_PER_PIXEL = {"small": 10_650, "medium": 20_810, "paper": 40_670}
RECOMPUTE_SAVING = 4


def update_memory(cfg) -> int | None:
    """Estimated peak bytes of one PixelDRL-MG training update as ``cfg`` asks (batch, size, t_max,
    channels, recompute, asynchronous workers); None for models without a measured figure."""
    if cfg.model != "pixeldrl" or cfg.preset not in UPDATE_BYTES_PER_PIXEL:
        return None
    per_pixel = UPDATE_BYTES_PER_PIXEL[cfg.preset] * cfg.t_max / 10 / (RECOMPUTE_SAVING if cfg.recompute else 1)
    return int(per_pixel * cfg.batch_size * cfg.image_size ** 2 * cfg.workers)
