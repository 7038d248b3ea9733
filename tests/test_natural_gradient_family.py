"""The natural gradient's claims, checked exactly (float64, small networks).

1. Reparameterisation invariance: two networks computing the same function through different
   weights (sigmoid vs tanh hidden units; a rescaled output layer) move to the same new
   distributions under a natural-gradient step, and to different ones under a vanilla step.
2. A fixed-KL NPG step lands at the KL it asked for; TRPO's accepted step stays inside it.
3. An outlying advantage cannot push TRPO past max_kl, while VPG's step grows with it.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import kl_divergence

from trpo_ng.distributions import Categorical
from trpo_ng.natural_gradient import (
    NaturalPolicyGradientUpdater,
    PolicyUpdater,
    TrustRegionUpdater,
    VanillaPolicyGradientUpdater,
    flat_params,
)
from trpo_ng.policies import MLPPolicy

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), dtype=np.float64)
ACTIONS = gym.spaces.Discrete(3)
WEIGHT_STD = 1.0
HIDDEN = (3,)  # few weights for the batch, so the Fisher is well conditioned


def sigmoid_and_tanh_twins(seed=0):
    """A sigmoid MLP policy and the tanh MLP computing exactly the same function.

    With sigmoid(z) = (1 + tanh(z / 2)) / 2, writing h_k = (1 + t_k) / 2 for each hidden layer:
    layer 1: W' = W / 2, b' = b / 2; later hidden layers: W' = W / 4, b' = (b + W 1 / 2) / 2;
    output layer: W' = W / 2, b' = b + W 1 / 2. The map between weight vectors is affine.
    """
    torch.manual_seed(seed)
    sig = MLPPolicy(OBS, ACTIONS, hidden_sizes=HIDDEN, activation="sigmoid").double()
    tanh = MLPPolicy(OBS, ACTIONS, hidden_sizes=HIDDEN, activation="tanh").double()
    linear = [m for m in sig.net if isinstance(m, nn.Linear)]
    twin = [m for m in tanh.net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in linear:  # a policy far from uniform, hidden units far from linear
            layer.weight.normal_(0.0, WEIGHT_STD)
            layer.bias.normal_(0.0, WEIGHT_STD)
        for k, (a, b) in enumerate(zip(linear, twin, strict=True)):
            W, bias = a.weight, a.bias
            if k == 0:
                b.weight.copy_(W / 2)
                b.bias.copy_(bias / 2)
            elif k < len(linear) - 1:
                b.weight.copy_(W / 4)
                b.bias.copy_((bias + W.sum(1) / 2) / 2)
            else:
                b.weight.copy_(W / 2)
                b.bias.copy_(bias + W.sum(1) / 2)
    return sig, tanh


class ScaledOutput(nn.Module):
    """The same policy with its output layer reparameterised as W = scale * V, b = scale * c."""

    def __init__(self, policy: MLPPolicy, scale: float) -> None:
        super().__init__()
        self.body = policy.net[:-1]
        last = policy.net[-1]
        self.out = nn.Linear(last.in_features, last.out_features).double()
        self.scale = scale
        with torch.no_grad():
            self.out.weight.copy_(last.weight / scale)
            self.out.bias.copy_(last.bias / scale)

    def forward(self, obs):
        return Categorical(self.scale * self.out(self.body(obs)))


def batch(seed=1, n=512, outlier=None):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    act = torch.randint(0, 3, (n,), generator=gen)
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    if outlier is not None:
        adv[0] = outlier * adv.abs().max()
    return obs, act, adv


def closure_for(policy, obs, act, adv):
    with torch.no_grad():
        old = policy(obs)

    def closure():
        new = policy(obs)
        ratio = (new.log_prob(act) - old.log_prob(act)).exp()
        return -(ratio * adv).mean(), kl_divergence(old, new).mean()

    return old, closure


def step_and_probs(policy, make_updater, data):
    old, closure = closure_for(policy, *data)
    make_updater(policy.parameters()).step(closure)
    with torch.no_grad():
        return old.probs, policy(data[0]).probs


def natural(params):
    return NaturalPolicyGradientUpdater(
        params, max_kl=0.001, damping=1e-10, cg_iters=200, cg_tol=1e-28
    )


def vanilla(params):
    return VanillaPolicyGradientUpdater(params, lr=0.5)


def test_sigmoid_and_tanh_twins_compute_the_same_function():
    sig, tanh = sigmoid_and_tanh_twins()
    obs = batch()[0]
    torch.testing.assert_close(sig(obs).probs, tanh(obs).probs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("twins", ["sigmoid-tanh", "rescaled-output"])
def test_natural_step_is_invariant_vanilla_step_is_not(twins):
    data = batch()
    if twins == "sigmoid-tanh":
        make_pair = sigmoid_and_tanh_twins
    else:

        def make_pair():
            policy = sigmoid_and_tanh_twins()[1]
            twin = ScaledOutput(sigmoid_and_tanh_twins()[1], scale=10.0)
            return policy, twin

    a, b = make_pair()
    before_a, after_a = step_and_probs(a, natural, data)
    before_b, after_b = step_and_probs(b, natural, data)
    torch.testing.assert_close(before_a, before_b, rtol=0, atol=1e-12)
    assert (after_a - before_a).abs().max() > 1e-2  # the step really moved the policy
    assert (after_a - after_b).abs().max() < 1e-6

    a, b = make_pair()
    _, after_a = step_and_probs(a, vanilla, data)
    _, after_b = step_and_probs(b, vanilla, data)
    assert (after_a - after_b).abs().max() > 1e-3


@pytest.mark.parametrize("delta", [1e-3, 3e-3, 1e-2])
def test_fixed_kl_step_lands_at_the_requested_kl(delta):
    policy = sigmoid_and_tanh_twins()[1]
    _, closure = closure_for(policy, *batch())
    updater = NaturalPolicyGradientUpdater(
        policy.parameters(), max_kl=delta, damping=1e-2, cg_iters=100
    )
    stats = updater.step(closure)
    assert stats.kl == pytest.approx(delta, rel=0.10)
    with torch.no_grad():
        assert float(closure()[1]) == pytest.approx(stats.kl)


@pytest.mark.parametrize("max_kl", [1e-3, 1e-2, 5e-2])
def test_trust_region_step_never_leaves_the_region(max_kl):
    policy = sigmoid_and_tanh_twins()[1]
    _, closure = closure_for(policy, *batch(outlier=1000.0))
    stats = TrustRegionUpdater(policy.parameters(), max_kl=max_kl).step(closure)
    assert stats.accepted and 0 < stats.kl <= max_kl


def kl_after_step(make_updater, outlier):
    policy = sigmoid_and_tanh_twins()[1]
    _, closure = closure_for(policy, *batch(outlier=outlier))
    return make_updater(policy.parameters()).step(closure).kl


def test_an_outlier_cannot_push_trpo_past_max_kl_but_grows_vpg_step():
    def trpo(params):
        return TrustRegionUpdater(params, max_kl=0.01)

    def small_vanilla(params):
        return VanillaPolicyGradientUpdater(params, lr=0.05)

    assert kl_after_step(trpo, outlier=1000.0) <= 0.01
    vpg_plain, vpg_outlier = (
        kl_after_step(small_vanilla, None),
        kl_after_step(small_vanilla, 1000.0),
    )
    assert vpg_plain < 0.01 < vpg_outlier
    assert vpg_outlier > 100 * vpg_plain


def test_schedules_and_state_dict():
    policy = sigmoid_and_tanh_twins()[1]
    data = batch()
    updater = TrustRegionUpdater(policy.parameters(), max_kl=lambda n: 0.01 / (n + 1))
    kls = []
    for _ in range(2):
        _, closure = closure_for(policy, *data)
        kls.append(updater.step(closure).kl)
    assert 0.005 < kls[0] <= 0.01 and 0 < kls[1] <= 0.005
    other = TrustRegionUpdater(policy.parameters())
    other.load_state_dict(updater.state_dict())
    assert other.num_updates == 2


def test_vpg_is_exactly_a_gradient_step():
    policy = sigmoid_and_tanh_twins()[1]
    params = list(policy.parameters())
    _, closure = closure_for(policy, *batch())
    loss, _ = closure()
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
    before = flat_params(params)
    VanillaPolicyGradientUpdater(params, lr=0.3).step(closure)
    torch.testing.assert_close(flat_params(params), before - 0.3 * g, rtol=0, atol=1e-14)


def test_unknown_metric_or_step_rule_is_a_clear_error():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="metric must be one of"):
        PolicyUpdater(p, metric="hessian", step_rule="fixed_kl")
    with pytest.raises(ValueError, match="step_rule must be one of"):
        PolicyUpdater(p, metric="fisher", step_rule="adam")


def test_damped_step_size_is_the_more_conservative_step():
    kls = []
    for damped in (False, True):
        policy = sigmoid_and_tanh_twins()[1]
        _, closure = closure_for(policy, *batch())
        updater = NaturalPolicyGradientUpdater(
            policy.parameters(),
            max_kl=0.01,
            damping=0.1,
            cg_iters=50,
            damped_step_size=damped,
        )
        kls.append(updater.step(closure).kl)
    assert kls[1] < kls[0]


def test_agents_pass_their_fisher_settings_to_the_updater():
    from agents import make_agent
    from trpo_ng.config import load_config

    for agent_name in ("npg", "trpo"):
        cfg = load_config(
            None,
            [f"agent={agent_name}", "policy.fvp=double_backprop", "policy.damped_step_size=true"],
        )
        agent = make_agent(cfg, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
        assert agent.updater.fvp == "double_backprop" and agent.updater.damped_step_size
