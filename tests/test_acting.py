"""The NumPy acting path (``trpo_ng.acting``) gives the torch path's actions from the same draws."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo_ng.acting import MAX_ROWS, NumpyMLP, supports
from trpo_ng.policies import Policy, mlp

BOX = gym.spaces.Box(-1.0, 1.0, (5,), dtype=np.float32)


def both_paths(policy: Policy, obs: torch.Tensor, **kwargs: object) -> tuple[np.ndarray, ...]:
    """The actions of the NumPy and the torch path from the same random state."""
    state = torch.get_rng_state()
    fast = policy.act(obs, **kwargs).numpy()
    assert policy._numpy_net is not None
    net, policy._numpy_net = policy._numpy_net, None
    try:
        torch.set_rng_state(state)
        slow = policy.act(obs, **kwargs).numpy()
    finally:
        policy._numpy_net = net
    return fast, slow


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "sigmoid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_mlp_equals_the_torch_forward(activation: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    net = mlp(5, [16, 8], 3, activation=activation, out_gain=1.0).to(dtype)
    x = torch.randn(7, 5, dtype=dtype) * 3
    latent, out = NumpyMLP(net)(x.numpy())
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(out, net(x).detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(latent, net.latent(x).detach().numpy(), rtol=tol, atol=tol)
    assert out.dtype == x.numpy().dtype


@pytest.mark.parametrize(
    ("action_space", "sde"),
    [
        (gym.spaces.Discrete(4), False),
        (gym.spaces.Discrete(3, start=1), False),
        (BOX, False),
        (BOX, True),
    ],
)
@pytest.mark.parametrize("deterministic", [False, True])
def test_numpy_actions_equal_the_torch_paths(
    action_space: gym.Space, sde: bool, deterministic: bool
) -> None:
    torch.manual_seed(1)
    policy = Policy(BOX, action_space, sde=sde, init_log_std=-0.5)
    with torch.no_grad():  # an output layer that is not near zero, so modes differ per row
        policy.net[-1].weight.mul_(100)
    obs = torch.randn(64, 5)
    noise = policy.sde_noise(64) if sde and not deterministic else None
    fast, slow = both_paths(policy, obs, deterministic=deterministic, noise=noise)
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    if not deterministic and action_space is not BOX:
        assert len(np.unique(fast)) > 1  # the sample is drawn, not the mode


def test_the_views_follow_in_place_updates_and_replaced_parameters() -> None:
    torch.manual_seed(2)
    policy = Policy(BOX, BOX)
    obs = torch.randn(3, 5)
    policy.act(obs, deterministic=True)  # builds the views
    with torch.no_grad():
        policy.net[0].weight.add_(1.0)  # as the updater steps: in place
    fast, slow = both_paths(policy, obs, deterministic=True)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    other = Policy(BOX, BOX)
    policy.load_state_dict(other.state_dict(), assign=True)  # new storage
    fast, slow = both_paths(policy, obs, deterministic=True)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast, other.act(obs, deterministic=True).numpy(), rtol=1e-6)


def test_other_networks_keep_the_torch_path() -> None:
    assert not supports(
        torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softplus(), torch.nn.Linear(2, 1))
    )
    assert not supports(torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False)))
    binary = Policy(BOX, gym.spaces.MultiBinary(3))
    assert binary._numpy_net is None
    assert binary.act(torch.randn(2, 5)).shape == (2, 3)
    image = gym.spaces.Box(0, 255, (4, 36, 36), dtype=np.uint8)
    assert Policy(image, gym.spaces.Discrete(2))._numpy_net is None


def test_large_batches_take_the_torch_path_with_the_same_result() -> None:
    torch.manual_seed(3)
    policy = Policy(BOX, BOX)
    obs = torch.randn(MAX_ROWS + 1, 5)
    mode = policy.act(obs, deterministic=True).numpy()  # torch
    first = policy.act(obs[:MAX_ROWS], deterministic=True).numpy()  # NumPy
    np.testing.assert_allclose(mode[:MAX_ROWS], first, rtol=1e-5, atol=1e-6)


def test_a_rows_mode_does_not_depend_on_its_batch() -> None:
    """Evaluating many episodes at once (``rollout.evaluate``) plays what one at a time does:
    BLAS may round a batch's product differently from a single row's."""
    torch.manual_seed(4)
    policy = Policy(gym.spaces.Box(-1.0, 1.0, (11,)), BOX, hidden_sizes=(64, 64))
    with torch.no_grad():
        policy.net[-1].weight.mul_(100)
    obs = torch.randn(10, 11) * 3
    batch = policy.act(obs, deterministic=True)
    rows = torch.cat([policy.act(obs[i : i + 1], deterministic=True) for i in range(10)])
    assert torch.equal(batch, rows)


@pytest.mark.parametrize(
    ("action_space", "noise_every"), [(gym.spaces.Discrete(4), 0), (BOX, 0), (BOX, 4)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_shares_sampler_gives_acts_samples_and_leaves_the_stream_as_act_does(
    action_space: gym.Space, noise_every: int, dtype: torch.dtype
) -> None:
    """``Policy.sampler`` draws a share's numbers before its first step, call by call as
    ``act`` would (with gSDE: a noise matrix every ``noise_every`` steps, as a rollout draws
    them): the same actions, bit for bit, and the same generator state after."""
    torch.manual_seed(5)
    sde = noise_every > 0
    policy = Policy(BOX, action_space, init_log_std=-0.5, sde=sde).to(dtype)
    with torch.no_grad():
        policy.net[-1].weight.mul_(100)
    obs = [torch.randn(3, 5, dtype=torch.float32) for _ in range(10)]  # 10: not a multiple of 4
    state = torch.get_rng_state()
    stepwise = []
    for t, o in enumerate(obs):
        if sde and t % noise_every == 0:
            noise = policy.sde_noise(3).detach()
        stepwise.append(policy.act(o, noise=noise if sde else None).numpy())
    after_act = torch.get_rng_state()
    torch.set_rng_state(state)
    sample = policy.sampler(3, len(obs), noise_every)
    assert sample is not None
    assert torch.equal(torch.get_rng_state(), after_act)
    for t, o in enumerate(obs):
        action = sample(o.numpy(), t)
        assert action.dtype == stepwise[t].dtype
        np.testing.assert_array_equal(action, stepwise[t])
    assert len({a.tobytes() for a in stepwise}) > len(obs) // 2  # samples drawn, step by step


def test_no_sampler_where_act_takes_the_torch_path() -> None:
    assert Policy(BOX, BOX).sampler(MAX_ROWS + 1, 4) is None
    assert Policy(BOX, BOX, sde=True).sampler(2, 4) is None  # gSDE without noise_every
    assert Policy(BOX, gym.spaces.MultiBinary(3)).sampler(2, 4) is None
