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
    norm.update(rng.normal([10.0, -3.0], [2.0, 0.5], size=(500, 2)))
    before = norm.state_dict()
    z = norm.normalize(np.stack([norm.rms.mean, [1e6, -1e6]]))
    after = norm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(z[0], [0.0, 0.0])
    np.testing.assert_array_equal(z[1], [5.0, -5.0])
    assert z.dtype == np.float32


def test_normaliser_state_round_trip_and_shape_check():
    norm = ObservationNormalizer((3,))
    norm.update(np.arange(12.0).reshape(4, 3))
    other = ObservationNormalizer((3,))
    other.load_state_dict(norm.state_dict())
    x = np.ones((1, 3))
    np.testing.assert_array_equal(other.normalize(x), norm.normalize(x))
    with pytest.raises(ValueError, match="shape"):
        ObservationNormalizer((2,)).load_state_dict(norm.state_dict())


def test_observation_normaliser_freezes_after_its_budget_of_observations():
    data = np.random.default_rng(2).normal(size=(500, 3))
    norm = ObservationNormalizer((3,), freeze_after=250)
    for batch in np.split(data, 5):  # batches of 100: the third would take it past 250
        norm.update(batch)
    assert norm.rms.count == 200
    np.testing.assert_allclose(norm.rms.mean, data[:200].mean(0), rtol=1e-12)
    resumed = ObservationNormalizer((3,), freeze_after=250)
    resumed.load_state_dict(norm.state_dict())  # the count travels with the state: still frozen
    resumed.update(data[:100])
    assert resumed.rms.count == 200
    unfrozen = ObservationNormalizer((3,))
    for batch in np.split(data, 5):
        unfrozen.update(batch)
    assert unfrozen.rms.count == 500


def test_reward_scaler_divides_by_the_discounted_return_std():
    scaler = RewardScaler(2, gamma=0.5, clip=1e9)
    rew = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    done = np.array([[0, 0], [0, 1], [0, 0]], dtype=bool)
    out = scaler(rew, done)
    # G_t = 0.5 G_{t-1} + r_t per env, restarting after an episode ends
    returns = np.array([[1.0, 2.0], [1.5, 3.0], [1.75, 2.0]])
    np.testing.assert_allclose(out, rew / np.sqrt(returns.var() + 1e-8), rtol=1e-6)
    np.testing.assert_array_equal(scaler.returns_N, [1.75, 2.0])  # carried to the next batch


def test_non_finite_rows_do_not_poison_the_statistics():
    rms = RunningMeanStd((2,))
    rms.update(np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, np.inf]]))
    np.testing.assert_array_equal(rms.mean, [1.0, 2.0])
    assert rms.count == 1
