"""gSDE (generalized state-dependent exploration, policy.sde): explored actions follow the
distribution the policy's log-probabilities describe, the noise is held for sde_sample_freq
steps and drawn reproducibly, and the Fisher products stay exact."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_fvp import double_backprop
from test_natural_gradient import explicit_fisher

from agents.trpo import TRPOAgent
from trpo_ng.natural_gradient import gauss_newton_fisher_vector_product, module_distribution_fn
from trpo_ng.policies import Policy
from trpo_ng.rollout import RolloutWorker
from trpo_ng.vector import make_vector_env

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), dtype=np.float64)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float64)


def sde_policy() -> Policy:
    torch.manual_seed(0)
    policy = Policy(OBS, ACT, hidden_sizes=(5,), sde=True).double()
    with torch.no_grad():
        policy.net[-1].weight.mul_(100.0)
        policy.log_std.copy_(torch.linspace(-0.5, 0.3, 10).view(5, 2))
    return policy


def test_explored_actions_follow_the_policys_distribution(float64):
    policy = sde_policy()
    obs = torch.randn(3, 3)
    dist = policy(obs)
    assert policy.log_std.shape == (5, 2) and dist.log_std.shape == (3, 2)
    n = 40_000
    with torch.no_grad():
        noise = policy.sde_noise(n)  # one fresh matrix per draw
        actions = policy.explore(obs.repeat(n, 1, 1).flatten(0, 1), noise.repeat_interleave(3, 0))
    actions = actions.view(n, 3, 2)
    tol = 4 * float(dist.scale.max().detach()) / n**0.5  # 4 standard errors
    torch.testing.assert_close(actions.mean(0), dist.loc.detach(), atol=tol, rtol=0)
    torch.testing.assert_close(actions.std(0), dist.scale.detach(), rtol=0.02, atol=0)


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_fisher_products_are_exact_with_state_dependent_std(float64, damping):
    policy = sde_policy()
    obs = torch.randn(6, 3)
    F = explicit_fisher(policy, obs)
    v = torch.randn(F.shape[0])
    analytic = gauss_newton_fisher_vector_product(
        module_distribution_fn(policy, obs), list(policy.parameters()), damping=damping
    )
    torch.testing.assert_close(analytic(v), F @ v + damping * v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        analytic(v), double_backprop(policy, obs, damping)(v), rtol=1e-10, atol=1e-10
    )


def collect(seed: int, freq: int, noises: list[torch.Tensor] | None):
    """Two batches; with ``noises``, acting step by step through a wrapped ``act`` that records
    each step's noise; without, the share's noise drawn up front (``Policy.sampler``)."""
    torch.manual_seed(seed)
    envs = make_vector_env("Pendulum-v1", num_envs=2, backend="sync")
    agent = TRPOAgent(
        envs.single_observation_space, envs.single_action_space, sde=True, sde_sample_freq=freq
    )
    if noises is not None:  # a replaced act is what acts: no share sampler then
        act = agent.act

        def recorded(obs, deterministic=False, noise=None):
            noises.append(noise)
            return act(obs, deterministic, noise)

        agent.act = recorded
        assert agent.sampler(2, 12) is None
    worker = RolloutWorker(envs, steps_per_env=12, seed=seed)
    return [worker.collect(agent) for _ in range(2)]


def test_the_rollout_holds_the_noise_for_sde_sample_freq_steps_and_is_reproducible():
    noises: list[torch.Tensor] = []
    batches = collect(0, 4, noises)
    assert len(noises) == 24 and all(n.shape == (2, 64, 1) for n in noises)
    # fresh at steps 0, 4, 8 of each 12-step share, the same tensor in between
    fresh = [t for t in range(24) if t == 0 or noises[t] is not noises[t - 1]]
    assert fresh == [0, 4, 8, 12, 16, 20]
    assert not torch.equal(noises[0], noises[4])
    again = collect(0, 4, [])
    for a, b in zip(batches, again, strict=True):
        assert torch.equal(a.act_TN, b.act_TN) and torch.equal(a.obs_TND, b.obs_TND)
    assert not torch.equal(batches[0].act_TN, collect(1, 4, [])[0].act_TN)
    # the noise drawn up front for each share: the same batches
    for a, b in zip(batches, collect(0, 4, None), strict=True):
        assert torch.equal(a.act_TN, b.act_TN) and torch.equal(a.obs_TND, b.obs_TND)


def test_sde_needs_a_box_action_space_and_a_positive_frequency():
    with pytest.raises(ValueError, match="Box action space"):
        Policy(OBS, gym.spaces.Discrete(3), sde=True)
    with pytest.raises(ValueError, match="sde_sample_freq"):
        TRPOAgent(OBS, ACT, sde=True, sde_sample_freq=0)
