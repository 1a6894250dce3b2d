"""The paper's equations: the environment (masking, Eq. 12 reward) and PA3C (agent, rollout,
Eq. 8 returns, losses, the greedy episode).
"""
