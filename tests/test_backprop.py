"""The hand-written squared-error gradient equals autograd's, and the value fit that uses it
ends where the autograd fit ends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents.trpo import TRPOAgent
from trpo_ng import backprop
from trpo_ng.policies import mlp


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "sigmoid"])
@pytest.mark.parametrize("hidden", [(), (7,), (16, 8, 5)])
def test_gradient_equals_autograds(activation, hidden):
    torch.manual_seed(0)
    net = mlp(6, hidden, 1, activation=activation, out_gain=1.0).double()
    for p in net.parameters():  # nonzero biases, so that every term is exercised
        nn.init.normal_(p)
    x, target = torch.randn(33, 6, dtype=torch.float64), torch.randn(33, dtype=torch.float64)
    loss, grads = backprop.squared_error_and_grad(net, x, target)
    expected_loss = 0.5 * (net(x).squeeze(-1) - target).square().mean()
    expected = torch.autograd.grad(expected_loss, list(net.parameters()))
    torch.testing.assert_close(loss, expected_loss.detach(), rtol=1e-12, atol=0)
    assert len(grads) == len(expected)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_only_plain_mlps_are_supported():
    assert backprop.supports(mlp(3, (4, 4), 1, activation="tanh", out_gain=1.0))
    assert not backprop.supports(nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 1)))
    assert not backprop.supports(nn.Sequential(nn.Linear(3, 4), nn.ELU(alpha=0.5), nn.Linear(4, 1)))
    assert not backprop.supports(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    assert not backprop.supports(nn.Sequential(nn.Linear(3, 1, bias=False)))


def test_value_fit_by_hand_matches_the_autograd_fit(monkeypatch):
    space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)
    obs, ret = torch.randn(300, 5), torch.randn(300)

    def fitted(by_hand: bool) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(1)
        agent = TRPOAgent(space, gym.spaces.Discrete(2), value_epochs=3, value_minibatch_size=64)
        initial.append(agent.value_fn.net[0].weight.detach().clone())
        if not by_hand:
            monkeypatch.setattr(backprop, "supports", lambda net: False)
        loss, _ = agent._fit_value(obs, ret)
        monkeypatch.undo()
        return loss, [p.detach().clone() for p in agent.value_fn.parameters()]

    initial: list[torch.Tensor] = []
    loss_hand, hand = fitted(True)
    loss_auto, auto = fitted(False)
    assert loss_hand == pytest.approx(loss_auto, rel=1e-4)
    for a, b in zip(hand, auto, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(initial[0], initial[1])
    assert (hand[0] - initial[0]).abs().max() > 1e-3  # the fit did move the weights
