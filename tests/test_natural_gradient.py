import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import tiny_policy
from torch.distributions import kl_divergence
from torch.func import functional_call

from trpo_ng.natural_gradient import (
    TrustRegionUpdater,
    VanillaPolicyGradientUpdater,
    conjugate_gradient,
    fisher_vector_product,
    flat_params,
    line_search,
)

SPACES = {
    "categorical": gym.spaces.Discrete(4),
    "gaussian": gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float64),
}


def test_conjugate_gradient_solves_spd_system(float64):
    torch.manual_seed(0)
    Q = torch.randn(20, 20)
    A = Q @ Q.T + 0.5 * torch.eye(20)
    x_true = torch.randn(20)
    x, residual = conjugate_gradient(lambda v: A @ v, A @ x_true, iters=100, tol=1e-24)
    torch.testing.assert_close(x, x_true, rtol=1e-8, atol=1e-8)
    assert residual < 1e-8


def test_conjugate_gradient_reports_residual_of_truncated_solve(float64):
    torch.manual_seed(1)
    Q = torch.randn(30, 30)
    A = Q @ Q.T + 0.1 * torch.eye(30)
    b = torch.randn(30)
    x, residual = conjugate_gradient(lambda v: A @ v, b, iters=3)
    assert residual == pytest.approx(float((b - A @ x).norm()), rel=1e-6)
    assert residual > 1e-3


def explicit_fisher(policy, obs):
    """E_i[J_i^T M_i J_i], J_i the Jacobian of sample i's distribution parameters with respect
    to all weights (autograd), M_i the distribution's metric built as a matrix column by column."""
    names = [n for n, _ in policy.named_parameters()]
    params = [p.detach() for p in policy.parameters()]
    sizes = [p.numel() for p in params]

    def dist_params(flat):
        weights = {
            n: t.view_as(p) for n, t, p in zip(names, flat.split(sizes), params, strict=True)
        }
        dist = functional_call(policy, weights, (obs,))
        return torch.cat([t.expand(obs.shape[0], -1) for t in dist.params()], dim=1)

    flat = torch.cat([p.reshape(-1) for p in params])
    J = torch.autograd.functional.jacobian(dist_params, flat)  # (B, K, W)
    dist = policy(obs)
    K = J.shape[1]
    split = [t.shape[-1] for t in dist.params()]
    F = torch.zeros(flat.numel(), flat.numel())
    for i in range(obs.shape[0]):
        sample = type(dist)(*[t.expand(obs.shape[0], -1)[i : i + 1] for t in dist.params()])
        cols = []
        for k in range(K):
            e = torch.zeros(1, K)
            e[0, k] = 1.0
            cols.append(torch.cat(sample.fisher_product(tuple(e.split(split, dim=1))), dim=1)[0])
        M = torch.stack(cols, dim=1)
        F += J[i].T @ M @ J[i]
    return F / obs.shape[0]


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_fisher_vector_product_equals_explicit_fisher(float64, kind):
    policy = tiny_policy(SPACES[kind])
    obs = torch.randn(6, 3)
    params = list(policy.parameters())
    with torch.no_grad():
        old = policy(obs)
    kl = kl_divergence(old, policy(obs)).mean()
    F = explicit_fisher(policy, obs)
    v = torch.randn(F.shape[0])
    Fv = fisher_vector_product(kl, params, damping=0.0)(v)
    torch.testing.assert_close(Fv, F @ v, rtol=1e-10, atol=1e-10)
    damped = fisher_vector_product(kl, params, damping=0.3)(v)
    torch.testing.assert_close(damped, F @ v + 0.3 * v, rtol=1e-10, atol=1e-10)


def make_problem(kind, *, seed=0, n=64):
    """A policy and a closure returning (surrogate loss, KL) on random data."""
    policy = tiny_policy(SPACES[kind], seed=seed)
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=gen)
    with torch.no_grad():
        old = policy(obs)
        act = old.sample()
        logp_old = old.log_prob(act)
    adv = torch.randn(n, generator=gen)

    def closure():
        new = policy(obs)
        ratio = (new.log_prob(act) - logp_old).exp()
        return -(ratio * adv).mean(), kl_divergence(old, new).mean()

    return policy, closure


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_line_search_restores_parameters_bit_exactly_when_nothing_is_acceptable(float64, kind):
    policy, closure = make_problem(kind)
    params = list(policy.parameters())
    before = [p.detach().clone() for p in params]
    loss, _ = closure()
    huge_uphill = torch.full_like(flat_params(params), 3.0)  # far outside any trust region
    result = line_search(
        closure,
        params,
        huge_uphill,
        loss_before=float(loss.detach()),
        max_kl=1e-12,
        backtrack_coeff=0.5,
        max_backtracks=5,
    )
    assert not result.accepted
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("max_kl", [1e-3, 1e-2, 5e-2])
def test_trust_region_step_stays_in_region_and_improves(float64, kind, max_kl):
    policy, closure = make_problem(kind, seed=3)
    updater = TrustRegionUpdater(policy.parameters(), max_kl=max_kl, damping=1e-3, cg_iters=20)
    stats = updater.step(closure)
    with torch.no_grad():
        loss, kl = closure()
    assert stats.accepted
    assert float(kl) <= max_kl
    assert stats.kl == pytest.approx(float(kl))
    assert float(loss) < stats.loss_before
    assert stats.improvement == pytest.approx(stats.loss_before - float(loss))


def test_each_step_reports_the_scheduled_trust_region_it_used(float64):
    """``UpdateStats.max_kl`` is the bound at this update (what the dashboard plots against
    train/kl), not the schedule's starting value; the learning-rate rule has none."""
    policy, closure = make_problem("gaussian", seed=3)
    updater = TrustRegionUpdater(
        policy.parameters(), max_kl=lambda k: 0.02 / (k + 1), damping=1e-3, cg_iters=20
    )
    bounds = [updater.step(closure).max_kl for _ in range(3)]
    assert bounds == pytest.approx([0.02, 0.01, 0.02 / 3])
    policy, closure = make_problem("gaussian")
    vpg = VanillaPolicyGradientUpdater(policy.parameters(), lr=0.1)
    assert math.isnan(vpg.step(closure).max_kl)


def test_updater_rejects_bad_hyper_parameters():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="max_kl"):
        TrustRegionUpdater([p], max_kl=0.0)
    with pytest.raises(ValueError, match="backtrack_coeff"):
        TrustRegionUpdater([p], backtrack_coeff=1.5)


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_old_distribution_does_not_move_with_the_parameters(float64, kind):
    policy, _ = make_problem(kind)
    obs = torch.randn(5, 3)
    with torch.no_grad():
        old = policy(obs)
        frozen = [t.clone() for t in old.params()]
        for p in policy.parameters():
            p.add_(0.1)
    for t, f in zip(old.params(), frozen, strict=True):
        assert torch.equal(t, f)
