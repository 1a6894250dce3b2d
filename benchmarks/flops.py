"""Where the FLOPs of one PixelDRL-MG forward pass go, per module (no GPU needed).

    python benchmarks/flops.py [--preset paper] [--size 256] [--depth 2]

Counts with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs) for one image
at ``--size``², batch 1, and prints each module's share. A training update of t_max steps costs
about 3 × t_max forward passes (backward ≈ 2 × forward); greedy inference up to t_max.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixeldrl.nets.pixeldrl_mg import PixelDRLNet, count_parameters, net_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--depth", type=int, default=2, help="module nesting shown (1: trunk / sam / heads)")
    a = p.parse_args()
    net = PixelDRLNet(net_config(a.preset)).eval()
    x = torch.rand(1, 1, a.size, a.size)
    counter = FlopCounterMode(display=False, depth=a.depth)
    with counter, torch.no_grad():
        net(x)
    total = counter.get_total_flops()
    # Module names are dotted paths (PixelDRLNet.trunk.…); show every level down to --depth, in order.
    rows = sorted((name, sum(ops.values())) for name, ops in counter.get_flop_counts().items()
                  if name != "Global" and 1 <= name.count(".") <= a.depth)
    params = count_parameters(net)["total"]
    print(f"PixelDRL-MG {a.preset} preset ({params / 1e6:.2f} M parameters), {a.size}x{a.size}, batch 1: "
          f"{total / 1e9:.1f} GFLOP per forward pass\n")
    print("| module | GFLOP | share |\n|---|---:|---:|")
    for name, flops in rows:
        indent = "&nbsp;&nbsp;" * (name.count(".") - 1)
        print(f"| {indent}{name.split('.', 1)[1]} | {flops / 1e9:.2f} | {100 * flops / total:.1f} % |")


if __name__ == "__main__":
    main()
