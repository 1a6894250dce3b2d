"""Milliseconds per layer (forward + backward) on CPU, by layout and dtype: why ``pixeldrl.nets.kernels`` exists.

    python benchmarks/cpu_layers.py [--threads 1] [--batch 1]

Three tables at the ``small`` preset's shapes (1 thread by default, median of 20 after 3 warm-ups):

1. GroupNorm + ReLU: NCHW against channels-last, float32 and bf16 — the stock channels-last CPU
   kernel against the NCHW one that ``kernels.GroupNorm`` routes to (its layout copies included).
2. 3×3 convolutions: float32 and bf16, NCHW and channels-last, forward + all gradients; the bf16
   channels-last column is what ``kernels.Conv2d`` runs (bf16 forward and input gradient, float32
   weight gradient, casts included). The stock bf16 channels-last weight gradient is not timed: it
   segfaults on dilated shapes (``benchmarks/onednn_sweep.py``).
3. The bf16 channels-last backward split: input gradient, and the float32 weight gradient.
4. The heads' bilinear ×2 resize, with the gradient a channel slice as ``torch.cat``'s backward
   gives it: stock ``F.interpolate`` on NCHW and on channels-last tensors, and ``kernels.upsample``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from machine import cpu_name

from pixeldrl.nets.kernels import Conv2d, GroupNorm, upsample

CL = torch.channels_last
# (C_in, C_out, size, dilation): the small preset's trunk and head convolutions at 128×128
CONVS = [(8, 8, 128, 1), (24, 8, 128, 2), (40, 16, 64, 2), (16, 16, 64, 1), (80, 24, 32, 2), (32, 32, 32, 1),
         (64, 64, 16, 2)]
NORMS = [(8, 128), (16, 64), (24, 32), (64, 16)]  # (channels, size)
RESIZES = [(16, 64), (24, 32), (48, 16)]  # the heads' (channels, size) resized ×2, small preset at 128²


def ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def norm_case(c: int, s: int, b: int, dtype: torch.dtype, layout, workaround: bool) -> float:
    layer = GroupNorm(8, c).to(dtype)
    layer.cpu_workaround = workaround
    x = torch.randn(b, c, s, s, dtype=dtype).contiguous(memory_format=layout).requires_grad_()  # (B, C, S, S)
    g = torch.randn(b, c, s, s, dtype=dtype).contiguous(memory_format=layout)

    def step():
        F.relu(layer(x)).backward(g)

    return ms(step)


def conv_case(c_in: int, c_out: int, s: int, d: int, b: int, dtype: torch.dtype, layout) -> float:
    conv = Conv2d(c_in, c_out, 3, padding=d, dilation=d).to(memory_format=layout)
    conv.cpu_workaround = True  # takes effect only for bf16 autocast on channels-last weights
    x = torch.randn(b, c_in, s, s).to(dtype).contiguous(memory_format=layout).requires_grad_()  # (B, C_in, S, S)
    g = torch.randn(b, c_out, s, s).to(dtype).contiguous(memory_format=layout)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = conv(x)
        y.backward(g)

    return ms(step)


def split_case(c_in: int, c_out: int, s: int, d: int, b: int) -> tuple[float, float]:
    x = torch.randn(b, c_in, s, s).bfloat16().contiguous(memory_format=CL)
    g = torch.randn(b, c_out, s, s).bfloat16().contiguous(memory_format=CL)
    w = torch.randn(c_out, c_in, 3, 3).contiguous(memory_format=CL)
    w16 = w.bfloat16()
    args = ([c_out], [1, 1], [d, d], [d, d], False, [0, 0], 1)
    dgrad = ms(lambda: torch.ops.aten.convolution_backward(g, x, w16, *args, [True, False, False]))
    wgrad = ms(lambda: torch.ops.aten.convolution_backward(g.float(), x.float(), w, *args, [False, True, True]))
    return dgrad, wgrad


def resize_case(c: int, s: int, b: int, layout, workaround: bool) -> float:
    x = torch.randn(b, c, s, s).contiguous(memory_format=layout).requires_grad_()  # (B, C, s, s)
    skip = 8  # the trunk channels concatenated after it; the gradient arrives as a channel slice
    g = torch.randn(b, c + skip, 2 * s, 2 * s).contiguous(memory_format=layout)[:, :c]

    def step():
        upsample(x, (2 * s, 2 * s), cpu_workaround=workaround).backward(g)

    return ms(step)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    b = a.batch
    print(f"{cpu_name()} | torch {torch.__version__} | {a.threads} thread(s) | batch {b} | ms, forward + backward, median of 20")
    print("\nGroupNorm(8 groups) + ReLU")
    print("| channels | size | fp32 NCHW | fp32 CL stock | fp32 CL via NCHW | bf16 NCHW | bf16 CL stock | bf16 CL via NCHW |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, s in NORMS:
        cells = []
        for dtype in (torch.float32, torch.bfloat16):
            cells += [norm_case(c, s, b, dtype, torch.contiguous_format, False), norm_case(c, s, b, dtype, CL, False),
                      norm_case(c, s, b, dtype, CL, True)]
        print(f"| {c} | {s} | " + " | ".join(f"{v:.3f}" for v in cells) + " |", flush=True)
    print("\n3×3 convolution (bf16 CL = kernels.Conv2d: bf16 forward and input gradient, fp32 weight gradient)")
    print("| C_in | C_out | size | dilation | fp32 NCHW | fp32 CL | bf16 NCHW | bf16 CL |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c_in, c_out, s, d in CONVS:
        cells = [conv_case(c_in, c_out, s, d, b, dtype, layout)
                 for dtype in (torch.float32, torch.bfloat16) for layout in (torch.contiguous_format, CL)]
        print(f"| {c_in} | {c_out} | {s} | {d} | " + " | ".join(f"{v:.2f}" for v in cells) + " |", flush=True)
    print("\nbf16 channels-last backward: input gradient (bf16) and weight gradient (fp32, casts included)")
    print("| C_in | C_out | size | dilation | input grad | weight grad |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c_in, c_out, s, d in CONVS:
        dgrad, wgrad = split_case(c_in, c_out, s, d, b)
        print(f"| {c_in} | {c_out} | {s} | {d} | {dgrad:.2f} | {wgrad:.2f} |", flush=True)
    print("\nbilinear ×2 resize, float32, gradient = a channel slice (cat backward)")
    print("| channels | size | NCHW stock | CL stock | NCHW via kernels.upsample | CL via kernels.upsample |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c, s in RESIZES:
        cells = [resize_case(c, s, b, layout, w) for w in (False, True) for layout in (torch.contiguous_format, CL)]
        print(f"| {c} | {s} | " + " | ".join(f"{v:.3f}" for v in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
