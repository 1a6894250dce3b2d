"""Environment: mask update, observation and the reward of Eq. 12 on hand-made cases."""

import torch

from pixeldrl.rl import env


def test_initial_mask_is_all_ones_and_observation_masks_every_channel():
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    m0 = env.initial_mask(images)
    assert m0.shape == (2, 2, 2) and torch.all(m0 == 1)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
    x = env.observe(images, mask)
    for c in range(3):
        assert torch.equal(x[:, c], images[:, c] * mask)
    assert x[0, 1, 0, 1] == 0 and x[0, 1, 0, 0] == images[0, 1, 0, 0]


def test_mask_update_is_irreversible():
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    actions = torch.tensor([[env.KEEP, env.ZERO, env.KEEP, env.ZERO]])
    assert torch.equal(env.update_mask(mask, actions), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    # "keep" on a zeroed pixel does not bring it back, across many steps
    m = mask
    for _ in range(5):
        m = env.update_mask(m, torch.full_like(actions, env.KEEP))
    assert torch.equal(m, mask)


def test_reward_eq12_signs():
    # four pixels: [bg zeroed, fg zeroed, bg kept, fg kept]
    before = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    after = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    gt = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    assert torch.equal(env.reward(before, after, gt), torch.tensor([[1.0, -1.0, 0.0, 0.0]]))
    # an already-zeroed pixel earns nothing whatever the action
    dead = torch.zeros(1, 4)
    assert torch.equal(env.reward(dead, env.update_mask(dead, torch.ones(1, 4)), gt), torch.zeros(1, 4))


def test_episode_reward_sum_equals_final_improvement():
    # Eq. 12 telescopes: the sum over an episode is (m(0)-G)^2 - (m(T)-G)^2 per pixel.
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(2, 5, 5, generator=g) > 0.5).float()
    mask = torch.ones(2, 5, 5)
    total = torch.zeros(2, 5, 5)
    for _ in range(env.T_MAX):
        a = (torch.rand(2, 5, 5, generator=g) > 0.3).long()
        new = env.update_mask(mask, a)
        total += env.reward(mask, new, gt)
        mask = new
    assert torch.equal(total, (1 - gt) ** 2 - (mask - gt) ** 2)
