"""The hand-written Fisher-vector product of MLP policies (``trpo_ng.mlp_fisher``) equals the
explicit Fisher, double backprop and the autograd Gauss-Newton product, and is the one used."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_fvp import double_backprop
from test_natural_gradient import explicit_fisher

from trpo_ng.mlp_fisher import mlp_fisher_product
from trpo_ng.natural_gradient import (
    TrustRegionUpdater,
    flat_params,
    gauss_newton_fisher_vector_product,
    module_distribution_fn,
)
from trpo_ng.policies import Policy

OBS = gym.spaces.Box(-5.0, 5.0, (3,), dtype=np.float64)
HEADS = {
    "categorical": gym.spaces.Discrete(4),
    "gaussian": gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float64),
}


def policy_of(kind, *, hidden=(5, 4), activation="tanh", seed=0):
    torch.manual_seed(seed)
    policy = Policy(OBS, HEADS[kind], hidden_sizes=hidden, activation=activation)
    with torch.no_grad():  # away from the near-uniform initial output and unit std
        policy.net[-1].weight.normal_()
        if policy.log_std is not None:
            policy.log_std.normal_(0.0, 0.5)
    return policy


@pytest.mark.parametrize("kind", sorted(HEADS))
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "sigmoid"])
@pytest.mark.parametrize("hidden", [(), (5,), (5, 4)])
def test_equals_the_explicit_fisher_and_double_backprop(float64, kind, activation, hidden):
    policy = policy_of(kind, hidden=hidden, activation=activation)
    obs = torch.randn(7, 3)
    params = list(policy.parameters())
    fisher_fn = mlp_fisher_product(policy, obs, params)
    assert fisher_fn is not None
    v = torch.randn(sum(p.numel() for p in params))
    expected = explicit_fisher(policy, obs) @ v + 0.2 * v
    torch.testing.assert_close(fisher_fn(0.2)(v), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        fisher_fn(0.2)(v), double_backprop(policy, obs, 0.2)(v), rtol=1e-10, atol=1e-10
    )
    autograd = gauss_newton_fisher_vector_product(
        module_distribution_fn(policy, obs), params, damping=0.0
    )
    torch.testing.assert_close(fisher_fn(0.0)(v), autograd(v), rtol=1e-10, atol=1e-10)


def test_policies_it_does_not_cover_get_none(float64):
    obs = torch.randn(4, 3)
    gaussian = policy_of("gaussian")
    frozen = [p for p in gaussian.parameters() if p is not gaussian.log_std]
    assert mlp_fisher_product(gaussian, obs, frozen) is None  # a frozen log-std
    reordered = list(gaussian.parameters())[::-1]
    assert mlp_fisher_product(gaussian, obs, reordered) is None
    sde = Policy(OBS, HEADS["gaussian"], sde=True)
    assert mlp_fisher_product(sde, obs, list(sde.parameters())) is None
    binary = Policy(OBS, gym.spaces.MultiBinary(2))
    assert mlp_fisher_product(binary, obs, list(binary.parameters())) is None


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_an_updater_step_with_it_equals_the_autograd_step(float64, kind):
    def step(use_fisher_fn):
        policy = policy_of(kind, seed=3)
        obs = torch.randn(40, 3, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            old = policy(obs)
            act = old.sample()
        adv = torch.randn(40, generator=torch.Generator().manual_seed(4))

        def closure():
            new = policy(obs)
            ratio = (new.log_prob(act) - old.log_prob(act)).exp()
            return -(ratio * adv).mean(), torch.distributions.kl_divergence(old, new).mean()

        params = list(policy.parameters())
        updater = TrustRegionUpdater(
            params, max_kl=0.01, cg_iters=100, cg_tol=1e-26, fvp="analytic"
        )
        fisher_fn = mlp_fisher_product(policy, obs, params) if use_fisher_fn else None
        assert fisher_fn is not None or not use_fisher_fn
        stats = updater.step(
            closure, dist_fn=module_distribution_fn(policy, obs), fisher_fn=fisher_fn
        )
        assert stats.accepted
        return flat_params(params)

    torch.testing.assert_close(step(True), step(False), rtol=1e-10, atol=1e-10)
