"""Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control
Using Generalized Advantage Estimation", eq. 16), with time-limit truncation handled as in
Pardo et al. 2018, "Time Limits in Reinforcement Learning".
"""

from __future__ import annotations

import numpy as np


def gae(
    rew_TN: np.ndarray,
    values_TN: np.ndarray,
    next_values_TN: np.ndarray,
    term_TN: np.ndarray,
    trunc_TN: np.ndarray,
    *,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns (lambda-returns, the value targets) over (time, env) arrays.

    ``next_values_TN[t]`` is V of the observation that followed step t: the final observation
    of the episode when step t ended it, otherwise the next one in the rollout. A terminated
    step does not bootstrap (delta = r - V); a truncated one does (delta = r + gamma V(s') - V).
    Either way the advantage recursion stops at an episode end.
    """
    T = rew_TN.shape[0]
    not_term = 1.0 - term_TN.astype(np.float64)
    not_done = 1.0 - np.logical_or(term_TN, trunc_TN).astype(np.float64)
    deltas = rew_TN + gamma * not_term * next_values_TN - values_TN
    adv = np.zeros(rew_TN.shape, dtype=np.float64)
    running = np.zeros(rew_TN.shape[1:], dtype=np.float64)
    for t in reversed(range(T)):
        running = deltas[t] + gamma * lam * not_done[t] * running
        adv[t] = running
    adv = adv.astype(rew_TN.dtype, copy=False)
    return adv, adv + values_TN
