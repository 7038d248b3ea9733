"""The analytic (Gauss-Newton) Fisher-vector product and the updater's ``dist_fn`` hook.

Exact checks in float64 on tiny networks: the analytic product J^T M J v equals double backprop
of the mean KL and an explicitly built Fisher; an updater step gives the same parameters
whichever way its Fisher is computed; a Fisher on a subsample is really the one used.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import tiny_policy
from test_natural_gradient import explicit_fisher
from torch.distributions import kl_divergence

from trpo_ng.natural_gradient import (
    NaturalPolicyGradientUpdater,
    PolicyUpdater,
    TrustRegionUpdater,
    detached,
    fisher_vector_product,
    flat_params,
    gauss_newton_fisher_vector_product,
    module_distribution_fn,
)

SPACES = {
    "categorical": gym.spaces.Discrete(4),
    "gaussian": gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float64),
}
UPDATERS = {"npg": NaturalPolicyGradientUpdater, "trpo": TrustRegionUpdater}


def double_backprop(policy, obs, damping):
    with torch.no_grad():
        old = policy(obs)
    kl = kl_divergence(old, policy(obs)).mean()
    return fisher_vector_product(kl, list(policy.parameters()), damping=damping)


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_analytic_product_equals_double_backprop_and_explicit_fisher(float64, kind, damping):
    policy = tiny_policy(SPACES[kind])
    obs = torch.randn(6, 3)
    F = explicit_fisher(policy, obs)
    v = torch.randn(F.shape[0])
    analytic = gauss_newton_fisher_vector_product(
        module_distribution_fn(policy, obs), list(policy.parameters()), damping=damping
    )
    expected = F @ v + damping * v
    torch.testing.assert_close(analytic(v), expected, rtol=1e-10, atol=1e-10)
    by_kl = double_backprop(policy, obs, damping)(v)
    torch.testing.assert_close(analytic(v), by_kl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(analytic(2 * v), 2 * expected, rtol=1e-10, atol=1e-10)  # reused
    assert all(p.grad is None for p in policy.parameters())  # works on detached copies


def test_a_frozen_distribution_parameter_contributes_nothing(float64):
    """A Gaussian with a fixed log-std: that output is a constant, the Fisher covers the mean."""
    policy = tiny_policy(SPACES["gaussian"])
    policy.log_std.requires_grad_(False)
    obs = torch.randn(6, 3)
    params = [p for p in policy.parameters() if p.requires_grad]
    v = torch.randn(sum(p.numel() for p in params))
    analytic = gauss_newton_fisher_vector_product(
        module_distribution_fn(policy, obs), params, damping=0.1
    )
    with torch.no_grad():
        old = policy(obs)
    kl = kl_divergence(old, policy(obs)).mean()
    expected = fisher_vector_product(kl, params, damping=0.1)(v)
    torch.testing.assert_close(analytic(v), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_detached_rebuilds_the_same_distribution_without_graph(float64, kind):
    policy = tiny_policy(SPACES[kind])
    new = policy(torch.randn(5, 3))
    old = detached(new)
    assert type(old) is type(new)
    for a, b in zip(old.params(), new.params(), strict=True):
        assert not a.requires_grad and b.requires_grad
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)  # Categorical renormalises
    assert float(kl_divergence(old, new).detach().abs().max()) < 1e-12


def problem(kind, *, n=48, seed=2):
    """A policy, its observations and a closure returning (surrogate loss, mean KL)."""
    policy = tiny_policy(SPACES[kind], seed=seed)
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=gen)
    with torch.no_grad():
        old = policy(obs)
        act = old.sample()
    adv = torch.randn(n, generator=gen)

    def closure(kl_rows=slice(None)):
        new = policy(obs)
        ratio = (new.log_prob(act) - old.log_prob(act)).exp()
        kl = kl_divergence(old, new)[kl_rows].mean()
        return -(ratio * adv).mean(), kl

    return policy, obs, closure


def params_after_step(kind, updater, fvp, *, dist_rows=None, kl_rows=slice(None)):
    policy, obs, closure = problem(kind)
    make = UPDATERS[updater]
    # CG run to convergence, so that the paths differ only by round-off in the products
    step = make(policy.parameters(), max_kl=0.01, damping=0.1, cg_iters=200, cg_tol=1e-26, fvp=fvp)
    dist_fn = None if dist_rows is None else module_distribution_fn(policy, obs[dist_rows])
    assert step.step(lambda: closure(kl_rows), dist_fn=dist_fn).accepted
    return flat_params(list(policy.parameters()))


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("updater", sorted(UPDATERS))
def test_step_is_the_same_whichever_way_the_fisher_is_computed(float64, kind, updater):
    before = flat_params(list(problem(kind)[0].parameters()))
    closure_only = params_after_step(kind, updater, "double_backprop")
    assert (closure_only - before).abs().max() > 1e-3  # the step really moved
    for fvp in ("double_backprop", "analytic"):
        via_dist_fn = params_after_step(kind, updater, fvp, dist_rows=slice(None))
        torch.testing.assert_close(via_dist_fn, closure_only, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("fvp", ["double_backprop", "analytic"])
def test_a_fisher_on_a_subsample_is_the_one_used(float64, kind, fvp):
    """dist_fn on the first 12 of 48 samples: the step differs from the full-batch one and
    equals the step whose closure measures its KL on those 12 samples only."""
    rows = slice(0, 12)
    full = params_after_step(kind, "npg", fvp, dist_rows=slice(None))
    sub = params_after_step(kind, "npg", fvp, dist_rows=rows)
    closure_sub = params_after_step(kind, "npg", "double_backprop", kl_rows=rows)
    assert (sub - full).abs().max() > 1e-3
    torch.testing.assert_close(sub, closure_sub, rtol=1e-10, atol=1e-10)


def test_bad_fvp_and_analytic_without_dist_fn_are_clear_errors():
    p = [torch.nn.Parameter(torch.zeros(2))]
    for make in (
        lambda: PolicyUpdater(p, metric="fisher", step_rule="fixed_kl", fvp="exact"),
        lambda: NaturalPolicyGradientUpdater(p, fvp="gauss-newton"),
        lambda: TrustRegionUpdater(p, fvp=""),
    ):
        with pytest.raises(ValueError, match="fvp must be one of"):
            make()
    updater = TrustRegionUpdater(p, fvp="analytic")
    with pytest.raises(ValueError, match="needs step"):
        updater.step(lambda: (p[0].sum(), p[0].square().sum()))
    assert updater.num_updates == 0


def test_module_distribution_fn_substitutes_the_trainable_parameters(float64):
    policy = tiny_policy(SPACES["gaussian"])
    policy.net[0].bias.requires_grad_(False)  # frozen: stays the module's own
    obs = torch.randn(4, 3)
    dist_fn = module_distribution_fn(policy, obs)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    doubled = [2 * p.detach() for p in trainable]
    got = dist_fn(doubled)
    with torch.no_grad():
        for p in trainable:
            p.mul_(2)
        expected = policy(obs)
    for a, b in zip(got.params(), expected.params(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"expected {len(trainable)} parameter tensors, got 2"):
        dist_fn(doubled[:2])
