"""PA3C maths: Eq. 8 returns against a naive per-pixel loop, losses on hand-made numbers, rollouts."""

import math

import pytest
import torch

from pixeldrl.rl import env
from pixeldrl.nets.pixeldrl_mg import net_config
from pixeldrl.config import make_config
from pixeldrl.rl.pa3c import Agent, ReturnKernel, Rollout, nstep_returns, one_step_returns, pa3c_losses, rollout


def naive_returns(rewards, bootstrap, gamma, w):
    """Eq. 8 pixel by pixel with explicit loops (zero padding outside the image)."""
    T, B, H, W = rewards.shape
    k = w.shape[0]
    half = k // 2
    out = torch.zeros_like(rewards)
    nxt = bootstrap.clone()
    for t in range(T - 1, -1, -1):
        cur = torch.zeros(B, H, W)
        for b in range(B):
            for i in range(H):
                for j in range(W):
                    s = 0.0
                    for di in range(k):
                        for dj in range(k):
                            ii, jj = i + di - half, j + dj - half
                            if 0 <= ii < H and 0 <= jj < W:
                                s += w[di, dj] * nxt[b, ii, jj]
                    cur[b, i, j] = rewards[t, b, i, j] + gamma * s
        out[t] = cur
        nxt = cur
    return out


def test_identity_kernel_gives_plain_nstep_returns():
    kernel = ReturnKernel(3)
    r = torch.tensor([1.0, 0.0, -1.0]).reshape(3, 1, 1, 1)
    v = torch.tensor([2.0]).reshape(1, 1, 1)
    R = nstep_returns(r, v, 0.5, kernel)
    # R2 = -1 + 0.5*2 = 0; R1 = 0 + 0.5*0 = 0; R0 = 1 + 0 = 1
    assert torch.allclose(R.flatten(), torch.tensor([1.0, 0.0, 0.0]))


def test_returns_with_learned_kernel_match_naive_loop():
    g = torch.Generator().manual_seed(0)
    for k in (3, 5):
        kernel = ReturnKernel(k, "learned")
        with torch.no_grad():
            kernel.logits.copy_(torch.randn(1, 1, k, k, generator=g))
        rewards = torch.randint(-1, 2, (4, 2, 6, 5), generator=g).float()
        boot = torch.randn(2, 6, 5, generator=g)
        fast = nstep_returns(rewards, boot, 0.95, kernel)
        slow = naive_returns(rewards, boot, 0.95, kernel.weight[0, 0].detach())
        assert torch.allclose(fast, slow, atol=1e-5)


def test_losses_on_hand_made_rollout():
    # T=1, one pixel: R = r + gamma * V_boot = 1 + 0.5*0 = 1; V = 0.25 -> A = 0.75
    kernel = ReturnKernel(1)
    logp = torch.tensor(math.log(0.8)).reshape(1, 1, 1, 1).requires_grad_()
    values = torch.tensor(0.25).reshape(1, 1, 1, 1).requires_grad_()
    ro = Rollout(log_probs=logp, entropies=torch.full((1, 1, 1, 1), 0.5), values=values, alive=torch.ones(1, 1, 1, 1),
                 rewards=torch.ones(1, 1, 1, 1), bootstrap=torch.zeros(1, 1, 1), final_mask=torch.zeros(1, 1, 1))
    L = pa3c_losses(ro, kernel, gamma=0.5, value_coef=0.5, entropy_beta=0.01)
    assert math.isclose(L.policy.item(), -math.log(0.8) * 0.75, rel_tol=1e-6)
    assert math.isclose(L.value.item(), 0.5 * 0.75 ** 2, rel_tol=1e-6)
    assert math.isclose(L.entropy.item(), 0.5, rel_tol=1e-6)
    assert math.isclose(L.total.item(), L.policy.item() + 0.5 * L.value.item() - 0.01 * 0.5, rel_tol=1e-6)
    L.total.backward()
    # the advantage is detached in the policy loss: d(policy)/d(logp) = -A
    assert math.isclose(logp.grad.item(), -0.75, rel_tol=1e-6)
    # value gradient: value_coef * -(R - V) = 0.5 * -0.75
    assert math.isclose(values.grad.item(), -0.375, rel_tol=1e-6)


