"""Throughput benchmark: PixelDRL-MG (PA3C training and greedy inference) against MONAI's U-Net.

    python benchmarks/bench.py                       # CPU, paper preset, 256×256, batch 2
    python benchmarks/bench.py --device cuda --batch-sizes 2 16 64 --variants plain cl cl,bf16 bf16,recompute

``--variants``: comma-joined fast paths of ``Agent.set_fast_paths`` per PixelDRL-MG row — ``plain``
(the straightforward version: NCHW, float32), ``cl`` (channels-last), ``bf16`` (autocast),
``recompute`` (activation checkpointing), ``two`` (the two-phase update: the episode without
gradients, then one forward/backward over all t_max·B states). The U-Net runs once per
batch size, in bf16 when any variant uses it.

Plain PyTorch timing: warm-up iterations, then the median of ``--repeats`` timed iterations, with
``torch.cuda.synchronize()`` around each on CUDA. For each (model, batch size) it prints:

* train slices/s — PixelDRL-MG: one full PA3C update (t_max sampled steps forward, returns,
  losses, one backward, one Adam step); U-Net: one Dice+CE supervised step.
* infer slices/s — PixelDRL-MG: the greedy ``t_max``-step episode, all steps run (no early stop,
  so the figure does not depend on the weights); U-Net: one forward pass.
* peak memory (CUDA only) and achieved model TFLOP/s, from a FLOP count of one forward pass
  (``torch.utils.flop_counter``), counting backward as twice the forward.

The table names the device (CPU model or GPU card), torch version and settings; copy it into
BENCHMARKS.md with the command and commit.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from machine import cpu_name

from pixeldrl.rl import env
from pixeldrl.nets.pixeldrl_mg import net_config
from pixeldrl.rl.pa3c import Agent, pa3c_losses, rollout, rollout_two_phase


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return float(fc.get_total_flops())


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_pixeldrl(preset: str, batch: int, size: int, device: torch.device, variant: str, warmup: int,
                   repeats: int, t_max: int = env.T_MAX) -> dict:
    torch.manual_seed(0)
    flags = set(variant.split(",")) - {"plain"}
    unknown = flags - {"cl", "bf16", "recompute", "two"}
    if unknown:
        raise SystemExit(f"unknown variant flags {sorted(unknown)}")
    agent = Agent(net_config(preset), 3).to(device)
    agent.set_fast_paths(channels_last="cl" in flags, amp="bf16" if "bf16" in flags else "none",
                         recompute="recompute" in flags)
    amp = contextlib.nullcontext  # the agent applies its own autocast
    opt = torch.optim.Adam(agent.parameters(), lr=1e-4)
    images = torch.rand(batch, 1, size, size, device=device)
    gt = (images[:, 0] > 0.5).float()
    gen = torch.Generator(device=device).manual_seed(0)

    def train_step():
        with amp():
            ro = (rollout_two_phase if "two" in flags else rollout)(agent, images, gt, t_max, generator=gen)
            losses = pa3c_losses(ro, agent.return_kernel, 0.95, 0.5, 0.01)
        opt.zero_grad(set_to_none=True)
        losses.total.backward()
        opt.step()

    @torch.no_grad()
    def infer():
        with amp():
            mask = env.initial_mask(images)
            for _ in range(t_max):
                action, *_ = agent.get_action_and_value(env.observe(images, mask), greedy=True)
                mask = env.update_mask(mask, action)

    flops = forward_flops(agent.net, images[:1]) * batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_train = timed(train_step, device, warmup, repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    t_inf = timed(infer, device, warmup, repeats)
    return dict(train=batch / t_train, infer=batch / t_inf, peak=peak,
                train_tflops=3 * t_max * flops / t_train / 1e12, infer_tflops=t_max * flops / t_inf / 1e12,
                gflop=flops / batch / 1e9)


def bench_unet(batch: int, size: int, device: torch.device, amp, warmup: int, repeats: int) -> dict:
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    images = torch.rand(batch, 1, size, size, device=device)
    labels = (images > 0.5).long()

    def train_step():
        with amp():
            loss = loss_fn(net(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer():
        with amp():
            net(images).argmax(1)

    flops = forward_flops(net, images[:1]) * batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_train = timed(train_step, device, warmup, repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    t_inf = timed(infer, device, warmup, repeats)
    return dict(train=batch / t_train, infer=batch / t_inf, peak=peak, train_tflops=3 * flops / t_train / 1e12,
                infer_tflops=flops / t_inf / 1e12, gflop=flops / batch / 1e9)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="paper")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[2])
    p.add_argument("--variants", nargs="+", default=["plain", "cl"], help="fast-path sets, e.g. plain cl cl,bf16")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-unet", action="store_true")
    a = p.parse_args(argv)
    device = torch.device(a.device)

    unet_amp = "bf16" if any("bf16" in v for v in a.variants) else "none"

    def amp():
        if unet_amp == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    print(f"device: {device_name(device)} | torch {torch.__version__} | {a.size}x{a.size} | t_max {env.T_MAX} "
          f"| U-Net amp {unet_amp} | median of {a.repeats} after {a.warmup} warm-up")
    header = "| model | variant | batch | GFLOP/fwd/slice | train slices/s | infer slices/s | peak GiB | train TFLOP/s | infer TFLOP/s |"
    print(header)
    print("|" + "---|" * 9)
    for b in a.batch_sizes:
        jobs = [(f"PixelDRL-MG ({a.preset})", v, lambda v=v: bench_pixeldrl(a.preset, b, a.size, device, v, a.warmup,
                                                                           a.repeats)) for v in a.variants]
        if not a.no_unet:
            jobs.append(("MONAI BasicUNet", unet_amp, lambda: bench_unet(b, a.size, device, amp, a.warmup, a.repeats)))
        for name, variant, job in jobs:
            try:
                r = job()
            except torch.cuda.OutOfMemoryError:
                print(f"| {name} | {variant} | {b} | out of memory | | | | | |", flush=True)
                torch.cuda.empty_cache()
                continue
            print(f"| {name} | {variant} | {b} | {r['gflop']:.1f} | {r['train']:.2f} | {r['infer']:.2f} | {r['peak']:.2f} "
                  f"| {r['train_tflops']:.3f} | {r['infer_tflops']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
