"""The baselines of the paper's Table 2, built so that every method runs under the same roof.

    pixeldrl info --model unet --json
    pixeldrl train --data DATA --model attention-unet --preset small --epochs 20

Two kinds of baseline:

* **Supervised U-Net variants from MONAI** (not re-implemented here): ``unet`` (``UNet`` with
  residual units), ``attention-unet`` (``AttentionUnet``), ``unet++`` (``BasicUNetPlusPlus``) and
  ``swin-unetr`` (``SwinUNETR`` with ``spatial_dims=2``; needs einops and an image size divisible by
  32 and at least 64). Each is wrapped in :class:`Segmenter`: two output maps (background,
  foreground) trained with Dice + cross-entropy (``supervised.py``), and a one-shot
  :meth:`Segmenter.segment` that ``predict.segment`` calls, so validation, ``predict`` and
  ``evaluate`` treat them like the agent. Their sizes are MONAI's usual 2-D settings (chosen; the
  paper does not publish its baselines' widths); :data:`SUPERVISED` holds them.
* **PixelRL** (Furuta et al., AAAI 2019 / IEEE TMM 2020), the DRL baseline: shared dilated
  convolutions (dilation 1, 2, 3, 4; 64 channels) then a policy branch and a value branch (dilation
  3, 2, then a 3×3 output conv), trained in the same pixel environment with the same PA3C losses.
  No library provides it, so :class:`PixelRLNet` is written by hand from the paper's figure. The
  convolutional GRU that the original puts in the policy branch (for denoising) is left out: the
  environment's state carries no recurrent memory. :class:`PixelRLAgent` is a ``pa3c.Agent`` with
  this network, so ``rollout``, ``pa3c_losses`` and ``segment`` run unchanged.

``pixeldrl`` itself is PixelDRL-MG (``model.py``). Parameter counts: :func:`parameter_counts`.
"""

from __future__ import annotations

import torch
from torch import nn

from pixeldrl.rl import env
from pixeldrl.config import MODELS, PA3C_MODELS, SUPERVISED_MODELS  # noqa: F401  (re-exported)
from pixeldrl.errors import InputError
from pixeldrl.nets.kernels import Conv2d  # nn.Conv2d that can avoid a crashing CPU bf16 kernel
from pixeldrl.nets.pixeldrl_mg import HEAD_INIT_STD, count_parameters, init_actor_critic
from pixeldrl.rl.pa3c import Agent

# MONAI constructor arguments per U-Net variant (beyond spatial_dims / in / out channels).
SUPERVISED: dict[str, dict] = {
    # MONAI's 2-D segmentation tutorials' UNet.
    "unet": dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2),
    "attention-unet": dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2)),
    "unet++": dict(features=(32, 32, 64, 128, 256, 32)),  # MONAI's default widths
    "swin-unetr": dict(feature_size=24),  # MONAI's default (Hatamizadeh et al.)
}
N_CLASSES = 2


def check_model(name: str, image_size: int | None = None) -> None:
    """InputError for an unknown model name, or an image size the model cannot take."""
    if name not in MODELS:
        raise InputError(f"--model {name}: unknown model; choose one of {', '.join(MODELS)}")
    if name == "swin-unetr" and image_size is not None and (image_size % 32 or image_size < 64):
        raise InputError(f"--image-size {image_size}: swin-unetr needs a multiple of 32 that is at least 64")


def monai_network(name: str, in_channels: int = 1) -> nn.Module:
    """The bare MONAI network for ``name`` (two output maps at the input's resolution)."""
    from monai.networks import nets

    kw = SUPERVISED[name]
    if name == "unet":
        return nets.UNet(spatial_dims=2, in_channels=in_channels, out_channels=N_CLASSES, **kw)
    if name == "attention-unet":
        return nets.AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=N_CLASSES, **kw)
    if name == "unet++":
        return nets.BasicUNetPlusPlus(spatial_dims=2, in_channels=in_channels, out_channels=N_CLASSES, **kw)
    if name == "swin-unetr":
        try:
            import einops  # noqa: F401  (SwinUNETR needs it at run time only; fail early instead)
        except ImportError:
            raise InputError("swin-unetr needs the einops package: pip install einops") from None
        return nets.SwinUNETR(spatial_dims=2, in_channels=in_channels, out_channels=N_CLASSES, **kw)
    raise InputError(f"--model {name}: not a supervised baseline; choose one of {', '.join(SUPERVISED)}")


class Segmenter(nn.Module):
    """A supervised network behind the interface ``predict.segment`` uses.

    ``forward`` gives logits (B, 2, H, W); :meth:`segment` is one forward pass and an argmax
    (``one_shot``: there are no steps to iterate).
    """

    one_shot = True

    def __init__(self, name: str, in_channels: int = 1):
        super().__init__()
        self.name = name
        self.net = monai_network(name, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out  # UNet++ returns a list

    @torch.no_grad()
    def segment(self, images: torch.Tensor, t_max: int = env.T_MAX, return_steps: bool = False):
        """Images (B, C, H, W) → ``predict.Segmentation``; the "steps" repeat the one result."""
        from pixeldrl.predict import Segmentation

        p_fg = torch.softmax(self(images), dim=1)[:, 1]  # (B, H, W)
        mask = p_fg > 0.5
        steps = None
        if return_steps:
            steps = torch.stack([torch.ones_like(mask)] + [mask] * t_max)
        return Segmentation(mask, p_fg, steps, 1)


class PixelRLNet(nn.Module):
    """PixelRL's fully convolutional network (Furuta et al.), without the policy branch's ConvGRU.

    ``trunk``: 3×3 convs with dilation 1, 2, 3, 4 (64 channels, ReLU), shared by both branches;
    ``policy`` and ``value``: 3×3 convs with dilation 3 and 2, then a 3×3 output conv to 2 logits or
    1 value. Returns the same pair as ``PixelDRLNet``: logits (B, 2, H, W), value (B, 1, H, W).
    """

    def __init__(self, in_channels: int = 1, width: int = 64):
        super().__init__()

        def conv(c_in, d):
            return nn.Sequential(Conv2d(c_in, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True))

        self.trunk = nn.Sequential(conv(in_channels, 1), conv(width, 2), conv(width, 3), conv(width, 4))
        self.policy = nn.Sequential(conv(width, 3), conv(width, 2))
        self.policy.out = Conv2d(width, 2, 3, padding=1)
        self.value = nn.Sequential(conv(width, 3), conv(width, 2))
        self.value.out = Conv2d(width, 1, 3, padding=1)
        init_actor_critic(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.policy(h), self.value(h)  # (B, 2, H, W), (B, 1, H, W)


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
    from pixeldrl.config import make_config

    cfg = cfg if cfg is not None else make_config("paper")
    cfg = type(cfg).from_dict({**cfg.to_dict(), "model": name, "in_channels": in_channels})
    return build_agent(cfg)


def parameter_counts(name: str, in_channels: int = 1, cfg=None) -> dict[str, int]:
    """Trainable parameters of the network (the PA3C return kernel ``w`` excluded, as in ``info``)."""
    model = build_model(name, in_channels, cfg=cfg)
    return count_parameters(model.net)
