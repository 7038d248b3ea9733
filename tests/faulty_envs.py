"""Environments that misbehave on purpose, for the reliability tests (registered on import)."""

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class NaNRewardCartPole(CartPoleEnv):
    """CartPole whose reward is NaN from global step ``nan_from`` to ``nan_until`` of this env
    instance (counted across episodes)."""

    def __init__(self, nan_from: int = 100, nan_until: int = 101, **kwargs):
        super().__init__(**kwargs)
        self.nan_from, self.nan_until, self.count = nan_from, nan_until, 0

    def step(self, action):
        obs, rew, term, trunc, info = super().step(action)
        self.count += 1
        if self.nan_from <= self.count < self.nan_until:
            rew = float("nan")
        return obs, rew, term, trunc, info


class NaNObsCartPole(NaNRewardCartPole):
    def step(self, action):
        obs, rew, term, trunc, info = super().step(action)
        if np.isnan(rew):
            return np.full_like(obs, np.nan), 1.0, term, trunc, info
        return obs, rew, term, trunc, info


def register() -> None:
    for name, cls, kwargs in [
        ("NaNOnceCartPole-v0", NaNRewardCartPole, {"nan_from": 100, "nan_until": 101}),
        ("NaNAlwaysCartPole-v0", NaNRewardCartPole, {"nan_from": 1, "nan_until": 10**9}),
        ("NaNObsCartPole-v0", NaNObsCartPole, {"nan_from": 100, "nan_until": 101}),
    ]:
        if name not in gym.registry:
            gym.register(name, entry_point=cls, kwargs=kwargs, max_episode_steps=500)


register()