def test_policy_gradient_sign_raises_probability_of_good_action():
    # If zeroing a background pixel earned +1 and V=0, one SGD step must raise pi(zero).
    torch.manual_seed(0)
    agent = Agent(net_config("small"), 3, init_keep_prob=0.5)
    x = torch.rand(1, 1, 16, 16)
    action = torch.zeros(1, 16, 16, dtype=torch.long)  # all "zero"
    _, logp_a, _, _, _ = agent.get_action_and_value(x, action)
    before = logp_a.mean().item()
    loss = -(logp_a * torch.ones_like(logp_a)).mean()
    loss.backward()
    with torch.no_grad():
        for p in agent.parameters():
            if p.grad is not None:
                p -= 0.01 * p.grad
    _, logp_after, _, _, _ = agent.get_action_and_value(x, action)
    assert logp_after.mean().item() > before


def test_rollout_shapes_rewards_and_final_mask():
    torch.manual_seed(0)
    agent = Agent(net_config("small"), 3)
    images = torch.rand(2, 1, 20, 24)
    gt = (images[:, 0] > 0.5).float()
    ro = rollout(agent, images, gt, t_max=4, generator=torch.Generator().manual_seed(1))
    for name in ("log_probs", "entropies", "values", "rewards"):
        assert getattr(ro, name).shape == (4, 2, 20, 24)
    assert ro.bootstrap.shape == (2, 20, 24) and not ro.bootstrap.requires_grad and torch.all(ro.bootstrap == 0)
    vb = rollout(agent, images, gt, t_max=4, generator=torch.Generator().manual_seed(1), bootstrap_value=True)
    assert not vb.bootstrap.requires_grad and torch.allclose(vb.bootstrap, agent.get_value(env.observe(images, vb.final_mask)), atol=1e-5)
    # telescoping: summed rewards equal the improvement of the final mask over m(0)
    assert torch.allclose(ro.rewards.sum(0), (1 - gt) ** 2 - (ro.final_mask - gt) ** 2)
    assert torch.all(ro.log_probs <= 0) and torch.all(ro.entropies >= 0)
    assert torch.all(ro.entropies <= math.log(2) + 1e-6)


def test_rollout_is_reproducible_with_the_same_generator():
    torch.manual_seed(0)
    agent = Agent(net_config("small"), 3)
    images = torch.rand(1, 1, 16, 16)
    gt = torch.zeros(1, 16, 16)
    a = rollout(agent, images, gt, 3, generator=torch.Generator().manual_seed(5))
    b = rollout(agent, images, gt, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.final_mask, b.final_mask) and torch.equal(a.rewards, b.rewards)


def test_init_keep_prob_sets_starting_policy():
    agent = Agent(net_config("small"), 3, init_keep_prob=0.95)
    with torch.no_grad():
        _, _, _, _, p_keep = agent.get_action_and_value(torch.zeros(1, 1, 16, 16))
    # zero input: only biases act; the policy output bias alone gives 0.95 on top of small conv terms
    assert 0.85 < p_keep.mean().item() < 0.99


def test_one_step_returns_use_the_next_states_values_as_a_detached_target():
    # T=3, one pixel: R(t) = r(t) + γ V(s(t+1)), V(s(3)) = bootstrap
    r = torch.tensor([1.0, 0.0, -1.0]).reshape(3, 1, 1, 1)
    v = torch.tensor([0.3, 0.6, 0.9]).reshape(3, 1, 1, 1).requires_grad_()
    R = one_step_returns(r, v, torch.tensor([2.0]).reshape(1, 1, 1), 0.5, ReturnKernel(3))
    assert torch.allclose(R.flatten(), torch.tensor([1 + 0.5 * 0.6, 0 + 0.5 * 0.9, -1 + 0.5 * 2.0]))
    assert not R.requires_grad  # the delta kernel has nothing to learn and V is a target


def test_one_step_returns_with_a_learned_kernel_weight_the_neighbours_values():
    g = torch.Generator().manual_seed(0)
    kernel = ReturnKernel(3, "learned")
    with torch.no_grad():
        kernel.logits.copy_(torch.randn(1, 1, 3, 3, generator=g))
    r = torch.randint(-1, 2, (3, 2, 5, 4), generator=g).float()
    v = torch.randn(3, 2, 5, 4, generator=g)
    boot = torch.randn(2, 5, 4, generator=g)
    R = one_step_returns(r, v, boot, 0.9, kernel)
    nxt = torch.cat([v[1:], boot[None]])
    w = kernel.weight[0, 0].detach()
    for t in range(3):  # T=1 naive Eq. 8 per step: r(t) + γ Σ_j w_{i−j} V_j(t+1)
        slow = naive_returns(r[t:t + 1], nxt[t], 0.9, w)[0]
        assert torch.allclose(R[t], slow, atol=1e-5)


