"""PA3C: the agent, the episode rollout, the n-step returns of Eq. 8 and the actor-critic losses.

This module owns the reinforcement-learning maths; ``train.py`` owns the loop around it.

* :class:`Agent` — the network (θ_s, θ_p, θ_v) plus the learned reward-map kernel ``w`` of Eq. 8.
  Two calls, as in CleanRL: :meth:`Agent.get_value` and :meth:`Agent.get_action_and_value`.
* :func:`rollout` — one episode of ``t_max`` steps on a batch, actions sampled from π.
* :func:`nstep_returns` — Eq. 8: ``R(t) = r(t) + γ · (w ∗ R(t+1))``, ``R(t_max) = V(s(t_max))``.
* :func:`pa3c_losses` — advantage ``A = R − V``; policy ``−log π(a|s) · A`` (A detached); value
  ``½ (R − V)²``; entropy bonus. Each is summed over the ``t_max`` steps and averaged over pixels and
  batch; the total is ``policy + value_coef · value − entropy_beta · entropy``. The trunk receives
  the sum of both heads' gradients (Eq. 16) because both losses flow through it.
  With ``alive_only`` (default) the policy and entropy terms average over the agents whose pixel
  is still unzeroed (see :func:`pa3c_losses`; the paper averages over all pixels: ``alive_only=False``).

The kernel ``w`` is learned through the value loss only, because PAPER.md detaches A in the policy
loss (PixelRL also let the policy loss reach ``w``; that is a one-line change in ``pa3c_losses``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from . import env
from .kernels import set_cpu_workarounds
from .model import NetConfig, PixelDRLNet


class ReturnKernel(nn.Module):
    """The learned k×k neighbour-weighting kernel ``w`` of Eq. 8, initialised to the identity (a delta).

    With the delta, ``w ∗ R`` is R itself and Eq. 8 is the ordinary n-step return; learning lets a
    pixel's return borrow from its neighbours' (PixelRL's "reward map convolution").
    """

    def __init__(self, size: int = 3):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"return kernel size must be a positive odd number, got {size}")
        weight = torch.zeros(1, 1, size, size)
        weight[0, 0, size // 2, size // 2] = 1.0
        self.weight = nn.Parameter(weight)  # (1, 1, k, k)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(B, H, W) → (B, H, W): zero-padded 2-D convolution with ``w``."""
        k = self.weight.shape[-1]
        return F.conv2d(r.unsqueeze(1), self.weight, padding=k // 2).squeeze(1)


class Agent(nn.Module):
    """All trainable parts: the PixelDRL-MG network and the return kernel.

    ``init_keep_prob`` sets the policy's starting π(keep) through the bias of its output layer
    (chosen; the paper does not say). With π(keep) = 0.5 at the start, a pixel survives ten sampled
    steps with probability 0.5¹⁰ ≈ 0.001: every episode ends with an empty mask, "keep" and "zero"
    have almost the same return for every pixel, and learning stalls (measured on the demo data:
    train Dice 0.000 after 6 epochs). Starting at 0.95, about 60 % of pixels survive an episode and
    both actions' returns carry signal.
    """

    def __init__(self, net_cfg: NetConfig | None, kernel_size: int = 3, init_keep_prob: float = 0.95,
                 net: nn.Module | None = None):
        super().__init__()
        # ``net``: another network with the same interface (X → logits, V; ``policy.out`` conv), e.g. PixelRL's.
        self.net = net if net is not None else PixelDRLNet(net_cfg)
        self.return_kernel = ReturnKernel(kernel_size)
        if not 0 < init_keep_prob < 1:
            raise ValueError(f"init_keep_prob must be in (0, 1), got {init_keep_prob}")
        with torch.no_grad():
            bias = self.net.policy.out.bias
            bias.zero_()
            bias[env.KEEP] = math.log(init_keep_prob / (1 - init_keep_prob))
        self._plain_execution()

    def _plain_execution(self) -> None:
        """Execution options of :meth:`set_fast_paths` at their straightforward values."""
        self.amp_dtype: torch.dtype | None = None
        self.recompute = False
        set_cpu_workarounds(self.net, False)
        object.__setattr__(self, "_forward", self.net)  # not a submodule: keeps state_dict keys plain

    def set_fast_paths(self, channels_last: bool | None = False, amp: str = "none", compile: bool = False,
                       recompute: bool = False) -> "Agent":
        """Faster execution of the same network (benchmarks/bench.py measures each).

        * ``channels_last`` — NHWC memory format; oneDNN convolutions run without layout reorders
          (the same numbers up to float rounding). ``None`` picks by device: on for CPU, off for
          CUDA, where the GroupNorm network runs slower in NHWC (H100, paper preset, batch 2: 11.8
          vs 16.6 training slices/s, 28 vs 54 inference slices/s). On CPU it switches on the layer
          workarounds of :mod:`pixeldrl.kernels` (NCHW GroupNorm kernel, channels-last resizing).
        * ``amp="bf16"`` — bfloat16 autocast of the forward pass; logits and values come back as
          float32, and the returns and losses stay in float32. On CPU (fast with AVX512-BF16 or
          AMX) the convolutions' weight gradients are computed in float32 (:mod:`pixeldrl.kernels`:
          oneDNN's channels-last bf16 weight-gradient kernel crashes), and ``compile`` is refused
          (inductor's channels-last bf16 code reaches the same kernel).
        * ``compile`` — ``torch.compile`` of the network (pays on GPU; measured no gain on CPU).
        * ``recompute`` — activation checkpointing of each step's forward pass: the activations
          of the ``t_max`` steps are recomputed during backward instead of stored, so batches about
          ``t_max`` times larger fit at about a third more compute.
        """
        if amp not in ("none", "bf16"):
            raise ValueError(f"amp must be none or bf16, got {amp!r}")
        on_cpu = next(self.parameters()).device.type == "cpu"
        if channels_last is None:
            channels_last = on_cpu
        if on_cpu and amp == "bf16" and compile:
            raise ValueError("compile with amp=bf16 is not supported on CPU (oneDNN crash); use one of them")
        # The straightforward version (NCHW float32) keeps the stock kernels: it is the baseline.
        set_cpu_workarounds(self.net, on_cpu and (channels_last or amp == "bf16"))
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        self.recompute = recompute
        self.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        object.__setattr__(self, "_forward", torch.compile(self.net) if compile else self.net)
        return self

    def forward_net(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on X(t) (B, C, H, W) with the fast paths applied → float32 logits, V(s)."""
        amp = (torch.autocast(x.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            if self.recompute and torch.is_grad_enabled():
                logits, value = torch.utils.checkpoint.checkpoint(self._forward, x, use_reentrant=False)
            else:
                logits, value = self._forward(x)
        return logits.float(), value.float()  # (B, 2, H, W), (B, 1, H, W)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s) (B, H, W) for observations X(t) (B, C, H, W)."""
        return self.forward_net(x)[1].squeeze(1)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None,
                             greedy: bool = False, generator: torch.Generator | None = None,
                             uniform: torch.Tensor | None = None):
        """Sample (or re-score, or take the argmax of) per-pixel actions.

        Sampling draws one uniform per pixel from ``generator``, or takes them from ``uniform``
        (B, H, W) when given (the rollout draws a whole episode's at once).
        Returns ``action`` (B, H, W) int64, ``log π(action|s)`` (B, H, W), entropy (B, H, W),
        ``V(s)`` (B, H, W) and ``π(keep|s)`` (B, H, W).
        """
        logits, value = self.forward_net(x)  # (B, 2, H, W), (B, 1, H, W)
        logp = F.log_softmax(logits, dim=1)  # (B, 2, H, W)
        p_keep = logp[:, env.KEEP].exp()  # (B, H, W)
        if action is None:
            if greedy:
                action = logits.argmax(dim=1)
            else:
                if uniform is None:
                    uniform = torch.rand(p_keep.shape, device=p_keep.device, generator=generator)
                action = (uniform < p_keep).long()  # Bernoulli(π(keep|s)) per pixel
        logp_a = logp.gather(1, action.unsqueeze(1)).squeeze(1)
        entropy = -(logp.exp() * logp).sum(dim=1)
        return action, logp_a, entropy, value.squeeze(1), p_keep


@dataclass
class Rollout:
    """One episode on a batch; every tensor is (T, B, H, W) except ``bootstrap`` and ``final_mask``."""

    log_probs: torch.Tensor
    entropies: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    alive: torch.Tensor  # m(t) (T, B, H, W): 1 where the agent's pixel is still unzeroed at step t
    bootstrap: torch.Tensor  # V(s(t_max)) (B, H, W), no gradient
    final_mask: torch.Tensor  # m(t_max) (B, H, W)


def draw_uniforms(images: torch.Tensor, t_max: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The uniforms (T, B, H, W) that sample an episode's actions on images (B, C, H, W).

    One draw per episode (the same stream as T draws of (B, H, W)); drawing them up front keeps
    the random-number generator out of the step loop and lets ``parallel.ShardThreads`` hand each
    shard its slice, so a sharded batch samples exactly the actions of the whole batch.
    """
    b, _, h, w = images.shape
    return torch.rand((t_max, b, h, w), device=images.device, generator=generator)


def rollout(agent: Agent, images: torch.Tensor, gt: torch.Tensor, t_max: int = env.T_MAX,
            generator: torch.Generator | None = None, bootstrap_value: bool = False,
            uniforms: torch.Tensor | None = None) -> Rollout:
    """Run ``t_max`` sampled steps from m(0) = 1 on images (B, C, H, W) with ground truth gt (B, H, W).

    Actions are sampled with ``uniforms`` (T, B, H, W), drawn from ``generator`` when not given
    (:func:`draw_uniforms`).

    ``bootstrap`` is R(t_max): 0 by default, because the episode ends at t_max and no reward can
    follow (PixelRL's code marks the last state terminal); ``bootstrap_value=True`` uses
    V(s(t_max)) as Eq. 8 is written. The state carries no step counter, so V(s(t_max)) estimates
    the return of a pixel *earlier* in an episode: a foreground pixel that survived all t_max steps
    then gets a negative bootstrap (most foreground pixels are zeroed at some point early in
    training), which pushes the policy towards zeroing foreground.
    """
    b, _, h, w = images.shape
    shape = (t_max, b, h, w)
    # Preallocated buffers; in-place writes into them are recorded by autograd.
    log_probs = images.new_empty(shape)
    entropies = images.new_empty(shape)
    values = images.new_empty(shape)
    rewards = images.new_empty(shape)
    alive = images.new_empty(shape)
    if uniforms is None:
        uniforms = draw_uniforms(images, t_max, generator)  # (T, B, H, W)
    mask = env.initial_mask(images)  # (B, H, W)
    for t in range(t_max):
        action, logp_a, ent, value, _ = agent.get_action_and_value(env.observe(images, mask), uniform=uniforms[t])
        new_mask = env.update_mask(mask, action)
        log_probs[t], entropies[t], values[t] = logp_a, ent, value
        rewards[t] = env.reward(mask, new_mask, gt)
        alive[t] = mask
        mask = new_mask
    if bootstrap_value:
        with torch.no_grad():
            bootstrap = agent.get_value(env.observe(images, mask))
    else:
        bootstrap = torch.zeros_like(mask)
    return Rollout(log_probs, entropies, values, rewards, alive, bootstrap, mask)


def nstep_returns(rewards: torch.Tensor, bootstrap: torch.Tensor, gamma: float,
                  kernel: ReturnKernel) -> torch.Tensor:
    """Eq. 8: ``R(t) = r(t) + γ · (w ∗ R(t+1))`` backwards from ``R(t_max) = V(s(t_max))``.

    rewards (T, B, H, W), bootstrap (B, H, W) → returns (T, B, H, W), differentiable w.r.t. ``w``.
    """
    returns = []
    r_next = bootstrap
    for t in range(rewards.shape[0] - 1, -1, -1):
        r_next = rewards[t] + gamma * kernel(r_next)
        returns.append(r_next)
    return torch.stack(returns[::-1])


@dataclass
class Losses:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def pa3c_losses(ro: Rollout, kernel: ReturnKernel, gamma: float, value_coef: float,
                entropy_beta: float, alive_only: bool = True) -> Losses:
    """Actor-critic losses of one rollout (see the module docstring for the reductions)."""
    returns = nstep_returns(ro.rewards, ro.bootstrap, gamma, kernel)  # (T, B, H, W)
    advantage = returns - ro.values
    # Sum over the T steps, mean over batch and pixels.
    if alive_only:
        # Agents whose pixel is already zero cannot change anything: both actions have the same
        # return, so their policy-gradient term is zero in expectation and pure noise in a sample.
        # Dropping them leaves the expected gradient unchanged and removes most of its variance
        # (late in an episode most pixels are background and already zeroed).
        # Normalised per image and step (a mean over the image's alive pixels), so the batch mean
        # splits exactly across data-parallel shards.
        hw = ro.alive.shape[2] * ro.alive.shape[3]
        weight = ro.alive * (hw / ro.alive.sum(dim=(2, 3), keepdim=True).clamp_min(1))
    else:
        weight = torch.ones_like(ro.alive)
    policy = -(ro.log_probs * advantage.detach() * weight).mean(dim=(1, 2, 3)).sum()
    value = (0.5 * advantage.pow(2)).mean(dim=(1, 2, 3)).sum()
    entropy = (ro.entropies * weight).mean(dim=(1, 2, 3)).sum()
    total = policy + value_coef * value - entropy_beta * entropy
    return Losses(total, policy, value, entropy)


def episode_losses(agent: Agent, images: torch.Tensor, gt: torch.Tensor, cfg, uniforms: torch.Tensor) -> tuple[Rollout, Losses]:
    """One sampled episode on images (B, C, H, W) and its PA3C losses, with ``cfg``'s settings
    (a :class:`~pixeldrl.config.TrainConfig`: t_max, γ, value and entropy weights, bootstrap, alive-only)."""
    ro = rollout(agent, images, gt, cfg.t_max, bootstrap_value=cfg.bootstrap_value, uniforms=uniforms)
    return ro, pa3c_losses(ro, agent.return_kernel, cfg.gamma, cfg.value_coef, cfg.entropy_beta, cfg.alive_only)


def episode_stats(ro: Rollout, losses: Losses, t_max: int) -> torch.Tensor:
    """(5,) what the training log keeps of an episode: total, policy and value loss, per-step entropy, mean reward."""
    return torch.stack([losses.total, losses.policy, losses.value, losses.entropy / t_max,
                        ro.rewards.mean()]).detach()
