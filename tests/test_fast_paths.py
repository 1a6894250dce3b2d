"""The fast paths compute what the straightforward version computes: same inputs and seeds → same
actions, losses and gradients (channels-last, recomputation), close ones (bf16), and greedy inference
that stops early gives exactly the full ``t_max``-step result."""

from __future__ import annotations

import copy

import pytest
import torch

from pixeldrl import env
from pixeldrl.config import make_config
from pixeldrl.errors import InputError
from pixeldrl.model import net_config, upsample
from pixeldrl.pa3c import Agent, pa3c_losses, rollout
from pixeldrl.predict import segment


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_batch(b=2, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 1, size, size, generator=g)  # (B, 1, S, S)
    gt = (images[:, 0] > 0.6).float()  # (B, S, S)
    return images, gt


def loss_and_grads(agent: Agent, images, gt, seed=3):
    agent.zero_grad(set_to_none=True)
    ro = rollout(agent, images, gt, env.T_MAX, generator=torch.Generator().manual_seed(seed))
    losses = pa3c_losses(ro, agent.return_kernel, 0.95, 0.5, 0.01)
    losses.total.backward()
    grads = {n: p.grad.detach().clone() for n, p in agent.named_parameters() if p.grad is not None}
    return ro, losses, grads


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    agent = Agent(net_config("small"), init_keep_prob=0.9)
    images, gt = make_batch()
    ro, losses, grads = loss_and_grads(agent, images, gt)
    return agent, images, gt, ro, losses, grads


@pytest.mark.parametrize("option", [dict(channels_last=True), dict(recompute=True),
                                    dict(channels_last=True, recompute=True)])
def test_exact_fast_paths_match_the_straightforward_version(reference, option):
    agent, images, gt, ro, losses, grads = reference
    fast = copy.deepcopy(agent).set_fast_paths(**option)
    ro2, losses2, grads2 = loss_and_grads(fast, images, gt)
    assert torch.equal(ro2.final_mask, ro.final_mask)  # the same actions were sampled
    assert torch.equal(ro2.rewards, ro.rewards)
    for name in ("total", "policy", "value", "entropy"):
        torch.testing.assert_close(getattr(losses2, name), getattr(losses, name), rtol=1e-5, atol=1e-6)
    assert grads2.keys() == grads.keys()
    for n in grads:
        torch.testing.assert_close(grads2[n], grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_bf16_autocast_stays_close_and_returns_float32(reference):
    agent, images, gt, *_ = reference
    fast = copy.deepcopy(agent).set_fast_paths(amp="bf16")
    with torch.no_grad():
        logits, value = agent.forward_net(images)
        logits16, value16 = fast.forward_net(images)
    assert logits16.dtype == value16.dtype == torch.float32
    p, p16 = logits.softmax(1), logits16.softmax(1)
    assert (p - p16).abs().max() < 0.02  # bf16 keeps ~3 significant digits
    ro, losses, grads = loss_and_grads(fast, images, gt)
    assert ro.log_probs.dtype == torch.float32 and torch.isfinite(losses.total)
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_upsampling_through_channels_last_equals_the_nchw_kernel(dtype):
    x = torch.randn(2, 16, 12, 12).to(dtype).requires_grad_()
    g = torch.randn(2, 16, 24, 24).to(dtype)
    ref = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    out = upsample(x, (24, 24), via_channels_last=True)
    (out_grad,) = torch.autograd.grad(out, x, g)
    assert out.is_contiguous() and out_grad.is_contiguous()  # NCHW in, NCHW out
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(out_grad, ref_grad, **tol)


def test_bf16_on_cpu_runs_nchw_and_survives_the_crashing_convolution():
    """oneDNN's channels-last bf16 weight gradient segfaults on the small preset's 24 → 8 dilated conv
    at 64² (torch 2.13); bf16 on CPU must therefore fall back to NCHW even when channels-last is asked."""
    torch.manual_seed(0)
    agent = Agent(net_config("small")).set_fast_paths(channels_last=True, amp="bf16")
    assert all(p.is_contiguous() for p in agent.parameters())  # NCHW weights
    assert agent.net.policy.upsample_via_channels_last and agent.net.value.upsample_via_channels_last
    images, gt = make_batch(size=64)
    _, losses, grads = loss_and_grads(agent, images, gt)
    assert torch.isfinite(losses.total) and all(torch.isfinite(g).all() for g in grads.values())


def test_compile_with_bf16_on_cpu_is_refused():
    with pytest.raises(ValueError, match="compile"):
        Agent(net_config("small")).set_fast_paths(amp="bf16", compile=True)
    with pytest.raises(InputError, match="--compile with --amp bf16"):
        make_config("small", data="x", amp="bf16", compile=True)


def test_checkpoint_state_dict_keys_do_not_depend_on_fast_paths(reference):
    agent = reference[0]
    fast = copy.deepcopy(agent).set_fast_paths(channels_last=True, recompute=True, amp="bf16")
    assert list(fast.state_dict()) == list(agent.state_dict())
    plain = Agent(net_config("small"))
    plain.load_state_dict(fast.state_dict())  # a channels-last checkpoint loads into a plain model
    for (n, a), b in zip(plain.state_dict().items(), agent.state_dict().values()):
        assert torch.equal(a, b), n


def test_early_stopping_inference_equals_all_t_max_steps(reference):
    agent, images, _, *_ = reference
    agent = agent.eval()
    seg = segment(agent, images, env.T_MAX, return_steps=True)
    # straightforward: all t_max greedy steps, no early exit
    mask = env.initial_mask(images)
    with torch.no_grad():
        for _ in range(env.T_MAX):
            action, *_ = agent.get_action_and_value(env.observe(images, mask), greedy=True)
            mask = env.update_mask(mask, action)
    assert torch.equal(seg.mask, mask.bool())
    assert torch.equal(seg.steps[-1], mask.bool())
    assert seg.n_steps <= env.T_MAX
