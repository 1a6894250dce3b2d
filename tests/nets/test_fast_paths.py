"""The fast paths compute what the straightforward version computes: same inputs and seeds → same
actions, losses and gradients (channels-last, recomputation), close ones (bf16), and greedy inference
that stops early gives exactly the full ``t_max``-step result."""

from __future__ import annotations

import copy

import pytest
import torch

from pixeldrl.rl import env
from pixeldrl.config import TrainConfig, make_config
from pixeldrl.nets.kernels import Conv2d, GroupNorm, upsample
from pixeldrl.nets.pixeldrl_mg import net_config
from pixeldrl.rl.pa3c import Agent, pa3c_losses, rollout, segment
from synth_datasets import random_batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    images, gt = random_batch()
    ro, losses, grads = loss_and_grads(agent, images, gt)
    return agent, images, gt, ro, losses, grads


@pytest.fixture(scope="module")
def reference64(reference):
    """The reference in float64: a fast path that computes the same thing agrees to ~1e-15, while in
    float32 a channels-last convolution sums its ~10⁴ terms per weight in another order and the
    first layers' gradients differ by ~1e-4 of their largest entry, on some CPUs more than others."""
    agent, images, gt, *_ = reference
    agent = copy.deepcopy(agent).double()
    return (agent, images.double(), gt, *loss_and_grads(agent, images.double(), gt))


@pytest.mark.parametrize("option", [dict(channels_last=True), dict(recompute=True),
                                    dict(channels_last=True, recompute=True)])
def test_exact_fast_paths_match_the_straightforward_version(reference, reference64, option):
    agent, images, gt, ro, losses, grads = reference
    fast = copy.deepcopy(agent).set_fast_paths(**option)
    ro2, losses2, _ = loss_and_grads(fast, images, gt)
    assert torch.equal(ro2.final_mask, ro.final_mask)  # float32: the same actions were sampled
    assert torch.equal(ro2.rewards, ro.rewards)
    for name in ("total", "policy", "value", "entropy"):
        torch.testing.assert_close(getattr(losses2, name), getattr(losses, name), rtol=1e-5, atol=1e-6)

    agent, images, gt, ro, losses, grads = reference64  # the gradients, free of float32 rounding
    fast = copy.deepcopy(agent).set_fast_paths(**option)
    ro2, losses2, grads2 = loss_and_grads(fast, images, gt)
    assert torch.equal(ro2.final_mask, ro.final_mask)
    assert grads2.keys() == grads.keys()
    for n in grads:
        torch.testing.assert_close(grads2[n], grads[n], rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_autocast_stays_close_and_returns_float32(reference, channels_last):
    agent, images, gt, *_ = reference
    fast = copy.deepcopy(agent).set_fast_paths(channels_last=channels_last, amp="bf16")
    with torch.no_grad():
        logits, _ = agent.forward_net(images)
        logits16, value16 = fast.forward_net(images)
    assert logits16.dtype == value16.dtype == torch.float32
    p, p16 = logits.softmax(1), logits16.softmax(1)
    assert (p - p16).abs().max() < 0.02  # bf16 keeps ~3 significant digits
    ro, losses, grads = loss_and_grads(fast, images, gt)
    assert ro.log_probs.dtype == torch.float32 and torch.isfinite(losses.total)
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_upsampling_through_channels_last_equals_the_stock_kernel(dtype, layout):
    x = torch.randn(2, 16, 12, 12).to(dtype).contiguous(memory_format=layout).requires_grad_()
    g = torch.randn(2, 24, 24, 24).to(dtype).contiguous(memory_format=layout)[:, 4:20]  # a cat-backward slice
    ref = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    out = upsample(x, (24, 24), cpu_workaround=True)
    (out_grad,) = torch.autograd.grad(out, x, g)
    assert out.is_contiguous(memory_format=layout) and out_grad.is_contiguous(memory_format=layout)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(out_grad, ref_grad, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_norm_workaround_equals_the_stock_layer(dtype):
    torch.manual_seed(0)
    stock = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(stock.weight)
    torch.nn.init.normal_(stock.bias)
    ours = GroupNorm(4, 8)
    ours.load_state_dict(stock.state_dict())
    ours.cpu_workaround = True
    x = torch.randn(2, 8, 16, 16).to(dtype).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8, 16, 16).to(dtype)
    outs = []
    for layer in (stock, ours):
        layer.to(dtype).zero_grad()
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.backward(g)
        outs.append((y, xi.grad, layer.weight.grad, layer.bias.grad))
    assert outs[1][0].is_contiguous(memory_format=torch.channels_last)  # layout kept for the next conv
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(b, a, **tol)


def test_bf16_conv_workaround_gives_autocasts_forward_and_float32_weight_gradients():
    """Forward and input gradient as bf16 autocast computes them; weight and bias gradients in float32
    from the same bf16 activations and output gradient (autocast would round them to bf16)."""
    torch.manual_seed(0)
    conv = Conv2d(24, 8, 3, padding=2, dilation=2).to(memory_format=torch.channels_last)
    conv.cpu_workaround = True
    x = torch.randn(2, 24, 20, 20).to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(2, 8, 20, 20).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.backward(g)
    assert y.dtype == torch.bfloat16 and conv.weight.grad.dtype == torch.float32
    # Reference in float64 on the same bf16 operands.
    x64, w64 = x.detach().double().requires_grad_(), conv.weight.detach().bfloat16().double().requires_grad_()
    b64 = conv.bias.detach().bfloat16().double().requires_grad_()
    y64 = torch.nn.functional.conv2d(x64, w64, b64, padding=2, dilation=2)
    y64.backward(g.double())
    torch.testing.assert_close(y.double(), y64, rtol=1e-2, atol=2e-2)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-2, atol=2e-2)
    # float32 weight gradient: far closer than a bf16 one could be (3 significant digits)
    torch.testing.assert_close(conv.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(conv.bias.grad.double(), b64.grad, rtol=1e-4, atol=1e-3)


def test_bf16_channels_last_on_cpu_survives_the_crashing_weight_gradient():
    """oneDNN's channels-last bf16 weight gradient segfaults on the small preset's 24 → 8 dilated conv
    at 64² (torch 2.13); the workaround conv never calls it, so a bf16 channels-last step completes."""
    torch.manual_seed(0)
    agent = Agent(net_config("small")).set_fast_paths(channels_last=True, amp="bf16")
    convs = [m for m in agent.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(isinstance(m, Conv2d) and m.cpu_workaround for m in convs)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    images, gt = random_batch(size=64)
    for _ in range(2):
        _, losses, grads = loss_and_grads(agent, images, gt)
    assert torch.isfinite(losses.total) and all(torch.isfinite(g).all() for g in grads.values())


def test_a_run_config_with_the_retired_compile_option_loads():
    """Runs from before ``--compile`` was retired have ``"compile"`` in config.json; they still load."""
    cfg = make_config("small", data="x")
    old = TrainConfig.from_dict({**cfg.to_dict(), "compile": True})
    assert old == cfg and "compile" not in old.to_dict()


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
