"""Vector environments behind one small interface: ``reset(seed)`` and ``step(actions)``.

Both kinds reset an episode in the same step it ends and hand back its final observation, the
way the rollout needs it for bootstrapping at a time limit. Episode returns and lengths come
from Gymnasium's own RecordEpisodeStatistics wrapper.

- ``SerialVectorEnv``: N envs stepped in a loop in this process. It writes into preallocated
  arrays and merges no info dicts, which is most of what Gymnasium's SyncVectorEnv spends
  per step on small envs.
- ``SubprocessVectorEnv``: Gymnasium's AsyncVectorEnv, one process per env.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import RecordEpisodeStatistics as RecordVectorEpisodeStatistics


@dataclass
class Step:
    obs: np.ndarray  # (N, ...) next observations; the reset one where an episode ended
    rew: np.ndarray  # (N,)
    term: np.ndarray  # (N,) bool
    trunc: np.ndarray  # (N,) bool
    final_obs: dict[int, np.ndarray] = field(default_factory=dict)  # env -> last observation
    episodes: list[tuple[float, int]] = field(default_factory=list)  # (return, length)


class SerialVectorEnv:
    """``num_envs`` copies of an env, stepped one after another in this process."""

    def __init__(self, make_env: Callable[[], gym.Env], num_envs: int) -> None:
        self.envs = [RecordEpisodeStatistics(make_env()) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        space = self.single_observation_space
        self._obs = np.zeros((num_envs, *space.shape), dtype=space.dtype)
        self._rew = np.zeros(num_envs)
        self._term = np.zeros(num_envs, dtype=bool)
        self._trunc = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int) -> np.ndarray:
        """Env i starts from ``seed + i``, as Gymnasium's vector envs do."""
        for i, env in enumerate(self.envs):
            self._obs[i], _ = env.reset(seed=seed + i)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> Step:
        final_obs: dict[int, np.ndarray] = {}
        episodes: list[tuple[float, int]] = []
        for i, env in enumerate(self.envs):
            obs, self._rew[i], term, trunc, info = env.step(actions[i])
            self._term[i], self._trunc[i] = term, trunc
            if term or trunc:
                final_obs[i] = obs
                episodes.append((float(info["episode"]["r"]), int(info["episode"]["l"])))
                obs, _ = env.reset()
            self._obs[i] = obs
        return Step(
            self._obs.copy(),
            self._rew.copy(),
            self._term.copy(),
            self._trunc.copy(),
            final_obs,
            episodes,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


class SubprocessVectorEnv:
    """Gymnasium's AsyncVectorEnv (one process per env) behind the same ``step``."""

    def __init__(self, env_id: str, num_envs: int) -> None:
        # workers ignore Ctrl-C: the trainer, not the terminal, decides when they stop
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            envs = gym.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode="async",
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        self.envs = RecordVectorEpisodeStatistics(envs)
        self.num_envs = num_envs
        self.single_observation_space = envs.single_observation_space
        self.single_action_space = envs.single_action_space

    def reset(self, *, seed: int) -> np.ndarray:
        obs, _ = self.envs.reset(seed=seed)
        return obs

    def step(self, actions: np.ndarray) -> Step:
        obs, rew, term, trunc, info = self.envs.step(actions)
        final_obs = {int(i): info["final_obs"][i] for i in np.flatnonzero(term | trunc)}
        episodes = []
        if "episode" in info:
            for i in np.flatnonzero(info["_episode"]):
                episodes.append((float(info["episode"]["r"][i]), int(info["episode"]["l"][i])))
        return Step(obs, np.asarray(rew, dtype=np.float64), term, trunc, final_obs, episodes)

    def close(self) -> None:
        self.envs.close()


VectorEnv = SerialVectorEnv | SubprocessVectorEnv


def make_vector_env(env_id: str, *, num_envs: int, backend: str) -> VectorEnv:
    """``backend``: "sync" (in this process) or "subprocess"."""
    if backend == "sync":
        return SerialVectorEnv(lambda: gym.make(env_id), num_envs)
    if backend == "subprocess":
        return SubprocessVectorEnv(env_id, num_envs)
    raise ValueError(f"unknown rollout backend {backend!r}")
