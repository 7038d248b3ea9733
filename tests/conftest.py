import gymnasium as gym
import numpy as np
import pytest
import torch


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def tiny_policy(action_space: gym.Space, *, seed: int = 0, obs_dim: int = 3):
    """A small float64 MLP policy for exact checks."""
    from trpo_ng.policies import MLPPolicy

    torch.manual_seed(seed)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float64)
    policy = MLPPolicy(obs_space, action_space, hidden_sizes=(5,), activation="tanh").double()
    # larger output weights than the default 0.01 gain, so the metric is far from trivial
    with torch.no_grad():
        policy.net[-1].weight.mul_(100.0)
        if policy.log_std is not None:
            policy.log_std.copy_(torch.linspace(-0.5, 0.3, policy.log_std.numel()))
    return policy
