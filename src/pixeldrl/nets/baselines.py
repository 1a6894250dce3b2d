"""The baselines' networks: MONAI's U-Nets behind one interface, and PixelRL's network.

* **Supervised U-Net variants from MONAI** (not re-implemented here): ``unet`` (``UNet`` with
  residual units), ``attention-unet`` (``AttentionUnet``), ``unet++`` (``BasicUNetPlusPlus``) and
  ``swin-unetr`` (``SwinUNETR`` with ``spatial_dims=2``; needs einops and an image size divisible by
  32 and at least 64). Each is wrapped in :class:`Segmenter`: two output maps (background,
  foreground) trained with Dice + cross-entropy (``training/supervised.py``); the greedy episode
  (``rl.pa3c.segment``) runs it as one forward pass and an argmax, so validation, ``predict`` and
  ``evaluate`` treat it like the agent. Their sizes are MONAI's usual 2-D settings (chosen; the
  paper does not publish its baselines' widths); :data:`SUPERVISED` holds them.
* **PixelRL** (Furuta et al., AAAI 2019 / IEEE TMM 2020), the DRL baseline: shared dilated
  convolutions (dilation 1, 2, 3, 4; 64 channels) then a policy branch and a value branch (dilation
  3, 2, then a 3×3 output conv). No library provides it, so :class:`PixelRLNet` is written by hand
  from the paper's figure. The convolutional GRU that the original puts in the policy branch (for
  denoising) is left out: the environment's state carries no recurrent memory.
"""

from __future__ import annotations

import torch
from torch import nn

from pixeldrl.errors import InputError
from pixeldrl.nets.kernels import Conv2d  # nn.Conv2d that can avoid a crashing CPU bf16 kernel
from pixeldrl.nets.pixeldrl_mg import init_actor_critic

# MONAI constructor arguments per U-Net variant (beyond spatial_dims / in / out channels).
SUPERVISED: dict[str, dict] = {
    # MONAI's 2-D segmentation tutorials' UNet.
    "unet": dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2),
    "attention-unet": dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2)),
    "unet++": dict(features=(32, 32, 64, 128, 256, 32)),  # MONAI's default widths
    "swin-unetr": dict(feature_size=24),  # MONAI's default (Hatamizadeh et al.)
}
N_CLASSES = 2


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
    """A supervised MONAI network with two output maps.

    ``forward`` gives logits (B, 2, H, W). ``one_shot``: the greedy episode is one forward pass and
    an argmax — there are no steps to iterate.
    """

    one_shot = True

    def __init__(self, name: str, in_channels: int = 1):
        super().__init__()
        self.name = name
        self.net = monai_network(name, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out  # UNet++ returns a list


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
