"""Seconds per PA3C update on CPU for each execution path, one layer workaround at a time, in one process.

    python benchmarks/cpu_update.py [--threads 1 2] [--batch 2] [--size 128] [--rounds 5]

The demo's update (``small`` preset, batch 2, 128², t_max 10: rollout, losses, backward, Adam) for
each path below; the paths take turns (``--rounds`` rounds of 3 updates each, median reported), so a
shared machine's drifts hit all of them alike. ``plain`` is the straightforward version (NCHW, float32,
stock kernels). ``-nogn`` / ``-noup`` switch off one workaround of ``pixeldrl.nets.kernels`` (GroupNorm
through the NCHW kernel; resizing on channels-last tensors), to show what each contributes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from machine import cpu_name

from pixeldrl.config import make_config
from pixeldrl.experiments.demo import DEMO_TRAIN
from pixeldrl.nets.kernels import GroupNorm
from pixeldrl.nets.pixeldrl_mg import DilatedHead, net_config
from pixeldrl.rl.pa3c import Agent, draw_uniforms, episode_losses

# name → (set_fast_paths arguments, workarounds switched off afterwards)
PATHS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "plain": (dict(channels_last=False), ()),
    "cl-nogn-noup": (dict(channels_last=True), ("gn", "up")),
    "cl-nogn": (dict(channels_last=True), ("gn",)),
    "cl": (dict(channels_last=True), ()),
    "bf16-nchw": (dict(channels_last=False, amp="bf16"), ()),
    "bf16-nogn": (dict(channels_last=True, amp="bf16"), ("gn",)),
    "bf16": (dict(channels_last=True, amp="bf16"), ()),
}


def build(base: Agent, name: str) -> Agent:
    options, off = PATHS[name]
    agent = copy.deepcopy(base).set_fast_paths(**options)
    for m in agent.net.modules():
        if ("gn" in off and isinstance(m, GroupNorm)) or ("up" in off and isinstance(m, DilatedHead)):
            m.cpu_workaround = False
    return agent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=DEMO_TRAIN["image_size"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    a = p.parse_args()
    cfg = make_config("small", data="unused", **DEMO_TRAIN)
    torch.manual_seed(0)
    base = Agent(net_config("small"))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(a.batch, 1, a.size, a.size, generator=g)  # (B, 1, S, S)
    gt = (torch.rand(a.batch, a.size, a.size, generator=g) > 0.7).float()  # (B, S, S)
    agents = {name: build(base, name) for name in a.paths}
    opts = {name: torch.optim.Adam(agent.parameters(), cfg.lr) for name, agent in agents.items()}

    def update(name: str) -> None:
        agent = agents[name]
        uniforms = draw_uniforms(images, cfg.t_max, torch.Generator().manual_seed(1))  # (T, B, S, S)
        agent.zero_grad(set_to_none=True)
        _, losses = episode_losses(agent, images, gt, cfg, uniforms)
        losses.total.backward()
        opts[name].step()

    print(f"{cpu_name()} | torch {torch.__version__} | small preset | {a.size}x{a.size} | batch {a.batch} | "
          f"median of {a.rounds} rounds of 3 updates, paths in turn")
    print("| threads | path | s per update | speed-up vs plain |")
    print("|---:|---|---:|---:|")
    for threads in a.threads:
        torch.set_num_threads(threads)
        for name in a.paths:  # warm-up: oneDNN primitive creation, allocator
            update(name)
            update(name)
        times: dict[str, list[float]] = {name: [] for name in a.paths}
        for _ in range(a.rounds):
            for name in a.paths:
                t0 = time.perf_counter()
                for _ in range(3):
                    update(name)
                times[name].append((time.perf_counter() - t0) / 3)
        base_s = statistics.median(times["plain"]) if "plain" in times else None
        for name in a.paths:
            s = statistics.median(times[name])
            ratio = f"{base_s / s:.2f}×" if base_s else "–"
            print(f"| {threads} | {name} | {s:.3f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
