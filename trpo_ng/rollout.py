"""Rollout workers: a Gymnasium vector env and an agent in, a Batch of (time, env) arrays out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from trpo_ng.normalization import ObservationNormalizer, RewardScaler
from trpo_ng.vector import VectorEnv, make_vector_env

__all__ = ["Actor", "Batch", "RolloutWorker", "evaluate", "make_vector_env"]


class Actor(Protocol):
    """What a rollout worker needs from an agent."""

    def act(self, obs_BD: Tensor, deterministic: bool = False) -> Tensor:
        """Actions for a batch of observations: (B,) for Discrete, (B, A) for Box."""
        ...

    def value(self, obs_BD: Tensor) -> Tensor:
        """V(s) for a batch of observations, (B,)."""
        ...


@dataclass
class Batch:
    """One iteration's experience, shaped (T time steps, N envs, ...).

    ``obs_TND`` holds what the agent saw (normalised), ``rew_TN`` what it learns from (scaled).
    ``next_values_TN[t]`` is V of the observation after step t (the episode's final observation
    when step t ended it), so GAE can bootstrap truncated episodes. The policy is unchanged
    while a batch is collected, so the agent recomputes the old log-probabilities from
    ``obs_TND`` in one pass instead of storing them step by step.
    """

    obs_TND: Tensor
    act_TN: Tensor  # (T, N) or (T, N, A)
    rew_TN: Tensor
    term_TN: Tensor
    trunc_TN: Tensor
    values_TN: Tensor
    next_values_TN: Tensor
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return self.rew_TN.numel()


class RolloutWorker:
    """Steps a vector env with an agent for ``steps_per_env`` steps per call to ``collect``.

    The buffer is allocated once; episodes continue across calls. An observation normaliser
    and a reward scaler sit between env and agent; both merge their statistics once per batch
    (from training data only), so the policy sees one normalisation throughout a batch.
    """

    def __init__(
        self,
        envs: VectorEnv,
        *,
        steps_per_env: int,
        seed: int,
        obs_normalizer: ObservationNormalizer | None = None,
        reward_scaler: RewardScaler | None = None,
    ) -> None:
        self.envs = envs
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.T, self.N = steps_per_env, envs.num_envs
        self._seed = seed
        self._obs: Tensor | None = None
        obs_shape = envs.single_observation_space.shape
        space = envs.single_action_space
        self._discrete = isinstance(space, gym.spaces.Discrete)
        if not self._discrete and not isinstance(space, gym.spaces.Box):
            raise ValueError(f"unsupported action space {space}")
        act_shape = () if self._discrete else space.shape
        self._low = None if self._discrete else space.low
        self._high = None if self._discrete else space.high
        T, N = self.T, self.N
        self._buf = Batch(
            obs_TND=torch.zeros((T, N, *obs_shape)),
            act_TN=torch.zeros((T, N, *act_shape), dtype=torch.long if self._discrete else None),
            rew_TN=torch.zeros((T, N)),
            term_TN=torch.zeros((T, N), dtype=torch.bool),
            trunc_TN=torch.zeros((T, N), dtype=torch.bool),
            values_TN=torch.zeros((T, N)),
            next_values_TN=torch.zeros((T, N)),
        )

        self._raw_TND = np.zeros((T, N, *obs_shape))  # raw observations for the statistics
        self._raw_obs: np.ndarray | None = None
        # numpy views of the buffer: per-step writes of env arrays without torch dispatch
        self._np = {k: v.numpy() for k, v in vars(self._buf).items() if isinstance(v, Tensor)}

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_normalizer is not None:
            return self.obs_normalizer.normalize(obs)
        return np.asarray(obs, dtype=np.float32)

    def _to_env(self, action: np.ndarray) -> np.ndarray:
        return action if self._discrete else np.clip(action, self._low, self._high)

    @torch.inference_mode()
    def collect(self, agent: Actor) -> Batch:
        b, a = self._buf, self._np
        if self._obs is None:
            self._raw_obs = self.envs.reset(seed=self._seed)
            self._obs = self._observe(self._raw_obs)
        finals: list[tuple[int, np.ndarray, np.ndarray]] = []  # (t, envs, final observations)
        raw_TND = self._raw_TND
        returns: list[float] = []
        lengths: list[int] = []
        obs = self._obs
        for t in range(self.T):
            a["obs_TND"][t] = obs
            seen = b.obs_TND[t] if np.isfinite(obs).all() else torch.from_numpy(np.nan_to_num(obs))
            a["act_TN"][t] = agent.act(seen).numpy()  # a NaN observation still gets an action;
            # it stays NaN in the batch, so the update that would learn from it is skipped
            step = self.envs.step(self._to_env(a["act_TN"][t]))
            a["rew_TN"][t], a["term_TN"][t], a["trunc_TN"][t] = step.rew, step.term, step.trunc
            if step.trunc.any():  # bootstrap from the true final observation (Pardo et al. 2018)
                idx = np.flatnonzero(step.trunc)
                final = np.stack([step.final_obs[i] for i in idx])
                finals.append((t, idx, self._observe(final)))
            for ret, length in step.episodes:
                returns.append(ret)
                lengths.append(length)
            obs = step.obs
            if self.obs_normalizer is not None:
                raw_TND[t] = obs
            obs = self._observe(obs)
        self._obs = obs
        if self.obs_normalizer is not None:  # statistics for the next batch
            seen_TND = np.concatenate([self._raw_obs[None], raw_TND[:-1]])
            self.obs_normalizer.update(seen_TND.reshape(-1, *seen_TND.shape[2:]))
            self._raw_obs = raw_TND[-1].copy()
        if self.reward_scaler is not None:
            a["rew_TN"][:] = self.reward_scaler(a["rew_TN"], a["term_TN"] | a["trunc_TN"])
        # values in one batched pass each: the value function is fixed during collection
        b.values_TN.copy_(agent.value(b.obs_TND.flatten(0, 1)).view(self.T, self.N))
        following = torch.cat([b.values_TN[1:], agent.value(torch.from_numpy(obs))[None]])
        final_values_TN = torch.zeros((self.T, self.N))
        if finals:
            values = agent.value(torch.from_numpy(np.concatenate([f[2] for f in finals])))
            for (t, idx, _), v in zip(
                finals, values.split([len(f[1]) for f in finals]), strict=True
            ):
                final_values_TN[t, idx] = v
        ended = b.term_TN | b.trunc_TN
        b.next_values_TN.copy_(torch.where(ended, final_values_TN, following))
        b.episode_returns, b.episode_lengths = returns, lengths
        return b

    def close(self) -> None:
        self.envs.close()


@torch.inference_mode()
def evaluate(
    agent: Actor,
    env: gym.Env,
    *,
    episodes: int,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> list[float]:
    """Returns of ``episodes`` deterministic episodes (the distribution's mode) on ``env``,
    observations normalised with the training statistics, frozen."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            if obs_normalizer is not None:
                obs = obs_normalizer.normalize(obs[None])[0]
            action = agent.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=True)[
                0
            ].numpy()
            if isinstance(env.action_space, gym.spaces.Box):
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, rew, term, trunc, _ = env.step(action)
            total += float(rew)
            done = term or trunc
        returns.append(total)
    return returns