def test_learned_kernel_stays_a_convex_combination_under_the_value_loss():
    """A free kernel of Eq. 8 lowers the value loss by shrinking its own target; the normalised
    one can only redistribute its weight between neighbours."""
    torch.manual_seed(0)
    cfg = make_config("small", data="x", image_size=16, kernel="learned", returns="multi_step", lr=0.05)
    agent = Agent(cfg.net_config(), 3, kernel_mode="learned")
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    images = torch.rand(2, 1, 16, 16)
    gt = (images[:, 0] > 0.5).float()
    before = agent.return_kernel.weight.detach().clone()
    for i in range(30):
        ro = rollout(agent, images, gt, t_max=4, generator=torch.Generator().manual_seed(i))
        loss = pa3c_losses(ro, agent.return_kernel, cfg.gamma, cfg.value_coef, cfg.entropy_beta,
                           returns=cfg.returns).value
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = agent.return_kernel.weight.detach()
    assert not torch.allclose(w, before, atol=1e-3)  # it is learned
    assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-5) and torch.all(w >= 0)


def test_delta_kernel_is_not_trained_and_old_checkpoints_load():
    agent = Agent(net_config("small"), 3)
    assert not any(n.startswith("return_kernel") for n, _ in agent.named_parameters())
    state = agent.state_dict()
    old = {k: v for k, v in state.items() if not k.startswith("return_kernel")}
    old["return_kernel.weight"] = torch.rand(1, 1, 3, 3)  # a free kernel, as checkpoints stored it before
    agent.load_state_dict(old)
    r = torch.randn(1, 4, 4)
    assert torch.equal(agent.return_kernel(r), r)


def test_all_actions_policy_gradient_on_hand_made_numbers():
    # T=1, two alive pixels: background (G=0) and foreground (G=1); π(keep) = 0.5; V = 0.2;
    # Q(zero) = 1 − 2G (Eq. 12, the pixel's episode ends), Q(keep) = γ·V(s(1)) = γ·bootstrap = 0.
    p_keep = torch.full((1, 1, 1, 2), 0.5, requires_grad=True)
    ro = Rollout(log_probs=torch.zeros(1, 1, 1, 2), entropies=torch.zeros(1, 1, 1, 2),
                 values=torch.full((1, 1, 1, 2), 0.2), alive=torch.ones(1, 1, 1, 2),
                 rewards=torch.zeros(1, 1, 1, 2), bootstrap=torch.zeros(1, 1, 2), final_mask=torch.ones(1, 1, 2),
                 p_keep=p_keep, gt=torch.tensor([[[0.0, 1.0]]]))
    L = pa3c_losses(ro, ReturnKernel(1), gamma=0.5, value_coef=0.5, entropy_beta=0.0,
                    policy_gradient="all_actions")
    # −mean_i [p (Q_keep − V) + (1 − p)(Q_zero − V)] = −[(0.5·−0.2 + 0.5·0.8) + (0.5·−0.2 + 0.5·−1.2)] / 2
    assert math.isclose(L.policy.item(), -((-0.1 + 0.4) + (-0.1 - 0.6)) / 2, rel_tol=1e-6)
    L.policy.backward()
    # d/dp = −(Q_keep − Q_zero)/2: background pushes π(keep) down, foreground up
    assert torch.allclose(p_keep.grad.flatten(), torch.tensor([0.5, -0.5]))


def test_huber_value_loss_matches_mse_near_the_target_and_bounds_the_gradient_beyond():
    # T=1, two pixels, one-step return R = r (bootstrap 0): errors R − V of 0.5 and 3.0.
    values = torch.tensor([[[[0.5, -2.0]]]], requires_grad=True)
    ro = Rollout(log_probs=torch.zeros(1, 1, 1, 2), entropies=torch.zeros(1, 1, 1, 2), values=values,
                 alive=torch.ones(1, 1, 1, 2), rewards=torch.tensor([[[[1.0, 1.0]]]]),
                 bootstrap=torch.zeros(1, 1, 2), final_mask=torch.ones(1, 1, 2))
    mse = pa3c_losses(ro, ReturnKernel(1), gamma=0.95, value_coef=0.5, entropy_beta=0.0)
    huber = pa3c_losses(ro, ReturnKernel(1), gamma=0.95, value_coef=0.5, entropy_beta=0.0, value_loss="huber")
    assert math.isclose(mse.value.item(), (0.5 * 0.5**2 + 0.5 * 3.0**2) / 2, rel_tol=1e-6)
    assert math.isclose(huber.value.item(), (0.5 * 0.5**2 + (3.0 - 0.5)) / 2, rel_tol=1e-6)
    (grad,) = torch.autograd.grad(huber.value, values)
    assert torch.allclose(grad.flatten(), torch.tensor([-0.5, -1.0]) / 2)  # the far pixel's pull capped at 1
    with pytest.raises(ValueError, match="value_loss"):
        pa3c_losses(ro, ReturnKernel(1), gamma=0.95, value_coef=0.5, entropy_beta=0.0, value_loss="l1")


