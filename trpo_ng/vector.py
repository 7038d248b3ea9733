"""Vector environments behind one small interface: ``reset(seed)`` and ``step(actions)``.

Both kinds reset an episode in the same step it ends and hand back its final observation, the
way the rollout needs it for bootstrapping at a time limit. ``step`` is ``step_async`` then
``step_wait``, so a rollout can step several vector envs at once.

- ``SerialVectorEnv``: N envs stepped in a loop in this process. It writes into preallocated
  arrays and merges no info dicts, which is most of what Gymnasium's SyncVectorEnv spends
  per step on small envs. Episode statistics: Gymnasium's RecordEpisodeStatistics wrapper.
- ``SubprocessVectorEnv``: Gymnasium's AsyncVectorEnv, one process per env. Episode returns
  and lengths are summed here in float64, as Gymnasium's wrappers do, so both kinds report
  the same numbers.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import RecordEpisodeStatistics

from envs.wrappers import EnvWrapper, make_env, register_atari_envs


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
        if not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
            self.close()
            raise ValueError(unsupported_observation_space(space))
        self._obs = np.zeros((num_envs, *space.shape), dtype=space.dtype)
        self._rew = np.zeros(num_envs)
        self._term = np.zeros(num_envs, dtype=bool)
        self._trunc = np.zeros(num_envs, dtype=bool)
        self._actions: np.ndarray | None = None

    def reset(self, *, seed: int) -> np.ndarray:
        """Env i starts from ``seed + i``, as Gymnasium's vector envs do."""
        for i, env in enumerate(self.envs):
            self._obs[i], _ = env.reset(seed=seed + i)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> Step:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> Step:
        actions, self._actions = self._actions, None
        if actions is None:
            raise RuntimeError("step_wait without step_async")
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

    def close(self, *, terminate: bool = False) -> None:
        for env in self.envs:
            env.close()


class SubprocessVectorEnv:
    """Gymnasium's AsyncVectorEnv (one process per env) behind the same ``step``."""

    def __init__(self, env_id: str, num_envs: int, wrappers: Sequence[EnvWrapper] = ()) -> None:
        if env_id not in gym.registry:  # Atari ids exist once ale-py registers them
            register_atari_envs()
        # workers ignore Ctrl-C: the trainer, not the terminal, decides when they stop
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.envs = gym.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode="async",
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                wrappers=list(wrappers),
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        self.num_envs = num_envs
        self.single_observation_space = self.envs.single_observation_space
        self.single_action_space = self.envs.single_action_space
        space = self.single_observation_space
        if not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
            self.envs.close()
            raise ValueError(unsupported_observation_space(space))
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    def reset(self, *, seed: int) -> np.ndarray:
        obs, _ = self.envs.reset(seed=seed)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step(self, actions: np.ndarray) -> Step:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self.envs.step_async(actions)

    def step_wait(self) -> Step:
        obs, rew, term, trunc, info = self.envs.step_wait()
        rew = np.asarray(rew, dtype=np.float64)
        self._returns += rew
        self._lengths += 1
        done = np.flatnonzero(term | trunc)
        final_obs = {int(i): info["final_obs"][i] for i in done}
        episodes = [(float(self._returns[i]), int(self._lengths[i])) for i in done]
        self._returns[done] = 0.0
        self._lengths[done] = 0
        return Step(obs, rew, term, trunc, final_obs, episodes)

    def close(self, *, terminate: bool = False) -> None:
        """``terminate``: kill the env processes instead of asking them to close (after a
        fault, when one of them may be dead or stuck)."""
        self.envs.close(terminate=terminate)


VectorEnv = SerialVectorEnv | SubprocessVectorEnv


def unsupported_observation_space(space: gym.Space) -> str:
    return (
        f"unsupported observation space {space}; trpo-ng supports Box (flat or image), "
        "Discrete, and Dict (flattened by the env wrappers)"
    )


def make_vector_env(
    env_id: str, *, num_envs: int, backend: str, wrappers: Sequence[EnvWrapper] = ()
) -> VectorEnv:
    """``backend``: "sync" (in this process) or "subprocess"; ``wrappers`` are applied to
    each env, in order (``envs.wrappers.make_wrappers``)."""
    if backend == "sync":
        return SerialVectorEnv(partial(make_env, env_id, wrappers), num_envs)
    if backend == "subprocess":
        return SubprocessVectorEnv(env_id, num_envs, wrappers)
    raise ValueError(f"unknown rollout backend {backend!r}")
