"""Peak memory of one PA3C update with and without recomputation (``--recompute``), one process each.

    python benchmarks/memory.py [--preset paper] [--size 256] [--batch-sizes 2 4] [--device cpu|cuda]

Each (batch, variant) runs in a fresh process: one update (rollout of t_max steps, losses,
backward, Adam step) after building the agent; the peak is ``torch.cuda.max_memory_allocated`` on
CUDA and the growth of the process's peak resident memory (``ru_maxrss``) over the same process
just before the update on CPU, so both count what the update itself needs: mostly the t_max steps'
stored activations, which recomputation replaces by one step's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def one_update(preset: str, size: int, batch: int, device: str, recompute: bool) -> dict:
    from pixeldrl.rl import env
    from pixeldrl.nets.pixeldrl_mg import net_config
    from pixeldrl.rl.pa3c import Agent, pa3c_losses, rollout

    dev = torch.device(device)
    torch.manual_seed(0)
    agent = Agent(net_config(preset)).to(dev).set_fast_paths(channels_last=None, recompute=recompute)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-4)
    images = torch.rand(batch, 1, size, size, device=dev)  # (B, 1, S, S)
    gt = (images[:, 0] > 0.5).float()  # (B, S, S)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    t0 = time.perf_counter()
    ro = rollout(agent, images, gt, env.T_MAX, generator=torch.Generator(device=dev).manual_seed(0))
    losses = pa3c_losses(ro, agent.return_kernel, 0.95, 0.5, 0.01)
    opt.zero_grad(set_to_none=True)
    losses.total.backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak_gib": peak / 2**30, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="paper")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 4])
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # BATCH RECOMPUTE: run one update, print JSON
    a = p.parse_args()
    if a.child:
        try:
            r = one_update(a.preset, a.size, int(a.child[0]), a.device, a.child[1] == "1")
        except torch.cuda.OutOfMemoryError:
            r = {"peak_gib": float("nan"), "seconds": float("nan")}  # printed as "nan": did not fit
        print(json.dumps(r))
        return
    print(f"{a.device} | torch {torch.__version__} | {a.preset} preset | {a.size}x{a.size} | one update per process")
    print("| batch | variant | peak GiB (update) | seconds | memory saved |")
    print("|---:|---|---:|---:|---:|")
    for b in a.batch_sizes:
        plain = None
        for rec in (0, 1):
            out = subprocess.run([sys.executable, __file__, "--preset", a.preset, "--size", str(a.size),
                                  "--device", a.device, "--child", str(b), str(rec)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            plain = r["peak_gib"] if not rec else plain
            saved = f"{plain / r['peak_gib']:.1f}×" if rec and r["peak_gib"] > 0 and plain == plain else "–"
            name = "recompute" if rec else "stored activations"
            print(f"| {b} | {name} | {r['peak_gib']:.2f} | {r['seconds']:.1f} | {saved} |", flush=True)


if __name__ == "__main__":
    main()
