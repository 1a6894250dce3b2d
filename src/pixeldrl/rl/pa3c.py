"""PA3C: the agent, the episode rollout, the returns of Eq. 8 and the actor-critic losses.

This module owns the reinforcement-learning maths; ``train.py`` owns the loop around it.

* :class:`Agent` — the network (θ_s, θ_p, θ_v) plus the neighbour kernel ``w`` of Eq. 8.
  Two calls, as in CleanRL: :meth:`Agent.get_value` and :meth:`Agent.get_action_and_value`.
* :func:`rollout` — one episode of ``t_max`` steps on a batch, actions sampled from π.
* :func:`one_step_returns` — Eq. 8 as the paper's text gives it (default):
  ``R(t) = r(t) + γ · (w ∗ V(s(t+1)))``, V detached. :func:`nstep_returns` — PixelRL's multi-step
  form ``R(t) = r(t) + γ · (w ∗ R(t+1))`` (``returns="multi_step"``).
* :func:`segment` — the greedy episode (argmax actions) that validation, ``predict`` and
  ``evaluate`` run; :class:`Segmentation` is its result.
* :func:`pa3c_losses` — advantage ``A = R − V``; policy ``−log π(a|s) · A`` (A detached; or the
  all-actions form); value ``½ (R − V)²`` (or Huber, ``value_loss``); entropy bonus. Each is
  averaged over pixels and batch and summed over the ``t_max`` steps; the total is ``policy +
  value_coef · value − entropy_beta · entropy``. The trunk receives the sum of both heads' gradients
  (Eq. 16) because both losses flow through it. With ``alive_only`` the policy and entropy terms
  average over the agents whose pixel is still unzeroed instead of over all pixels, as the paper
  does.

With ``kernel="learned"`` the kernel ``w`` is learned through the value loss only (A is detached in
the policy loss), as normalised weights (:class:`ReturnKernel`); the default keeps it at the identity.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from pixeldrl.rl import env
from pixeldrl.nets.kernels import set_cpu_workarounds
from pixeldrl.nets.pixeldrl_mg import HEAD_INIT_STD, NetConfig, PixelDRLNet


class ReturnKernel(nn.Module):
    """The k×k neighbour-weighting kernel ``w`` of Eq. 8.

    ``mode="delta"`` (default): fixed at the identity, so ``w ∗ V`` is V itself and each pixel's
    target is its own TD(0) target. ``mode="learned"``: the weights are a softmax over k² learned
    logits (started at 0.9 on the centre, the rest shared by the neighbours), so they stay positive
    and sum to 1. Why normalised: the kernel is trained through the value loss, and a free kernel
    minimises ½(w ∗ V − V)² by shrinking itself towards 0 — it moves its own target towards V —,
    which turns the return into the immediate reward alone. A convex combination can only choose neighbours.
    """

    CENTRE_WEIGHT = 0.9

    def __init__(self, size: int = 3, mode: str = "delta"):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"return kernel size must be a positive odd number, got {size}")
        if mode not in ("delta", "learned"):
            raise ValueError(f"return kernel mode must be delta or learned, got {mode!r}")
        self.mode = mode
        logits = torch.zeros(1, 1, size, size)
        if size > 1:
            # softmax(logits) = 0.9 at the centre, 0.1 / (k² − 1) on every neighbour
            logits[0, 0, size // 2, size // 2] = math.log(self.CENTRE_WEIGHT * (size * size - 1)
                                                         / (1 - self.CENTRE_WEIGHT))
        if mode == "learned":
            self.logits = nn.Parameter(logits)  # (1, 1, k, k)
        else:  # nothing to train; kept as a buffer so every checkpoint names its kernel
            self.register_buffer("logits", logits)

    @property
    def weight(self) -> torch.Tensor:
        """The kernel w (1, 1, k, k): a delta, or the softmax of the learned logits (sums to 1)."""
        k = self.logits.shape[-1]
        if self.mode == "delta":
            w = torch.zeros_like(self.logits)
            w[0, 0, k // 2, k // 2] = 1.0
            return w
        return torch.softmax(self.logits.flatten(), 0).view_as(self.logits)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the kernel was normalised store the free kernel as ``weight``.
        old = state_dict.pop(prefix + "weight", None)
        if old is not None and prefix + "logits" not in state_dict:
            state_dict[prefix + "logits"] = old.clamp_min(1e-6).log()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(…, H, W) → (…, H, W): zero-padded 2-D convolution with ``w`` over the last two dims."""
        if self.mode == "delta":
            return r
        k = self.logits.shape[-1]
        lead = r.shape[:-2]
        out = F.conv2d(r.reshape(-1, 1, *r.shape[-2:]), self.weight, padding=k // 2)
        return out.reshape(*lead, *r.shape[-2:])


class Agent(nn.Module):
    """All trainable parts: the PixelDRL-MG network and the return kernel.

    ``head_init_std``: std of the policy and value output layers' initial weights (``model.HEAD_INIT_STD``).
    ``init_keep_prob``: ``None`` (default) keeps the network's own initialisation — small output
    weights, so π(keep) ≈ 0.5 with logits that already depend on the input. A number sets the
    policy's starting π(keep) through the bias of its output layer instead. That start was needed
    with the multi-step return (a 0.5 start collapsed to "zero everything" there), but a bias gives
    every pixel the same logit, which greedy decoding then keeps for all pixels until it is
    unlearned (``benchmarks/learning.py`` measures both).
    """

    def __init__(self, net_cfg: NetConfig | None, kernel_size: int = 3, init_keep_prob: float | None = None,
                 net: nn.Module | None = None, kernel_mode: str = "delta", head_init_std: float = HEAD_INIT_STD):
        super().__init__()
        # ``net``: another network with the same interface (X → logits, V; ``policy.out`` conv), e.g. PixelRL's.
        self.net = net if net is not None else PixelDRLNet(net_cfg)
        self.return_kernel = ReturnKernel(kernel_size, kernel_mode)
        if head_init_std != HEAD_INIT_STD:  # the network initialised them at HEAD_INIT_STD
            for out in (self.net.policy.out, self.net.value.out):
                nn.init.normal_(out.weight, std=head_init_std)
        if init_keep_prob is not None:
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

    def set_fast_paths(self, channels_last: bool | None = False, amp: str = "none",
                       recompute: bool = False) -> "Agent":
        """Faster execution of the same network (benchmarks/bench.py measures each).

        * ``channels_last`` — NHWC memory format; oneDNN convolutions run without layout reorders
          (the same numbers up to float rounding). ``None`` picks by device: on for CPU, off for
          CUDA, where the GroupNorm network runs slower in NHWC (H100, paper preset, batch 2: 11.8
          vs 16.6 training slices/s, 28 vs 54 inference slices/s). On CPU it switches on the layer
          workarounds of :mod:`pixeldrl.nets.kernels` (NCHW GroupNorm kernel, channels-last resizing).
        * ``amp="bf16"`` — bfloat16 autocast of the forward pass; logits and values come back as
          float32, and the returns and losses stay in float32. On CPU (fast with AVX512-BF16 or
          AMX) the convolutions' weight gradients are computed in float32 (:mod:`pixeldrl.nets.kernels`:
          oneDNN's channels-last bf16 weight-gradient kernel crashes).
        * ``recompute`` — activation checkpointing of each step's forward pass: the activations
          of the ``t_max`` steps are recomputed during backward instead of stored, so batches about
          ``t_max`` times larger fit at about a third more compute.
        """
        if amp not in ("none", "bf16"):
            raise ValueError(f"amp must be none or bf16, got {amp!r}")
        on_cpu = next(self.parameters()).device.type == "cpu"
        if channels_last is None:
            channels_last = on_cpu
        # The straightforward version (NCHW float32) keeps the stock kernels: it is the baseline.
        set_cpu_workarounds(self.net, on_cpu and (channels_last or amp == "bf16"))
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        self.recompute = recompute
        self.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return self

    def forward_net(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on X(t) (B, C, H, W) with the fast paths applied → float32 logits, V(s)."""
        amp = (torch.autocast(x.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            if self.recompute and torch.is_grad_enabled():
                logits, value = torch.utils.checkpoint.checkpoint(self.net, x, use_reentrant=False)
            else:
                logits, value = self.net(x)
        return logits.float(), value.float()  # (B, 2, H, W), (B, 1, H, W)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s) (B, H, W) for observations X(t) (B, C, H, W)."""
        return self.forward_net(x)[1].squeeze(1)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None,
                             greedy: bool = False, uniform: torch.Tensor | None = None):
        """Sample (or re-score, or take the argmax of) per-pixel actions.

        Sampling draws one uniform per pixel from the global generator, or takes them from ``uniform``
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
                    uniform = torch.rand(p_keep.shape, device=p_keep.device)
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
    p_keep: torch.Tensor | None = None  # π(keep|s(t)) (T, B, H, W), differentiable (all-actions gradient)
    gt: torch.Tensor | None = None  # G (B, H, W)
    step_weight: torch.Tensor | None = None  # (T,): T/k on the k steps that carry gradients, 0 elsewhere


def draw_grad_steps(t_max: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Which ``k`` of the ``t_max`` steps an update back-propagates through (bool (T,)), or None for all.

    The other steps run without a graph (a forward pass costs about a third of forward + backward)
    and still give the next-state values the one-step targets need; the chosen steps' losses are
    scaled by T/k, so the loss is an unbiased estimate of the all-steps one.
    """
    if k <= 0 or k >= t_max:
        return None
    chosen = torch.zeros(t_max, dtype=torch.bool)
    chosen[torch.randperm(t_max, generator=generator)[:k]] = True
    return chosen


def draw_uniforms(images: torch.Tensor, t_max: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The uniforms (T, B, H, W) that sample an episode's actions on images (B, C, H, W).

    One draw per episode (the same stream as T draws of (B, H, W)); drawing them up front keeps
    the random-number generator out of the step loop and lets ``training.update.ShardThreads`` hand each
    shard its slice, so a sharded batch samples exactly the actions of the whole batch.
    """
    b, _, h, w = images.shape
    return torch.rand((t_max, b, h, w), device=images.device, generator=generator)


def rollout(agent: Agent, images: torch.Tensor, gt: torch.Tensor, t_max: int = env.T_MAX,
            generator: torch.Generator | None = None, bootstrap_value: bool = False,
            uniforms: torch.Tensor | None = None, grad_steps: torch.Tensor | None = None) -> Rollout:
    """Run ``t_max`` sampled steps from m(0) = 1 on images (B, C, H, W) with ground truth gt (B, H, W).

    Actions are sampled with ``uniforms`` (T, B, H, W), drawn from ``generator`` when not given
    (:func:`draw_uniforms`). ``grad_steps`` (bool (T,), :func:`draw_grad_steps`): only these steps
    keep their graph; None keeps every step's.

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
    p_keeps = images.new_empty(shape)
    if uniforms is None:
        uniforms = draw_uniforms(images, t_max, generator)  # (T, B, H, W)
    mask = env.initial_mask(images)  # (B, H, W)
    grad_on = torch.is_grad_enabled()
    for t in range(t_max):
        with torch.set_grad_enabled(grad_on and (grad_steps is None or bool(grad_steps[t]))):
            action, logp_a, ent, value, p_keep = agent.get_action_and_value(env.observe(images, mask),
                                                                            uniform=uniforms[t])
        new_mask = env.update_mask(mask, action)
        log_probs[t], entropies[t], values[t], p_keeps[t] = logp_a, ent, value, p_keep
        rewards[t] = env.reward(mask, new_mask, gt)
        alive[t] = mask
        mask = new_mask
    if bootstrap_value:
        with torch.no_grad():
            bootstrap = agent.get_value(env.observe(images, mask))
    else:
        bootstrap = torch.zeros_like(mask)
    step_weight = None
    if grad_steps is not None:
        step_weight = grad_steps.to(images.device, images.dtype) * (t_max / int(grad_steps.sum()))  # (T,)
    return Rollout(log_probs, entropies, values, rewards, alive, bootstrap, mask, p_keeps, gt.to(images.dtype),
                   step_weight)


def rollout_two_phase(agent: Agent, images: torch.Tensor, gt: torch.Tensor, t_max: int = env.T_MAX,
                      generator: torch.Generator | None = None, bootstrap_value: bool = False,
                      uniforms: torch.Tensor | None = None) -> Rollout:
    """:func:`rollout` in two phases: the episode without gradients, then one forward pass with
    gradients over all t_max·B states at once (a GPU runs one big batch far better than t_max small
    ones in sequence; ``two_phase`` in :class:`~pixeldrl.config.TrainConfig`).

    Exact for a network that normalises each sample on its own (GroupNorm, the default, or none):
    phase 1 takes the same actions from the same uniforms, so the states are the same, and phase 2
    re-scores those actions — the same log-probabilities, entropies and values, hence the same
    losses and gradients up to float rounding (``tests/rl/test_pa3c.py``). BatchNorm's batch
    statistics would mix the steps, so it is refused. It costs one extra forward pass per step
    (phase 1); the one-step Eq. 8 makes the steps' losses independent given the states.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in agent.modules()):
        raise ValueError("two-phase rollout needs per-sample normalisation (GroupNorm or none), not BatchNorm")
    b, c, h, w = images.shape
    if uniforms is None:
        uniforms = draw_uniforms(images, t_max, generator)  # (T, B, H, W)
    masks, actions = [env.initial_mask(images)], []
    with torch.no_grad():  # phase 1: the states and actions
        for t in range(t_max):
            action = agent.get_action_and_value(env.observe(images, masks[-1]), uniform=uniforms[t])[0]
            actions.append(action)
            masks.append(env.update_mask(masks[-1], action))
    alive = torch.stack(masks[:-1])  # m(0) … m(T-1) (T, B, H, W)
    states = (images.unsqueeze(0) * alive.unsqueeze(2)).reshape(t_max * b, c, h, w)  # X(t) (T·B, C, H, W)
    # phase 2: one forward pass with gradients, re-scoring the actions taken
    _, log_probs, entropies, values, p_keeps = agent.get_action_and_value(
        states, action=torch.stack(actions).reshape(t_max * b, h, w))
    rewards = env.reward(alive, torch.stack(masks[1:]), gt.to(images.dtype))  # (T, B, H, W)
    if bootstrap_value:
        with torch.no_grad():
            bootstrap = agent.get_value(env.observe(images, masks[-1]))
    else:
        bootstrap = torch.zeros_like(masks[-1])
    shape = (t_max, b, h, w)
    return Rollout(log_probs.reshape(shape), entropies.reshape(shape), values.reshape(shape), rewards, alive,
                   bootstrap, masks[-1], p_keeps.reshape(shape), gt.to(images.dtype))


def one_step_returns(rewards: torch.Tensor, values: torch.Tensor, bootstrap: torch.Tensor, gamma: float,
                     kernel: ReturnKernel) -> torch.Tensor:
    """Eq. 8 in the paper's one-step form: ``R_i(t) = r_i(t) + γ · Σ_j w_{i−j} · V(s_j(t+1))``.

    rewards, values (T, B, H, W), bootstrap V(s(t_max)) (B, H, W) → returns (T, B, H, W). The
    next-state values are a target (detached); only ``w`` can receive a gradient. Why this form is
    the default: each pixel's reward depends on its own action alone, so with the multi-step form
    "zero now" and "zero later" earn nearly the same return and the advantage between the actions
    is ≈ 0.1 near π = 0.5; here the immediate ±1 of Eq. 12 decides it.
    """
    next_values = torch.cat([values[1:].detach(), bootstrap.detach().unsqueeze(0)])  # V(s(t+1)) (T, B, H, W)
    return rewards + gamma * kernel(next_values)


def nstep_returns(rewards: torch.Tensor, bootstrap: torch.Tensor, gamma: float,
                  kernel: ReturnKernel, alive_next: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8 in PixelRL's multi-step form (``returns="multi_step"``): ``R(t) = r(t) + γ · (w ∗ R(t+1))``
    backwards from ``R(t_max) = V(s(t_max))`` (or 0).

    rewards (T, B, H, W), bootstrap (B, H, W) → returns (T, B, H, W), differentiable w.r.t. ``w``.
    ``alive_next`` (T, B, H, W), 1 where the pixel is still unzeroed at t+1 (``pixel_done``): a
    zeroed pixel's episode is over, so its later returns count 0 in the recursion.
    """
    returns = []
    r_next = bootstrap
    for t in range(rewards.shape[0] - 1, -1, -1):
        later = r_next if alive_next is None else r_next * alive_next[t]
        r_next = rewards[t] + gamma * kernel(later)
        returns.append(r_next)
    return torch.stack(returns[::-1])


@dataclass
class Losses:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def pa3c_losses(ro: Rollout, kernel: ReturnKernel, gamma: float, value_coef: float,
                entropy_beta: float, alive_only: bool = False, returns: str = "one_step",
                policy_gradient: str = "sampled", mask_dead: bool = False, pixel_done: bool = False,
                value_loss: str = "mse") -> Losses:
    """Actor-critic losses of one rollout (see the module docstring for the reductions).

    ``returns``: ``one_step`` (:func:`one_step_returns`) or ``multi_step`` (:func:`nstep_returns`).
    ``policy_gradient``: ``sampled`` — ``−log π(a|s) · A`` for the action taken; ``all_actions`` —
    ``−Σ_a π(a|s) · (Q(s, a) − V(s))``, exact in expectation and without the sampling noise,
    because both actions' outcomes are known for every live pixel: zeroing earns Eq. 12's reward
    and ends the pixel's episode (its later value is 0), keeping earns 0 plus γ · V of the pixel
    still alive (the next state's value where it was kept, this state's where it was zeroed).
    ``value_loss``: ``mse`` — ½(R − V)²; ``huber`` — the same for |R − V| ≤ 1, linear beyond.
    """
    if returns == "one_step":
        values = ro.values
        if pixel_done:
            # A zeroed pixel's episode is over (the mask update is irreversible): its value is 0,
            # whatever the network says of the zero it now sees — which looks the same as a live
            # pixel of zero intensity. Terminal next states bootstrap nothing.
            values = torch.cat([ro.values[:1], ro.values[1:] * ro.alive[1:]])
            bootstrap = ro.bootstrap * ro.final_mask
        else:
            bootstrap = ro.bootstrap
        ret = one_step_returns(ro.rewards, values, bootstrap, gamma, kernel)  # (T, B, H, W)
    elif returns == "multi_step":
        alive_next = torch.cat([ro.alive[1:], ro.final_mask.unsqueeze(0)]) if pixel_done else None  # (T, B, H, W)
        ret = nstep_returns(ro.rewards, ro.bootstrap, gamma, kernel, alive_next)
    else:
        raise ValueError(f"returns must be one_step or multi_step, got {returns!r}")
    advantage = ret - ro.values
    # Sum over the T steps, mean over batch and pixels.
    if alive_only:
        # Agents whose pixel is already zero cannot change anything: both actions have the same
        # return, so their policy-gradient term is zero in expectation and noise in a sample.
        # Normalised per image and step (a mean over the image's alive pixels), so the batch mean
        # splits exactly across data-parallel shards.
        hw = ro.alive.shape[2] * ro.alive.shape[3]
        weight = ro.alive * (hw / ro.alive.sum(dim=(2, 3), keepdim=True).clamp_min(1))
    elif mask_dead or pixel_done:
        # The same zero-mean noise removed, but still divided by all H·W pixels: the expected
        # gradient is the all-pixel one, without the terms of pixels that cannot act any more.
        weight = ro.alive
    else:
        weight = torch.ones_like(ro.alive)
    if policy_gradient == "sampled":
        policy_terms = -ro.log_probs * advantage.detach()
    elif policy_gradient == "all_actions":
        if ro.p_keep is None or ro.gt is None:
            raise ValueError("all_actions needs a rollout that kept π(keep) and the ground truth")
        with torch.no_grad():  # Q and the baseline are targets
            v = ro.values
            v_next = torch.cat([v[1:], ro.bootstrap.unsqueeze(0)])  # (T, B, H, W)
            kept_next = torch.cat([ro.alive[1:], ro.final_mask.unsqueeze(0)])  # alive at t+1
            q_zero = ro.alive * (1 - 2 * ro.gt.unsqueeze(0))  # Eq. 12 for zeroing a live pixel
            q_keep = gamma * torch.where(kept_next > 0, v_next, v) * ro.alive
            baseline = v * ro.alive
        policy_terms = -(ro.p_keep * (q_keep - baseline) + (1 - ro.p_keep) * (q_zero - baseline))
    else:
        raise ValueError(f"policy_gradient must be sampled or all_actions, got {policy_gradient!r}")
    # Per step (T,), then summed over the steps (weighted when only some carry gradients).
    policy = (policy_terms * weight).mean(dim=(1, 2, 3))
    if value_loss == "mse":
        value_terms = 0.5 * advantage.pow(2)
    elif value_loss == "huber":  # ½x² for |x| ≤ 1, |x| − ½ beyond: the same loss near the target
        value_terms = F.huber_loss(advantage, torch.zeros_like(advantage), reduction="none", delta=1.0)
    else:
        raise ValueError(f"value_loss must be mse or huber, got {value_loss!r}")
    if pixel_done:  # terminal pixels have no value to learn
        value_terms = value_terms * ro.alive
    value = value_terms.mean(dim=(1, 2, 3))
    entropy = (ro.entropies * weight).mean(dim=(1, 2, 3))
    if ro.step_weight is not None:
        policy, value, entropy = (x * ro.step_weight for x in (policy, value, entropy))
    policy, value, entropy = policy.sum(), value.sum(), entropy.sum()
    total = policy + value_coef * value - entropy_beta * entropy
    return Losses(total, policy, value, entropy)


def episode_losses(agent: Agent, images: torch.Tensor, gt: torch.Tensor, cfg, uniforms: torch.Tensor,
                   grad_steps: torch.Tensor | None = None) -> tuple[Rollout, Losses]:
    """One sampled episode on images (B, C, H, W) and its PA3C losses, with ``cfg``'s settings
    (a :class:`~pixeldrl.config.TrainConfig`: t_max, γ, value and entropy weights, bootstrap, alive-only,
    Eq. 8's form, the policy gradient); ``grad_steps`` as :func:`rollout` takes it."""
    if cfg.two_phase and grad_steps is None:
        ro = rollout_two_phase(agent, images, gt, cfg.t_max, bootstrap_value=cfg.bootstrap_value, uniforms=uniforms)
    else:
        ro = rollout(agent, images, gt, cfg.t_max, bootstrap_value=cfg.bootstrap_value, uniforms=uniforms,
                     grad_steps=grad_steps)
    return ro, pa3c_losses(ro, agent.return_kernel, cfg.gamma, cfg.value_coef, cfg.entropy_beta, cfg.alive_only,
                           cfg.returns, cfg.policy_gradient, cfg.mask_dead, cfg.pixel_done, cfg.value_loss)


def episode_stats(ro: Rollout, losses: Losses, t_max: int) -> torch.Tensor:
    """(5,) what the training log keeps of an episode: total, policy and value loss, per-step entropy, mean reward."""
    return torch.stack([losses.total, losses.policy, losses.value, losses.entropy / t_max,
                        ro.rewards.mean()]).detach()


@dataclass
class Segmentation:
    mask: torch.Tensor
    """f(t_max) (B, H, W) bool."""
    keep_prob: torch.Tensor
    """(B, H, W): π(keep|s) at the step that decided each pixel — the step it was zeroed, or the
    last step for survivors — so ``keep_prob > 0.5`` ⇔ in the mask, and the distance from 0.5 is
    the policy's own confidence."""
    steps: torch.Tensor | None
    """m(0) … m(t_max) (T+1, B, H, W) bool when asked for, else None."""
    n_steps: int
    """Forward passes actually run (≤ t_max, fewer when the mask stopped changing)."""


@torch.no_grad()
def segment(agent: Agent, images: torch.Tensor, t_max: int = env.T_MAX, return_steps: bool = False) -> Segmentation:
    """Greedy episode on images (B, C, H, W) → :class:`Segmentation`.

    Inference stops as soon as a step changes no pixel: every later greedy step would repeat it, so
    the result is exactly that of running all ``t_max`` steps. A supervised baseline (``one_shot``)
    segments in one forward pass.
    """
    if getattr(agent, "one_shot", False):
        # A supervised baseline (``nets.baselines.Segmenter``): one forward pass and an argmax; the
        # "steps" repeat the one result so step figures and step-wise validation still work.
        p_fg = torch.softmax(agent(images), dim=1)[:, 1]  # (B, H, W)
        mask = p_fg > 0.5
        steps = torch.stack([torch.ones_like(mask)] + [mask] * t_max) if return_steps else None
        return Segmentation(mask, p_fg, steps, 1)
    mask = env.initial_mask(images)  # (B, H, W)
    keep_prob = torch.zeros_like(mask)
    steps = [mask.bool()] if return_steps else None
    n = 0
    for n in range(1, t_max + 1):
        action, _, _, _, p_keep = agent.get_action_and_value(env.observe(images, mask), greedy=True)
        new_mask = env.update_mask(mask, action)
        # Alive pixels record this step's π(keep): a pixel zeroed now keeps it for good, a survivor
        # ends with the last step's.
        keep_prob = torch.where(mask > 0, p_keep, keep_prob)
        changed = bool((new_mask != mask).any())
        mask = new_mask
        if return_steps:
            steps.append(mask.bool())
        if not changed:
            break
    if return_steps:
        # The remaining steps would repeat the last mask exactly.
        steps += [mask.bool()] * (t_max + 1 - len(steps))
        steps = torch.stack(steps)
    return Segmentation(mask.bool(), keep_prob, steps, n)
