"""Networks: observations -> action distribution (policy), observations -> value."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trpo_ng.distributions import ActionDistribution, Categorical, DiagGaussian

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}


def mlp(
    in_dim: int, hidden_sizes: Sequence[int], out_dim: int, *, activation: str, out_gain: float
) -> nn.Sequential:
    """An MLP with orthogonal initialisation (Saxe et al. 2014; gains as in Engstrom et al. 2020,
    "Implementation Matters in Deep Policy Gradients": sqrt(2) hidden, small output)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in itertools.pairwise(sizes):
        layers += [_orthogonal(nn.Linear(a, b), math.sqrt(2)), ACTIVATIONS[activation]()]
    layers.append(_orthogonal(nn.Linear(sizes[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def flat_obs_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"unsupported observation space {space}; trpo-ng supports Box for now")
    return int(np.prod(space.shape))


class MLPPolicy(nn.Module):
    """obs_BD -> action distribution: Categorical for Discrete, DiagGaussian for Box actions.

    The Gaussian's log-std is a state-independent parameter (TRPO paper, sec. 8).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        obs_dim = flat_obs_dim(observation_space)
        if isinstance(action_space, gym.spaces.Discrete):
            self.net = mlp(
                obs_dim, hidden_sizes, int(action_space.n), activation=activation, out_gain=0.01
            )
            self.log_std = None
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            act_dim = action_space.shape[0]
            self.net = mlp(obs_dim, hidden_sizes, act_dim, activation=activation, out_gain=0.01)
            self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        else:
            raise ValueError(
                f"unsupported action space {action_space}; trpo-ng supports Discrete and 1-D Box"
            )

    def forward(self, obs_BD: Tensor) -> ActionDistribution:
        out = self.net(obs_BD.flatten(1))
        if self.log_std is None:
            return Categorical(out)
        # clone: a distribution must not alias a parameter, or an "old" policy kept for the
        # KL would move with the update
        return DiagGaussian(out, self.log_std.clone())


class MLPValue(nn.Module):
    """obs_BD -> V(s)_B."""

    def __init__(
        self,
        observation_space: gym.Space,
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.net = mlp(
            flat_obs_dim(observation_space), hidden_sizes, 1, activation=activation, out_gain=1.0
        )

    def forward(self, obs_BD: Tensor) -> Tensor:
        return self.net(obs_BD.flatten(1)).squeeze(-1)
