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


def assert_one_line_exit_2(code, err, *needles):
    """A user error: exit code 2 and one stderr line, no traceback, naming ``needles``."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
