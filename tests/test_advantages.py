import numpy as np

from trpo_ng.advantages import gae


def test_gae_hand_computation_with_termination_and_truncation():
    """Two envs, three steps. Env 0 terminates at t=1; env 1 is truncated at t=0."""
    g, lam = 0.9, 0.5
    rew = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    values = np.array([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]])
    term = np.array([[0, 0], [1, 0], [0, 0]], dtype=bool)
    trunc = np.array([[0, 1], [0, 0], [0, 0]], dtype=bool)
    # V(s_{t+1}): the next value, except at episode ends, where it is V(final observation)
    final_v_env1_t0 = 7.0  # bootstrap value of env 1's final observation at truncation
    last = np.array([4.0, 5.0])  # V of the observations after the last step
    next_values = np.array([[1.5, final_v_env1_t0], [99.0, 3.0], last])

    adv, ret = gae(rew, values, next_values, term, trunc, gamma=g, lam=lam)

    # env 0: t=2 bootstraps from last; t=1 terminates (no bootstrap, recursion cut)
    d02 = 5.0 + g * 4.0 - 2.5
    d01 = 3.0 - 1.5
    d00 = 1.0 + g * 1.5 - 0.5
    a0 = [d00 + g * lam * d01, d01, d02]
    # env 1: t=0 truncated: bootstraps from the final observation, recursion cut
    d12 = 6.0 + g * 5.0 - 3.0
    d11 = 4.0 + g * 3.0 - 2.0
    d10 = 2.0 + g * final_v_env1_t0 - 1.0
    a1 = [d10, d11 + g * lam * d12, d12]
    expected = np.stack([a0, a1], axis=1)
    np.testing.assert_allclose(adv, expected)
    np.testing.assert_allclose(ret, expected + values)


def test_gae_lambda_one_is_discounted_return_minus_value():
    rew = np.ones((4, 1))
    values = np.full((4, 1), 0.25)
    next_values = np.vstack([values[1:], [[0.0]]])
    term = np.array([[0], [0], [0], [1]], dtype=bool)
    adv, _ = gae(rew, values, next_values, term, np.zeros_like(term), gamma=0.5, lam=1.0)
    returns = np.array([1 + 0.5 + 0.25 + 0.125, 1 + 0.5 + 0.25, 1 + 0.5, 1.0])
    np.testing.assert_allclose(adv[:, 0], returns - 0.25)