def test_back_propagating_through_some_steps_gives_those_steps_weighted_gradient():
    """grad_steps: the steps without a graph change nothing but which terms carry gradients."""
    from pixeldrl.rl.pa3c import draw_grad_steps, draw_uniforms

    torch.manual_seed(0)
    agent = Agent(net_config("small"), 3)
    images = torch.rand(2, 1, 16, 16)
    gt = (images[:, 0] > 0.5).float()
    uniforms = draw_uniforms(images, 5, torch.Generator().manual_seed(3))
    chosen = draw_grad_steps(5, 2, torch.Generator().manual_seed(4))
    assert chosen.sum() == 2 and draw_grad_steps(5, 0) is None and draw_grad_steps(5, 5) is None
    params = list(agent.parameters())

    full = rollout(agent, images, gt, 5, uniforms=uniforms)
    full.step_weight = chosen.float() * 5 / 2  # the same weighting, on a rollout that kept every graph
    ref = pa3c_losses(full, agent.return_kernel, 0.95, 0.5, 0.01)
    ref_grads = torch.autograd.grad(ref.total, params)

    part = rollout(agent, images, gt, 5, uniforms=uniforms, grad_steps=chosen)
    assert torch.equal(part.final_mask, full.final_mask)
    got = pa3c_losses(part, agent.return_kernel, 0.95, 0.5, 0.01)
    assert torch.allclose(got.total, ref.total)
    for a, b in zip(torch.autograd.grad(got.total, params), ref_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_two_phase_rollout_gives_the_step_by_step_losses_and_gradients():
    """rollout_two_phase: the same episode, then one batched forward pass: the same losses and gradients."""
    import pytest

    from pixeldrl.rl.pa3c import draw_uniforms, rollout_two_phase

    torch.manual_seed(0)
    agent = Agent(net_config("small"), 3)
    images = torch.rand(3, 1, 16, 16)
    gt = (images[:, 0] > 0.5).float()
    uniforms = draw_uniforms(images, 6, torch.Generator().manual_seed(3))
    params = list(agent.parameters())
    for returns, pg in (("one_step", "sampled"), ("one_step", "all_actions"), ("multi_step", "sampled")):
        step = rollout(agent, images, gt, 6, uniforms=uniforms)
        both = rollout_two_phase(agent, images, gt, 6, uniforms=uniforms)
        assert torch.equal(both.final_mask, step.final_mask) and torch.equal(both.alive, step.alive)
        assert torch.equal(both.rewards, step.rewards)
        ref = pa3c_losses(step, agent.return_kernel, 0.95, 0.5, 0.01, returns=returns, policy_gradient=pg)
        got = pa3c_losses(both, agent.return_kernel, 0.95, 0.5, 0.01, returns=returns, policy_gradient=pg)
        assert torch.allclose(got.total, ref.total, atol=1e-6)
        for a, b in zip(torch.autograd.grad(got.total, params, allow_unused=True),
                        torch.autograd.grad(ref.total, params, allow_unused=True)):
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5)
    bn = Agent(net_config("small", norm="batch"), 3)
    with pytest.raises(ValueError, match="per-sample normalisation"):
        rollout_two_phase(bn, images, gt, 2)


def _two_step_rollout():
    """T=2, two pixels: pixel 0 (background) is zeroed at step 0 (r = +1) and is dead at step 1;
    pixel 1 (foreground) is kept at both steps (r = 0). The network's V reads 0.6 on the dead
    pixel at step 1 (it sees a zero, as it would for a live dark pixel)."""
    values = torch.tensor([[[[0.5, 0.3]]], [[[0.6, 0.4]]]], requires_grad=True)  # (T=2, B=1, H=1, W=2)
    log_probs = torch.log(torch.tensor([[[[0.7, 0.6]]], [[[0.5, 0.8]]]])).requires_grad_()
    ro = Rollout(log_probs=log_probs, entropies=torch.full((2, 1, 1, 2), 0.5), values=values,
                 rewards=torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]]),
                 alive=torch.tensor([[[[1.0, 1.0]]], [[[0.0, 1.0]]]]),
                 bootstrap=torch.zeros(1, 1, 2), final_mask=torch.tensor([[[0.0, 1.0]]]))
    return ro, values, log_probs


