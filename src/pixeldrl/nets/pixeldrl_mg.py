"""The PixelDRL-MG network: half-width VGG16 trunk, self-attention module, dilated policy/value heads.

Data flow (what ``PixelDRLNet.forward`` reads like)::

    X(t) (B, C, H, W) ──pad to /8──► VGG-half trunk ─► e1 (1), e2 (1/2), e3 (1/4), e4 (1/8)
                                                     e4 ─► SAM (Eq. 1) ─► s4
    [e1, e2, e3, s4] ─► policy head ─► (B, 2, H, W) logits   (action 0 = zero, 1 = keep)
    [e1, e2, e3, s4] ─► value head  ─► (B, 1, H, W) V(s)

The paper publishes the components but not the exact widths, dilation rates or head depths; the
``paper`` preset picks them so the whole network has 7.14 M parameters (docs/METHOD.md, "chosen"):
trunk = VGG16 conv1_1 … conv4_3 at half width (32, 64, 128, 256); each head is a small
multi-scale decoder (1/8 → 1/4 → 1/2 → 1) whose every convolution is dilated.
``pixeldrl info --preset paper`` prints the count per component.

Ablation switches (Table 3): ``use_sam`` and ``use_dilation``; with ``use_dilation=False`` every
dilation rate becomes 1 (same parameter count, smaller receptive field).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from pixeldrl.errors import InputError, dataclass_from_dict
from pixeldrl.nets.kernels import Conv2d, GroupNorm, upsample

N_ACTIONS = 2
"""Actions per pixel: 0 = set to zero (background), 1 = do nothing (keep)."""


@dataclass(frozen=True)
class NetConfig:
    """Architecture of :class:`PixelDRLNet`; stored in every checkpoint to rebuild the model."""

    in_channels: int = 1
    """Image channels of X(t) (1 for the paper's grayscale slices)."""
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    """Trunk widths of the VGG16 blocks conv1 … conv4 (half of VGG16's 64, 128, 256, 512)."""
    head_widths: tuple[int, int, int, int] = (328, 128, 64, 32)
    """Head widths at 1/8, 1/4, 1/2 and full resolution (policy and value heads alike)."""
    trunk_dilations: tuple[tuple[int, ...], ...] = ((1, 1), (1, 1), (1, 2, 2), (2, 4, 2))
    """Dilation of each trunk conv, block by block (used when ``use_dilation``)."""
    head_dilations: tuple[tuple[int, ...], ...] = ((2, 4), (2, 4), (2,), (2,))
    """Dilation of each head conv at 1/8, 1/4, 1/2, 1 (the number of entries = convs per level)."""
    sam_reduction: int = 8
    """SAM query/key channels = trunk width at 1/8 divided by this (non-local block convention)."""
    use_sam: bool = True
    """Table 3 switch: the self-attention module on the 1/8-scale features."""
    use_dilation: bool = True
    """Table 3 switch: dilated convolutions (False: every dilation rate is 1)."""
    norm: str = "group"
    """Normalisation after every 3×3 conv: ``group`` (GroupNorm, chosen default) or ``none`` (VGG16 as
    published). Without it PA3C collapses to "zero every pixel" (see :class:`PixelDRLNet`)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "network config") -> "NetConfig":
        """The architecture in ``d`` (a checkpoint's ``net_config``), type-checked; InputError naming
        ``source`` when an entry is missing or of the wrong type."""
        missing = [f.name for f in fields(cls) if not isinstance(d, dict) or f.name not in d]
        if missing:
            raise InputError(f"{source}: missing entry {missing[0]!r}")
        dataclass_from_dict(cls, d, source)  # the types
        d = dict(d)
        for k in ("widths", "head_widths"):
            d[k] = tuple(d[k])
        for k in ("trunk_dilations", "head_dilations"):
            d[k] = tuple(tuple(x) for x in d[k])
        return cls(**{f.name: d[f.name] for f in fields(cls)})


PRESETS: dict[str, NetConfig] = {
    # 7.14 M parameters (docs/METHOD.md): the widths above.
    "paper": NetConfig(),
    # Narrow: same topology at a quarter of the width, for CPU demos and tests.
    "small": NetConfig(widths=(8, 16, 32, 64), head_widths=(48, 24, 16, 8), sam_reduction=4),
    # Half the width (1.15 M parameters, fewer than any U-Net baseline): the 128² CPU runs' best
    # scorer (RESULTS.md Table 2), at about three times small's cost per epoch.
    "medium": NetConfig(widths=(16, 32, 64, 128), head_widths=(96, 48, 32, 16), sam_reduction=4),
}


def net_config(preset: str, **overrides) -> NetConfig:
    """The named preset with field overrides (e.g. ``use_sam=False`` for the ablation)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return NetConfig(**{**asdict(PRESETS[preset]), **overrides})


class ConvReLU(nn.Sequential):
    """3×3 convolution (dilation d, 'same' padding) [+ GroupNorm / BatchNorm] + ReLU."""

    def __init__(self, c_in: int, c_out: int, dilation: int = 1, norm: str = "none"):
        layers = [Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation)]
        if norm == "group":
            layers.append(GroupNorm(math.gcd(8, c_out), c_out))
        elif norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        elif norm != "none":
            raise ValueError(f"unknown norm {norm!r}; choose none, group or batch")
        super().__init__(*layers, nn.ReLU(inplace=True))


class VGGHalfTrunk(nn.Module):
    """VGG16 conv1_1 … conv4_3 at half width, max-pooling between blocks; returns the four blocks' maps."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        n_convs = (2, 2, 3, 3)  # VGG16's conv1 … conv4 blocks
        blocks, c_in = [], cfg.in_channels
        for width, n, dils in zip(cfg.widths, n_convs, cfg.trunk_dilations):
            dils = dils if cfg.use_dilation else (1,) * n
            layers = []
            for d in dils:
                layers.append(ConvReLU(c_in, width, d, cfg.norm))
                c_in = width
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)  # e1 (B, w1, H, W), e2 (1/2), e3 (1/4), e4 (B, w4, H/8, W/8)
        return feats


class SelfAttention(nn.Module):
    """SAM, Eq. 1: ``M_att = Softmax(W · conv(f_att) + f_att)`` as a non-local block with a residual.

    1×1 convs give query/key/value; attention = softmax over positions of qᵀk; the attended values
    go through the 1×1 output conv ``W`` and are added to the input. ``W`` is zero-initialised so the
    module starts as the identity and the trunk's features pass through unchanged early in training.
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = Conv2d(channels, inner, 1)
        self.key = Conv2d(channels, inner, 1)
        self.value = Conv2d(channels, channels, 1)
        self.out = Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        q = self.query(f).flatten(2).transpose(1, 2)  # (B, HW, c')
        k = self.key(f).flatten(2).transpose(1, 2)  # (B, HW, c')
        v = self.value(f).flatten(2).transpose(1, 2)  # (B, HW, C)
        # Fused attention kernel; the 1/sqrt(c') scale keeps the softmax from saturating early.
        att = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        att = att.transpose(1, 2).reshape(b, c, h, w)
        return f + self.out(att)


class DilatedHead(nn.Module):
    """Policy or value network: a multi-scale decoder 1/8 → 1 with dilated convs in every layer.

    At each level the upsampled coarser map is concatenated with the trunk's map of that scale
    (the paper's multi-scale feature concatenation), then the level's dilated convs run; a 1×1
    conv gives ``n_out`` maps at the input's resolution.
    """

    def __init__(self, cfg: NetConfig, n_out: int):
        super().__init__()
        levels = []
        c_prev = 0
        # Coarse to fine: trunk scale 1/8 (index 3) down to full resolution (index 0).
        for trunk_c, head_c, dils in zip(cfg.widths[::-1], cfg.head_widths, cfg.head_dilations):
            dils = dils if cfg.use_dilation else (1,) * len(dils)
            layers, c_in = [], c_prev + trunk_c
            for d in dils:
                layers.append(ConvReLU(c_in, head_c, d, cfg.norm))
                c_in = head_c
            levels.append(nn.Sequential(*layers))
            c_prev = head_c
        self.levels = nn.ModuleList(levels)
        self.out = Conv2d(c_prev, n_out, 1)
        self.cpu_workaround = False  # an execution option (``kernels.set_cpu_workarounds``), not architecture

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = None
        for level, skip in zip(self.levels, feats[::-1]):
            if x is not None:
                x = upsample(x, skip.shape[-2:], self.cpu_workaround)
                skip = torch.cat([x, skip], dim=1)
            x = level(skip)
        return self.out(x)


HEAD_INIT_STD = 0.1
"""Standard deviation of the policy and value output layers' initial weights (chosen).

Small enough that π starts near 0.5 and V near 0, large enough that the gradient reaching the
trunk — which passes through these weights — is not negligible: with 0.01 no run of
``benchmarks/learning.py`` learned anything in 240 updates (test Dice 0 for 3 seeds; the heads learn
the class prior while the features barely move), with 0.1 the same recipe reached 0.84."""


def init_actor_critic(net: nn.Module) -> None:
    """He init for every conv of a policy/value network (``net.policy.out``, ``net.value.out``),
    zero biases, and output layers of std :data:`HEAD_INIT_STD` so both heads start near 0 (see
    ``PixelDRLNet._init_weights``)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    for head_out in (net.policy.out, net.value.out):
        nn.init.normal_(head_out.weight, std=HEAD_INIT_STD)


class PixelDRLNet(nn.Module):
    """Shared trunk + SAM (θ_s), policy head (θ_p) and value head (θ_v), Eq. 16's shared gradient.

    Accepts any H, W: the input is zero-padded to a multiple of the trunk stride (8) and the
    outputs are cropped back, so padding never changes the output's size.
    """

    stride = 8

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.trunk = VGGHalfTrunk(cfg)
        self.sam = SelfAttention(cfg.widths[-1], cfg.sam_reduction) if cfg.use_sam else nn.Identity()
        self.policy = DilatedHead(cfg, N_ACTIONS)
        self.value = DilatedHead(cfg, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation for every ReLU conv; small output layers.

        The network has ~20 ReLU convolutions in a row and no normalisation layers, as VGG16: with
        PyTorch's default init the activations shrink at every layer and the heads' outputs start
        out independent of the input, so neither head can tell one pixel from another and PA3C
        collapses to a constant policy (measured on the demo data). He init keeps the signal's scale.
        """
        init_actor_critic(self)
        if isinstance(self.sam, SelfAttention):  # SAM starts as the identity (see SelfAttention)
            nn.init.zeros_(self.sam.out.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """X(t) (B, C, H, W) → policy logits (B, 2, H, W) and value V(s) (B, 1, H, W)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.trunk(x)
        feats[-1] = self.sam(feats[-1])
        logits = self.policy(feats)[..., :h, :w]  # (B, 2, H, W)
        value = self.value(feats)[..., :h, :w]  # (B, 1, H, W)
        return logits, value


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, total and per top-level component (trunk, sam, policy, value, …)."""
    counts = {"total": sum(p.numel() for p in model.parameters())}
    for name, child in model.named_children():
        counts[name] = sum(p.numel() for p in child.parameters())
    return counts
