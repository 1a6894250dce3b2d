"""Layers of the network that can route around PyTorch's slow or crashing CPU kernels.

Execution only: each layer computes what its ``torch.nn`` parent computes (same parameters, same
``state_dict`` keys) and behaves exactly like it until :func:`set_cpu_workarounds` switches the
workaround on (``Agent.set_fast_paths`` does, for channels-last or bf16 on CPU). All measurements
below: 1 thread of an AMD EPYC (AVX512-BF16), torch 2.13.0+cpu, forward + backward, batch 1
(``benchmarks/cpu_layers.py``; ``benchmarks/cpu_update.py`` gives what each buys per PA3C update).

* :class:`GroupNorm` — PyTorch's channels-last CPU GroupNorm is far slower than its NCHW kernel on
  the network's few-channel maps (bf16, 8 channels at 128²: 6.2 vs 0.24 ms; fp32: 1.4 vs 0.21 ms);
  a channels-last input runs the NCHW kernel between two layout copies (bf16: 0.74 ms).
* :class:`Conv2d` — oneDNN's channels-last **bf16 weight-gradient** kernel segfaults on small
  dilated shapes (``benchmarks/onednn_sweep.py``: it crashed in every seed of a randomised sweep of
  small 3×3/1×1 shapes, while the bf16 forward and input-gradient kernels and the float32
  channels-last weight gradient ran every draw clean). Under bf16 autocast a channels-last conv
  runs forward and input gradient in bf16 channels-last (faster than bf16 NCHW at the full- and
  half-resolution layers that dominate, e.g. 8 → 8 at 128²: 1.3 vs 3.2 ms) and computes the weight
  and bias gradients in float32 channels-last — a kernel that does not crash and, unlike
  autocast's bf16 weight gradient, does not round the gradient to bf16.
* :func:`upsample` — PyTorch's bilinear CPU backward falls to a slow strided path when the incoming
  gradient is a channel slice (what ``torch.cat``'s backward hands it); the resize runs on
  channels-last tensors with a dense gradient (16 channels 64² → 128²: 1.4 vs 0.47 ms).

Written by hand because these are kernel-selection problems of PyTorch's CPU build, not layers any
library offers; they are gated to CPU tensors, so CUDA runs the stock modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CL = torch.channels_last


def _nhwc(x: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last but not NCHW (ambiguous 1-channel maps count as NCHW)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=CL) and not x.is_contiguous()


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm``; with the workaround on, a channels-last CPU input runs the NCHW kernel."""

    cpu_workaround = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cpu_workaround and x.device.type == "cpu" and _nhwc(x):
            y = F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
            return y.contiguous(memory_format=CL)
        return super().forward(x)


class _Bf16ChannelsLastConv(torch.autograd.Function):
    """y = conv(x, w, b) with x bf16 channels-last, w and b float32 master weights (see module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        w16 = weight.to(torch.bfloat16)  # (C_out, C_in/groups, k, k), channels-last like weight
        b16 = None if bias is None else bias.to(torch.bfloat16)
        ctx.save_for_backward(x, weight, w16)
        ctx.conf = (stride, padding, dilation, groups, bias is not None)
        return F.conv2d(x, w16, b16, stride, padding, dilation, groups)  # (B, C_out, H', W') bf16

    @staticmethod
    def backward(ctx, grad):
        x, weight, w16 = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        grad = grad.contiguous(memory_format=CL)
        args = ([weight.shape[0]] if has_bias else None, list(stride), list(padding), list(dilation),
                False, [0, 0], groups)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(grad, x, w16, *args, [True, False, False])[0]
        if ctx.needs_input_grad[1] or (has_bias and ctx.needs_input_grad[2]):
            # float32 weight gradient: oneDNN's bf16 channels-last one crashes (module docstring).
            _, gw, gb = torch.ops.aten.convolution_backward(grad.float(), x.float(), weight, *args,
                                                            [False, True, has_bias])
        return gx, gw, gb, None, None, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d``; with the workaround on, bf16 autocast on a channels-last CPU layer takes
    :class:`_Bf16ChannelsLastConv` (no crashing bf16 weight-gradient kernel)."""

    cpu_workaround = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.cpu_workaround and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16 and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and self.weight.is_contiguous(memory_format=CL)):
            x = x.to(torch.bfloat16).contiguous(memory_format=CL)  # (B, C_in, H, W)
            return _Bf16ChannelsLastConv.apply(x, self.weight, self.bias, self.stride, self.padding,
                                               self.dilation, self.groups)
        return super().forward(x)


class _BilinearChannelsLast(torch.autograd.Function):
    """Bilinear resize (align_corners=False) computed on channels-last tensors, forward and backward;
    the output and the input gradient keep the input's layout."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        ctx.in_size, ctx.nhwc = tuple(x.shape), _nhwc(x)
        y = F.interpolate(x.contiguous(memory_format=CL), size=size, mode="bilinear", align_corners=False)
        return y if ctx.nhwc else y.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = torch.ops.aten.upsample_bilinear2d_backward(grad.contiguous(memory_format=CL),
                                                        list(grad.shape[-2:]), list(ctx.in_size), False)
        return (g if ctx.nhwc else g.contiguous()), None


def upsample(x: torch.Tensor, size: tuple[int, int], cpu_workaround: bool = False) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of (B, C, h, w) to (B, C, *size); with ``cpu_workaround``
    a CPU tensor goes through the channels-last kernels (module docstring)."""
    if cpu_workaround and x.device.type == "cpu":
        return _BilinearChannelsLast.apply(x, tuple(size))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def set_cpu_workarounds(net: nn.Module, on: bool) -> None:
    """Switch the workarounds of every layer of ``net`` that has one (an execution option, not state)."""
    for m in net.modules():
        if hasattr(m, "cpu_workaround"):
            m.cpu_workaround = on
