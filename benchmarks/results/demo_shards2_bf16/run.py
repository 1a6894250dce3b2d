"""The demo's training configuration with ``--shards 2 --amp bf16`` (session 3, AMD EPYC 2 threads).

    python benchmarks/results/demo_shards2_bf16/run.py [OUT]

Writes the demo slices to runs/demo_data (if missing), trains into OUT (default /tmp/demo_fast)
and prints the wall time and the test split's metrics. log.csv / summary.json beside this file
are what it gave: 420 s wall, test DICE 0.655 (the default demo: 517 s, 0.611).
"""
import json
import sys
import time

from pixeldrl.config import make_config
from pixeldrl.demo import DEMO_TRAIN
from pixeldrl.demo_data import make_demo_dataset
from pixeldrl.train import train

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/demo_fast"
make_demo_dataset("runs/demo_data", size=DEMO_TRAIN["image_size"])
t = time.time()
cfg = make_config("small", data="runs/demo_data", out=out, **{**DEMO_TRAIN, "shards": 2, "amp": "bf16"})
run = train(cfg, progress=False)
print(f"wall {time.time() - t:.0f} s")
print(json.dumps(json.load(open(run / "summary.json"))["mean"], indent=1))
