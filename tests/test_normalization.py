import numpy as np
import pytest
import torch

from trpo_ng.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd


def test_running_mean_std_matches_numpy_over_uneven_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4))
    rms = RunningMeanStd((4,))
    for chunk in np.array_split(data, [1, 7, 300, 301, 999]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-12)
    assert rms.count == 1000


def test_observation_normaliser_frozen_does_not_move_and_clips():
    norm = ObservationNormalizer((2,), clip=5.0)
    rng = np.random.default_rng(1)
    norm(rng.normal([10.0, -3.0], [2.0, 0.5], size=(500, 2)), update=True)
    before = norm.state_dict()
    z = norm(np.stack([norm.rms.mean, [1e6, -1e6]]), update=False)
    after = norm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(z[0], [0.0, 0.0])
    np.testing.assert_array_equal(z[1], [5.0, -5.0])
    assert z.dtype == np.float32


def test_normaliser_state_round_trip_and_shape_check():
    norm = ObservationNormalizer((3,))
    norm(np.arange(12.0).reshape(4, 3), update=True)
    other = ObservationNormalizer((3,))
    other.load_state_dict(norm.state_dict())
    x = np.ones((1, 3))
    np.testing.assert_array_equal(other(x, update=False), norm(x, update=False))
    with pytest.raises(ValueError, match="shape"):
        ObservationNormalizer((2,)).load_state_dict(norm.state_dict())


def test_reward_scaler_divides_by_the_discounted_return_std():
    scaler = RewardScaler(1, gamma=0.5, clip=1e9)
    rewards = [1.0, 1.0, 1.0]
    out = [float(scaler(np.array([r]), np.array([False]))[0]) for r in rewards]
    returns = np.array([1.0, 1.5, 1.75])  # G_t = 0.5 G_{t-1} + r_t
    stds = [np.sqrt(returns[: i + 1].var() + 1e-8) for i in range(3)]
    np.testing.assert_allclose(out, [r / s for r, s in zip(rewards, stds, strict=True)], rtol=1e-5)
    scaler(np.array([1.0]), np.array([True]))
    assert scaler.returns_N[0] == 0.0  # the discounted return restarts with the episode


def test_non_finite_rows_do_not_poison_the_statistics():
    rms = RunningMeanStd((2,))
    rms.update(np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, np.inf]]))
    np.testing.assert_array_equal(rms.mean, [1.0, 2.0])
    assert rms.count == 1
