"""Parallel PA3C: the asynchronous workers of Algorithm 1 (``--workers N``) and data-parallel
training across processes, GPUs and nodes with ``torchrun``. (Batch shards on threads, ``--shards
N``, compute one update's gradient: ``update.ShardThreads``.)

Asynchronous workers (CPU, Hogwild)
    The global agent's parameters and the Adam moments live in shared memory. Each of N worker
    processes keeps its own copy of the network; for every batch it copies the global parameters
    (the "synchronise at the start of every episode" of Algorithm 1), rolls out an episode, computes
    the PA3C gradients on its copy and applies them to the global parameters with the shared Adam,
    without locks. The main process queues each epoch's batches on one shared queue (a worker
    takes the next batch when it is free, so a worker slowed by the machine takes fewer), waits
    for all of them, then validates and checkpoints as in the synchronous form. With one worker,
    the updates are exactly those of the synchronous form on the same batches and seeds (worker r
    samples actions with seed + 1 + r; the synchronous form uses seed + 1). Workers share the
    machine's threads.

Data parallel (``torchrun``)
    ``torchrun --nproc-per-node G -m pixeldrl.cli train …``: every rank rolls out ``--batch-size``
    images of its shard of each global batch (global batch = batch size × world size, shards
    taken in order from the same shuffled epoch), the gradients are averaged across ranks after
    every backward pass, and every rank takes the same Adam step, so parameters stay identical.
    The learning rate is not scaled: the averaged gradient is the gradient of the global batch's
    mean loss. Backend: NCCL on CUDA (one GPU per rank, ``LOCAL_RANK``), gloo on CPU. Only rank 0
    writes the run folder. We average the gradients with one flattened ``all_reduce`` instead of
    wrapping the network in ``DistributedDataParallel``: the rollout calls the network ``t_max``
    times per backward pass through :class:`~pixeldrl.rl.pa3c.Agent`'s methods, and the return kernel
    ``w`` sits outside the network; the arithmetic is the same as DDP's.
"""

from __future__ import annotations

import os
import queue

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pixeldrl.config import TrainConfig
from pixeldrl.data.transforms import augment_batch
from pixeldrl.models import build_agent
from pixeldrl.rl.pa3c import Agent
from pixeldrl.training.update import pa3c_update

# --------------------------------------------------------------------------- data parallel


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun set up (once); returns (rank, world size)."""
    rank, world, _ = dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world


def average_gradients(agent: Agent) -> None:
    """All-reduce the mean of every parameter's gradient across ranks (one flattened tensor)."""
    world = dist.get_world_size()
    params = [p for p in agent.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def shard_batches(batches: list[torch.Tensor], batch_size: int, rank: int, world: int) -> list[torch.Tensor]:
    """This rank's part of each global batch of ``batch_size × world`` indices.

    Every rank must take the same number of steps (each step all-reduces), so a short last global
    batch is split as evenly as possible, and dropped when it cannot give every rank an image.
    """
    flat = torch.cat(batches) if batches else torch.empty(0, dtype=torch.long)
    step = batch_size * world
    out = []
    for start in range(0, len(flat), step):
        chunk = flat[start:start + step]
        if len(chunk) >= world:
            out.append(torch.tensor_split(chunk, world)[rank])
    return out


# --------------------------------------------------------------------------- asynchronous workers


def share_adam_state(opt: torch.optim.Adam) -> list[dict]:
    """Create (or move) Adam's moments into shared memory; returns them in parameter order."""
    states = []
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state[p]
            if not st:  # Adam creates these lazily at its first step; create them now, shared
                st["step"] = torch.zeros(())
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            for v in st.values():
                if torch.is_tensor(v):
                    v.share_memory_()
            states.append(st)
    return states


def _worker(rank: int, cfg: TrainConfig, global_agent: Agent, states: list[dict], sets: list[tuple[torch.Tensor, torch.Tensor]],
            threads: int, jobs, results) -> None:
    torch.set_num_threads(threads)
    local = build_agent(cfg)
    local.set_fast_paths(cfg.channels_last, amp=cfg.amp, recompute=cfg.recompute)
    local.train()
    params = list(global_agent.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    for p, st in zip(params, states):
        opt.state[p] = st
    sample_gen = torch.Generator().manual_seed(cfg.seed + 1 + rank)
    flip_gen = torch.Generator().manual_seed(cfg.seed + 1000 + rank)

    def push_grads(agent: Agent) -> None:
        for gp, lp in zip(params, agent.parameters()):
            gp.grad = lp.grad

    while True:
        job = jobs.get()  # one batch at a time from the shared queue: a slowed worker takes fewer
        if job is None:
            return
        lr, which, idx = job
        for g in opt.param_groups:
            g["lr"] = lr
        local.load_state_dict(global_agent.state_dict())  # sync with the global parameters
        images, masks = sets[which]
        x, y = images[idx].clone(), masks[idx].clone()
        x, y = augment_batch(x, y, flip_gen, cfg.augment, cfg.zoom_out)
        s, d = pa3c_update(local, opt, x, y, cfg, sample_gen, grad_hook=push_grads)
        results.put((s, d))


class AsyncWorkers:
    """N persistent worker processes training one shared agent (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, agent: Agent, opt: torch.optim.Adam, images: torch.Tensor,
                 masks: torch.Tensor, coarse: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``images``, ``masks``: the training split; ``coarse``: the same slices shrunk for the
        coarse epochs (``coarse_epochs``), if any. Both are shared with the workers once, here."""
        self.n = cfg.workers
        agent.share_memory()
        states = share_adam_state(opt)
        sets = [(images, masks)] + ([coarse] if coarse is not None else [])
        sets = [(x.share_memory_(), y.share_memory_()) for x, y in sets]
        threads = max(1, torch.get_num_threads() // self.n)
        ctx = mp.get_context("spawn")
        self.jobs = ctx.SimpleQueue()  # shared by all workers: whoever is free takes the next batch
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=_worker, args=(r, cfg, agent, states, sets, threads,
                                                        self.jobs, self.results), daemon=True)
                      for r in range(self.n)]
        for proc in self.procs:
            proc.start()

    def run_epoch(self, batches: list[torch.Tensor], lr: float, after_step=None, coarse: bool = False) -> tuple[list, list]:
        """Queue the epoch's batches, wait for all of them; (stats, dices) of the epoch.
        ``after_step()`` runs in this process as each worker's update arrives (the weight average
        reads the shared parameters then). ``coarse``: the batches index the shrunk slices."""
        for idx in batches:
            self.jobs.put((lr, int(coarse), idx))
        stats, dices = [], []
        while len(stats) < len(batches):
            try:
                s, d = self.results.get(timeout=5)
            except queue.Empty:
                dead = [r for r, proc in enumerate(self.procs) if not proc.is_alive()]
                if dead:
                    raise RuntimeError(f"asynchronous PA3C worker(s) {dead} died; see their error above")
                continue
            stats.append(s)
            dices += d
            if after_step is not None:
                after_step()
        return stats, dices

    def close(self) -> None:
        for _ in self.procs:
            self.jobs.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
