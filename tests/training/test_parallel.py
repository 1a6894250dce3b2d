"""Parallel PA3C: batch shards on threads give the whole batch's gradient; one asynchronous worker
equals the synchronous form; a data-parallel step over two gloo ranks equals one process on the same
global batch; ``--shards 2``, ``--workers 2`` and ``torchrun`` run end to end."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from pixeldrl.config import make_config
from pixeldrl.data.folder import SliceDataset
from pixeldrl.data.transforms import shrink
from pixeldrl.rl.pa3c import Agent, pa3c_losses, rollout
from pixeldrl.training.parallel import AsyncWorkers, average_gradients, shard_batches
from pixeldrl.training.run import epoch_batches
from pixeldrl.training.update import ShardThreads, pa3c_update, train_epoch
from synth_datasets import make_folder, random_batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def max_param_diff(a: Agent, b: Agent) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("batch_size,n_shards", [(4, 2), (3, 2), (2, 3)])
def test_batch_shards_on_threads_give_the_whole_batch_gradient(batch_size, n_shards):
    """Same actions, same losses, same gradient as one batch (odd splits and more shards than images too).
    (Not the parameters after the step: Adam's first step is ±lr wherever a gradient is nearly zero,
    so float rounding in a near-zero gradient moves a weight by up to 2·lr.)"""
    images, masks = random_batch(n=batch_size, size=16)
    cfg = make_config("small", data="unused", image_size=16, batch_size=batch_size, lr=1e-3, seed=2)
    torch.manual_seed(0)
    whole = Agent(cfg.net_config(), cfg.kernel_size, cfg.init_keep_prob)
    sharded = copy.deepcopy(whole)
    results = {}
    shards = ShardThreads(n_shards)
    try:
        for name, agent, pool in (("whole", whole, None), ("sharded", sharded, shards)):
            opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
            stats, dices = pa3c_update(agent, opt, images, masks, cfg, torch.Generator().manual_seed(7), shards=pool)
            results[name] = stats, dices, {n: p.grad.clone() for n, p in agent.named_parameters()}
    finally:
        shards.close()
    (s_w, d_w, g_w), (s_s, d_s, g_s) = results["whole"], results["sharded"]
    assert d_s == d_w  # the same sampled actions: identical final masks, identical Dice
    np.testing.assert_allclose(s_s, s_w, rtol=1e-5, atol=1e-7)
    assert g_s.keys() == g_w.keys()
    for n in g_w:
        torch.testing.assert_close(g_s[n], g_w[n], rtol=1e-4, atol=1e-7, msg=n)
    assert any(g.abs().max() > 0 for g in g_w.values())


def test_shard_threads_leave_the_calling_thread_setting():
    n = torch.get_num_threads()
    shards = ShardThreads(2, threads_per_shard=1)
    try:
        assert list(shards.pool.map(lambda _: torch.get_num_threads(), range(2))) == [1, 1]
        assert torch.get_num_threads() == n
    finally:
        shards.close()


@pytest.mark.parametrize("coarse", [False, True])
def test_one_async_worker_equals_the_synchronous_form(coarse):
    # coarse: the worker also holds the shrunk slices of the coarse epochs and must train on them.
    images, masks = random_batch(n=8, size=16)
    cfg = make_config("small", data="unused", image_size=16, batch_size=2, lr=1e-3, seed=3, workers=1)
    small = shrink(images, masks, 8)
    torch.manual_seed(0)
    sync_agent = Agent(cfg.net_config(), cfg.kernel_size, cfg.init_keep_prob)
    async_agent = copy.deepcopy(sync_agent)
    for agent in (sync_agent, async_agent):
        agent.set_fast_paths(cfg.channels_last)
    sync_opt = torch.optim.Adam(sync_agent.parameters(), lr=cfg.lr)
    async_opt = torch.optim.Adam(async_agent.parameters(), lr=cfg.lr)
    batches = epoch_batches(len(images), cfg.batch_size, torch.Generator().manual_seed(0))
    assert max_param_diff(sync_agent, async_agent) == 0

    ds = SliceDataset(*(small if coarse else (images, masks)), [f"s{i}" for i in range(len(images))],
                      [(16, 16)] * len(images))
    sample_gen = torch.Generator().manual_seed(cfg.seed + 1)  # what train() gives the synchronous form
    train_epoch(sync_agent, sync_opt, ds, cfg, torch.device("cpu"), torch.Generator(), sample_gen, False, batches)

    workers = AsyncWorkers(cfg, async_agent, async_opt, images.clone(), masks.clone(),
                           tuple(t.clone() for t in small))
    try:
        stats, dices = workers.run_epoch(batches, cfg.lr, coarse=coarse)
    finally:
        workers.close()
    assert len(stats) == len(batches) and len(dices) == len(images)
    moved = max((p - q).abs().max().item() for p, q in zip(sync_agent.parameters(),
                                                          Agent(cfg.net_config()).parameters()))
    assert moved > 0  # training changed the weights
    assert max_param_diff(sync_agent, async_agent) < 1e-5
    for p, q in zip(sync_opt.state.values(), async_opt.state.values()):
        torch.testing.assert_close(p["exp_avg"], q["exp_avg"], rtol=1e-4, atol=1e-7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_step(rank, world, port, state, images, masks, batch_size, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cfg = make_config("small", data="unused", image_size=16, batch_size=batch_size, lr=1e-3)
    agent = Agent(cfg.net_config(), cfg.kernel_size, cfg.init_keep_prob)
    agent.load_state_dict(state)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    idx = shard_batches([torch.arange(len(images))], batch_size, rank, world)[0]
    pa3c_update(agent, opt, images[idx], masks[idx], cfg, torch.Generator().manual_seed(cfg.seed + 1 + rank),
                grad_hook=average_gradients)
    out[rank] = {k: v.clone() for k, v in agent.state_dict().items()}
    dist.destroy_process_group()


def test_data_parallel_step_equals_one_process_on_the_global_batch():
    world, batch_size = 2, 2
    images, masks = random_batch(n=world * batch_size, size=16)
    cfg = make_config("small", data="unused", image_size=16, batch_size=batch_size, lr=1e-3)
    torch.manual_seed(0)
    agent = Agent(cfg.net_config(), cfg.kernel_size, cfg.init_keep_prob)
    state = {k: v.clone() for k, v in agent.state_dict().items()}

    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.start_processes(_rank_step, args=(world, _free_port(), state, images, masks, batch_size, out),
                       nprocs=world, start_method="spawn")

    # One process, the global batch: each shard's actions from the stream its rank would use;
    # the loss of the global batch is the mean of the shards' losses (equal shard sizes).
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    total = 0
    for r in range(world):
        sl = slice(r * batch_size, (r + 1) * batch_size)
        ro = rollout(agent, images[sl], masks[sl], cfg.t_max, generator=torch.Generator().manual_seed(cfg.seed + 1 + r))
        total = total + pa3c_losses(ro, agent.return_kernel, cfg.gamma, cfg.value_coef, cfg.entropy_beta).total / world
    opt.zero_grad()
    total.backward()
    opt.step()
    ref = agent.state_dict()
    for r in range(world):
        for k in ref:
            torch.testing.assert_close(out[r][k], ref[k], rtol=1e-4, atol=1e-6, msg=f"rank {r} {k}")
    assert any(not torch.equal(state[k], ref[k]) for k in ref)  # the step moved something


CLI_FAST = ["--preset", "small", "--epochs", "2", "--image-size", "16", "--batch-size", "2"]


def _run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)


def test_cli_async_workers_train_end_to_end(tmp_path):
    data = make_folder(tmp_path / "data", n=8)
    r = _run([sys.executable, "-m", "pixeldrl.cli", "train", "--data", str(data), *CLI_FAST, "--workers", "2",
              "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + 2 epochs
    assert (tmp_path / "run" / "checkpoint_best.pt").is_file()


def test_cli_shards_with_bf16_train_end_to_end(tmp_path):
    """``--shards 2 --amp bf16`` on CPU: bf16 falls back to NCHW there (oneDNN's channels-last bf16 crashes)."""
    data = make_folder(tmp_path / "data", n=8)
    r = _run([sys.executable, "-m", "pixeldrl.cli", "train", "--data", str(data), *CLI_FAST, "--shards", "2",
              "--amp", "bf16", "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 3
    assert (tmp_path / "run" / "checkpoint_best.pt").is_file()


def test_torchrun_two_ranks_end_to_end_only_rank0_writes(tmp_path):
    data = make_folder(tmp_path / "data", n=8)
    r = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
              "-m", "pixeldrl.cli", "train", "--data", str(data), *CLI_FAST, "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 3
    assert r.stdout.count("run folder:") == 1  # rank 1 printed nothing
