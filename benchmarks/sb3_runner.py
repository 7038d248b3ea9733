"""Train sb3-contrib TRPO on one env and seed with periodic deterministic evaluation.

Run by ``learn.py --vs-sb3`` with the python of the venv that holds sb3-contrib
(``benchmarks/.venv-sb3``); it does not import trpo-ng. Prints one JSON line: the eval history
as (env steps, mean return), the final evaluation and the wall time of the training run.

Hyper-parameters follow rl-baselines3-zoo's ``hyperparams/trpo.yml`` (see ``hyperparams``);
evaluation mirrors trpo-ng's trainer: after the first update at or past each multiple of
``--eval-every`` steps and after the last one, ``--eval-episodes`` deterministic episodes on
a separate env whose VecNormalize statistics are copied from the training env and frozen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sb3_contrib
import torch
from sb3_contrib import TRPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization
from versions import installed

EVAL_SEED_OFFSET = 1_000_000  # as trpo-ng: evaluation never reuses a training seed

# rl-baselines3-zoo trpo.yml, MuJoCo section (Hopper-v4, Walker2d-v4, Ant-v4, ...).
ZOO_MUJOCO: dict[str, Any] = {
    "batch_size": 128,
    "n_steps": 1024,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "sub_sampling_factor": 1,
    "cg_max_steps": 25,
    "cg_damping": 0.1,
    "n_critic_updates": 20,
    "learning_rate": 1e-3,
    "target_kl": 0.01,
}
MUJOCO_TASKS = (
    "Ant",
    "HalfCheetah",
    "Hopper",
    "Humanoid",
    "HumanoidStandup",
    "InvertedDoublePendulum",
    "InvertedPendulum",
    "Pusher",
    "Reacher",
    "Swimmer",
    "Walker2d",
)


@dataclass(frozen=True)
class HyperParams:
    name: str  # shown in the results tables
    n_envs: int
    normalize: bool  # VecNormalize on observations and rewards
    kwargs: dict[str, Any] = field(default_factory=dict)


def hyperparams(env_id: str) -> HyperParams:
    """Settings for ``env_id``: the zoo's tuned ones where it has them, else its MuJoCo set."""
    task = env_id.split("-v")[0]
    if task == "CartPole":  # BENCHMARKS.md reference figure: class defaults, 1 env
        return HyperParams("class defaults", n_envs=1, normalize=False)
    if task == "Pendulum":  # zoo, tuned: no normalisation, gSDE
        kwargs = {"n_steps": 1024, "gamma": 0.9, "n_critic_updates": 15}
        return HyperParams("zoo", 2, False, {**kwargs, "use_sde": True, "sde_sample_freq": 4})
    kwargs = dict(ZOO_MUJOCO)
    if task == "HalfCheetah":
        kwargs["target_kl"] = 0.04
    if task == "Swimmer":
        kwargs["gamma"] = 0.9999
    name = "zoo" if task in MUJOCO_TASKS else "zoo MuJoCo set (untuned here)"
    return HyperParams(name, n_envs=2, normalize=True, kwargs=kwargs)


class PeriodicEval(BaseCallback):
    """Evaluates after each update that crosses a multiple of ``every`` steps, and at the end."""

    def __init__(self, eval_env: VecEnv, *, every: int, episodes: int, seed: int) -> None:
        super().__init__()
        self.eval_env, self.every, self.episodes = eval_env, every, episodes
        self.seed = seed
        self.next_eval = every
        self.history: list[tuple[int, float]] = []
        self.seconds = 0.0  # spent evaluating

    def _evaluate(self) -> None:
        """Deterministic episodes, episode i reset with ``seed + i`` as trpo-ng's evaluation
        does, so both systems are scored from the same start states every time."""
        start = time.perf_counter()
        sync_envs_normalization(self.training_env, self.eval_env)  # copies obs_rms, if any
        returns = []
        for i in range(self.episodes):
            self.eval_env.seed(self.seed + i)  # applied by the reset
            obs, total, done = self.eval_env.reset(), 0.0, False
            while not done:
                action, _ = self.model.predict(obs, deterministic=True)
                obs, rew, dones, _ = self.eval_env.step(action)
                total += float(rew[0])  # raw: the eval VecNormalize leaves rewards alone
                done = bool(dones[0])
            returns.append(total)
        self.history.append((self.num_timesteps, float(np.mean(returns))))
        self.seconds += time.perf_counter() - start

    def _on_rollout_start(self) -> None:  # the policy has just been updated
        if self.next_eval and self.num_timesteps >= self.next_eval:
            self._evaluate()
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.every

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1][0] != self.num_timesteps:
            self._evaluate()


def make_model(
    env_id: str, seed: int, env_kwargs: dict[str, Any] | None = None
) -> tuple[TRPO, HyperParams]:
    """sb3-contrib TRPO on ``hyperparams(env_id)``'s training envs, ``gym.make(env_id,
    **env_kwargs)`` (in VecNormalize when they normalise); ``model.get_env()`` is that vector
    env."""
    hp = hyperparams(env_id)
    env = make_vec_env(env_id, n_envs=hp.n_envs, seed=seed, env_kwargs=env_kwargs)
    if hp.normalize:
        env = VecNormalize(env, gamma=hp.kwargs.get("gamma", 0.99))
    return TRPO("MlpPolicy", env, seed=seed, verbose=0, **hp.kwargs), hp


def run(
    env_id: str,
    *,
    steps: int,
    seed: int,
    eval_every: int,
    episodes: int,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train for whole rollouts within ``steps`` (as trpo-ng does) and return the results."""
    start = time.perf_counter()
    model, hp = make_model(env_id, seed, env_kwargs)
    env = model.get_env()
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET, env_kwargs=env_kwargs)
    if hp.normalize:
        gamma = hp.kwargs.get("gamma", 0.99)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=gamma)
    rollout = model.n_steps * hp.n_envs
    callback = PeriodicEval(
        eval_env, every=eval_every, episodes=episodes, seed=seed + EVAL_SEED_OFFSET
    )
    model.learn(max(1, steps // rollout) * rollout, callback=callback)
    wall = time.perf_counter() - start
    env.close()
    eval_env.close()
    return {
        "system": "sb3-contrib",
        "task": env_id,
        "env_kwargs": env_kwargs or {},  # gym.make's: part of the task
        "config": hp.name,
        "seed": seed,
        "steps": int(model.num_timesteps),
        "eval_history": callback.history,
        "final_eval": callback.history[-1][1],
        "wall_s": round(wall, 2),
        "eval_s": round(callback.seconds, 2),  # of wall_s, the periodic evaluations
        "version": sb3_contrib.__version__,
        "mujoco": installed("mujoco"),  # the physics: returns repeat only on the same version
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=10_000, help="0: only at the end")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument(
        "--env-kwargs", type=json.loads, default={}, help="gym.make's keyword arguments (JSON)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run(
        args.env_id,
        steps=args.steps,
        seed=args.seed,
        eval_every=args.eval_every,
        episodes=args.eval_episodes,
        env_kwargs=args.env_kwargs,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