def test_pixel_done_ends_a_zeroed_pixels_episode():
    gamma = 0.5
    ro, values, log_probs = _two_step_rollout()
    L = pa3c_losses(ro, ReturnKernel(1), gamma, value_coef=1.0, entropy_beta=0.0, pixel_done=True)
    # Targets: pixel 0 at t=0: r + γ·0 = 1 (its next state is terminal, whatever V says there: 0.6);
    # pixel 1: 0 + γ·0.4 = 0.2 at t=0 and 0 + γ·0 = 0 at t=1; pixel 0 at t=1 is dead: no terms.
    adv = {(0, 0): 1 - 0.5, (0, 1): 0.2 - 0.3, (1, 1): 0 - 0.4}
    lp = log_probs.detach()
    policy = (-(lp[0, 0, 0, 0] * adv[0, 0] + lp[0, 0, 0, 1] * adv[0, 1]) / 2
              - lp[1, 0, 0, 1] * adv[1, 1] / 2)
    assert math.isclose(L.policy.item(), policy.item(), rel_tol=1e-6)
    value = (0.5 * adv[0, 0] ** 2 + 0.5 * adv[0, 1] ** 2) / 2 + 0.5 * adv[1, 1] ** 2 / 2
    assert math.isclose(L.value.item(), value, rel_tol=1e-6)
    assert math.isclose(L.entropy.item(), 0.5 * 2 / 2 + 0.5 * 1 / 2, rel_tol=1e-6)  # the dead pixel's term is gone
    L.total.backward()
    assert values.grad[1, 0, 0, 0] == 0 and log_probs.grad[1, 0, 0, 0] == 0  # nothing flows to the dead pixel
    # Without it, the dead pixel's 0.6 enters pixel 0's target at t=0: R = 1 + 0.5·0.6 = 1.3.
    L_paper = pa3c_losses(ro, ReturnKernel(1), gamma, value_coef=1.0, entropy_beta=0.0)
    assert not math.isclose(L_paper.value.item(), value, rel_tol=1e-3)


def test_pixel_done_cuts_the_multi_step_return_where_the_pixel_was_zeroed():
    import dataclasses

    ro, _, _ = _two_step_rollout()
    # V(s(T)) reads 0.8 on the zeroed pixel 0 and 0.4 on the live pixel 1.
    ro = dataclasses.replace(ro, bootstrap=torch.tensor([[[0.8, 0.4]]]))
    L = pa3c_losses(ro, ReturnKernel(1), 0.5, value_coef=1.0, entropy_beta=0.0, returns="multi_step",
                    pixel_done=True)
    # Pixel 0: R(0) = 1 + γ·0 (its episode ended at t=0); pixel 1: R(1) = 0 + γ·0.4 = 0.2,
    # R(0) = 0 + γ·0.2 = 0.1. The dead pixel at t=1 has no value term.
    value = (0.5 * (1 - 0.5) ** 2 + 0.5 * (0.1 - 0.3) ** 2) / 2 + 0.5 * (0.2 - 0.4) ** 2 / 2
    assert math.isclose(L.value.item(), value, rel_tol=1e-6)
    # Without it the dead pixel's 0.8 flows back into pixel 0's return: R(0) = 1 + 0.5·(0 + 0.5·0.8) = 1.2.
    L_paper = pa3c_losses(ro, ReturnKernel(1), 0.5, value_coef=1.0, entropy_beta=0.0, returns="multi_step")
    assert math.isclose(L_paper.value.item(), (0.5 * 0.7 ** 2 + 0.5 * 0.2 ** 2) / 2 + (0.5 * 0.2 ** 2 + 0.5 * 0.2 ** 2) / 2,
                        rel_tol=1e-6)


def test_mask_dead_drops_only_the_dead_pixels_policy_and_entropy_terms():
    ro, _, log_probs = _two_step_rollout()
    full = pa3c_losses(ro, ReturnKernel(1), 0.5, value_coef=1.0, entropy_beta=0.0)
    masked = pa3c_losses(ro, ReturnKernel(1), 0.5, value_coef=1.0, entropy_beta=0.0, mask_dead=True)
    # The dead pixel at t=1: target 0 + 0.5·0 = 0 (last step), V = 0.6 → A = −0.6; its term is
    # −log π · A / 2 (averaged over both pixels); everything else is unchanged, value loss included.
    dead_term = -log_probs[1, 0, 0, 0].item() * -0.6 / 2
    assert math.isclose(full.policy.item() - masked.policy.item(), dead_term, rel_tol=1e-5)
    assert math.isclose(full.value.item(), masked.value.item(), rel_tol=1e-6)
    assert math.isclose(full.entropy.item() - masked.entropy.item(), 0.5 / 2, rel_tol=1e-6)
