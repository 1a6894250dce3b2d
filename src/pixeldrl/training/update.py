"""One PA3C update and one epoch of them (the synchronous batched form of Algorithm 1).

Each update rolls out one ``t_max``-step episode on a batch with sampled actions, computes the
PA3C losses (``rl/pa3c.py``) and takes one Adam step. :class:`ShardThreads` (``--shards N``) computes
the same gradient with the batch split over threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from pixeldrl.config import TrainConfig
from pixeldrl.data.folder import SliceDataset
from pixeldrl.data.transforms import augment_batch
from pixeldrl.progress import bar
from pixeldrl.rl.pa3c import Agent, draw_grad_steps, draw_uniforms, episode_losses, episode_stats
from pixeldrl.training.run import batch_dice, epoch_batches

class ShardThreads:
    """Exact in-process data parallelism over a batch (``--shards N``).

        One small convolution cannot keep several cores busy (the demo's network spends most of its
        time in 8- to 24-channel convolutions at 128²). ``--shards N`` splits every batch into N
        shards and runs each shard's episode, losses and backward pass on its own thread with
        ``threads / N`` intra-op threads; the shards' gradients, weighted by their share of the
        batch, sum to the whole batch's gradient, and the action samples are the whole batch's
        (each shard takes its slice of the episode's uniforms). The same computation as one batch
        (``tests/training/test_parallel.py``), unlike the asynchronous workers.


    ``threads_per_shard`` intra-op threads per shard thread (default: the process's threads / N);
    the calling thread keeps its own setting for validation and inference.
    """

    def __init__(self, n: int, threads_per_shard: int | None = None):
        self.n = n
        per = threads_per_shard or max(1, torch.get_num_threads() // n)
        # set_num_threads in the pool's threads only: each thread's OpenMP team size is its own.
        self.pool = ThreadPoolExecutor(n, thread_name_prefix="pa3c-shard", initializer=torch.set_num_threads,
                                       initargs=(per,))

    def backward(self, agent: Agent, images: torch.Tensor, masks: torch.Tensor, uniforms: torch.Tensor,
                 cfg: TrainConfig, grad_steps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Set every parameter's ``.grad`` to the batch's PA3C gradient; returns (stats, final masks).

        images (B, C, H, W), masks (B, H, W), uniforms (T, B, H, W). ``stats`` holds the batch's
        total, policy, value, per-step entropy and mean reward, as :func:`pa3c_update` logs them.
        """
        b = images.shape[0]
        params = [p for p in agent.parameters() if p.requires_grad]
        parts = [(x, y, u) for x, y, u in zip(images.tensor_split(self.n), masks.tensor_split(self.n),
                                              uniforms.tensor_split(self.n, dim=1)) if len(x)]

        def shard(part):
            x, y, u = part
            ro, losses = episode_losses(agent, x, y, cfg, u, grad_steps)
            share = x.shape[0] / b  # the shard's part of the batch mean
            grads = torch.autograd.grad(losses.total * share, params, allow_unused=True)
            return grads, episode_stats(ro, losses, cfg.t_max) * share, ro.final_mask

        results = list(self.pool.map(shard, parts))
        for i, p in enumerate(params):
            grads = [r[0][i] for r in results if r[0][i] is not None]
            p.grad = torch.stack(grads).sum(0) if grads else None  # in shard order: deterministic
        stats = torch.stack([r[1] for r in results]).sum(0)
        return stats, torch.cat([r[2] for r in results])

    def close(self) -> None:
        self.pool.shutdown()


STAT_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "mean_reward")


def pa3c_update(agent: Agent, opt: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor,
                cfg: TrainConfig, sample_gen: torch.Generator, grad_hook=None,
                shards: ShardThreads | None = None) -> tuple[list[float], list[float]]:
    """One PA3C update on a batch (B, C, S, S), (B, S, S): rollout, losses, backward, optimiser step.

    ``grad_hook(agent)`` runs between backward and the step: the asynchronous workers hand their
    gradients to the shared parameters there, data-parallel ranks average theirs. ``shards`` runs
    the batch as shards on threads (the same gradient; ``ShardThreads``).
    Returns the update's ``STAT_KEYS`` values and the sampled episodes' per-image Dice.
    """
    uniforms = draw_uniforms(images, cfg.t_max, sample_gen)  # (T, B, S, S): the episode's action samples
    grad_steps = draw_grad_steps(cfg.t_max, cfg.grad_steps, sample_gen)  # (T,) bool or None (all steps)
    agent.zero_grad(set_to_none=True)
    if shards is None:
        ro, losses = episode_losses(agent, images, masks, cfg, uniforms, grad_steps)
        losses.total.backward()
        stats, final_mask = episode_stats(ro, losses, cfg.t_max), ro.final_mask
    else:
        stats, final_mask = shards.backward(agent, images, masks, uniforms, cfg, grad_steps)
    if grad_hook is not None:
        grad_hook(agent)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
    opt.step()
    return stats.tolist(), batch_dice(final_mask > 0, masks)  # one host sync per update, for the log


def summarize(stats: list[list[float]], dices: list[float]) -> dict:
    out = {k: float(np.mean([s[i] for s in stats])) for i, k in enumerate(STAT_KEYS)}
    out["train_dice"] = float(np.mean(dices))
    return out


def train_epoch(agent: Agent, opt: torch.optim.Optimizer, ds: SliceDataset, cfg: TrainConfig,
                device: torch.device, shuffle_gen: torch.Generator, sample_gen: torch.Generator,
                progress: bool, batches: list[torch.Tensor] | None = None, grad_hook=None,
                shards: ShardThreads | None = None, after_step=None) -> dict:
    """One pass over the training split; returns the epoch's mean losses, reward, entropy, Dice.
    ``after_step()`` runs after every optimiser step (the weight average's update)."""
    agent.train()
    batches = epoch_batches(len(ds), cfg.batch_size, shuffle_gen) if batches is None else batches
    stats, dices = [], []
    pbar = bar(batches, desc="train", unit="batch", leave=False, enabled=progress)
    for idx in pbar:
        images, masks = ds.images[idx].clone(), ds.masks[idx].clone()  # (B, C, S, S), (B, S, S)
        images, masks = augment_batch(images, masks, shuffle_gen, cfg.augment, cfg.zoom_out)
        s, d = pa3c_update(agent, opt, images.to(device), masks.to(device), cfg, sample_gen, grad_hook, shards)
        if after_step is not None:
            after_step()
        stats.append(s)
        dices += d
        pbar.set_postfix(loss=f"{s[0]:.3f}", dice=f"{np.mean(dices):.3f}")
    return summarize(stats, dices)
