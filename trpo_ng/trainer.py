"""The training loop: collect -> advantages -> update -> log -> evaluate -> save."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

import envs as _custom_envs  # noqa: F401  (registers the custom environments)
from trpo_ng import __version__
from trpo_ng.advantages import gae
from trpo_ng.checkpoint import save_model
from trpo_ng.config import Config, ConfigError, config_to_dict, dump_config
from trpo_ng.logging import Logger
from trpo_ng.normalization import ObservationNormalizer, RewardScaler
from trpo_ng.rollout import Actor, Batch, RolloutWorker, evaluate, make_vector_env

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never reuse a training seed


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    eval_history: list[tuple[int, float]]  # (env steps, deterministic eval mean return)

    @property
    def final_eval(self) -> float:
        return self.eval_history[-1][1]


class Stats(Protocol):
    def scalars(self) -> dict[str, float]:
        """Values to log, by full TensorBoard tag (train/..., time/...)."""
        ...


class Agent(Actor, Protocol):
    """All the trainer knows of an agent."""

    def update(self, batch: Batch, adv_TN: torch.Tensor, ret_TN: torch.Tensor) -> Stats: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_run_dir(cfg: Config, config_name: str) -> Path:
    """A fresh directory under ``log_dir``; never reuses one that already holds files."""
    name = cfg.run_name or f"{config_name}-s{cfg.seed}-{datetime.now():%Y%m%d-%H%M%S-%f}"
    run_dir = Path(cfg.log_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already holds files; choose another run_name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create run directory {run_dir}: {e.strerror}") from None
    return run_dir


@contextmanager
def _env_id_errors(env_id: str) -> Iterator[None]:
    """Gymnasium's errors for a bad env id become one-line config errors."""
    try:
        yield
    except gym.error.Error as e:
        raise ConfigError(f"config key 'env_id': cannot make {env_id!r}: {e}") from None


def make_normalizers(
    cfg: Config, envs: gym.vector.VectorEnv
) -> tuple[ObservationNormalizer | None, RewardScaler | None]:
    n = cfg.normalize
    obs_norm = (
        ObservationNormalizer(envs.single_observation_space.shape, clip=n.clip_observations)
        if n.observations
        else None
    )
    rew_scale = (
        RewardScaler(envs.num_envs, gamma=cfg.gamma, clip=n.clip_rewards) if n.rewards else None
    )
    return obs_norm, rew_scale


def model_state(agent: Agent, obs_norm: ObservationNormalizer | None) -> dict[str, Any]:
    """What a model file holds: the agent and the observation statistics it acts with."""
    state: dict[str, Any] = {"agent": agent.state_dict()}
    if obs_norm is not None:
        state["obs_normalizer"] = obs_norm.state_dict()
    return state


def train(cfg: Config, *, config_name: str = "run", quiet: bool = False) -> TrainResult:
    """Train ``cfg.agent`` on ``cfg.env_id`` for whole batches within ``cfg.total_steps``."""
    torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    with _env_id_errors(cfg.env_id):
        envs = make_vector_env(
            cfg.env_id, num_envs=cfg.rollout.num_envs, backend=cfg.rollout.backend
        )
        eval_env = gym.make(cfg.env_id)
    from agents import make_agent  # agents are built from trpo_ng, so imported late

    agent: Agent = make_agent(cfg, envs.single_observation_space, envs.single_action_space)
    obs_norm, rew_scale = make_normalizers(cfg, envs)
    worker = RolloutWorker(
        envs,
        steps_per_env=cfg.rollout.steps_per_env,
        seed=cfg.seed,
        obs_normalizer=obs_norm,
        reward_scaler=rew_scale,
    )
    run_dir = make_run_dir(cfg, config_name)
    (run_dir / CONFIG_FILE).write_text(dump_config(cfg))
    logger = Logger(run_dir, stream=None if quiet else sys.stdout)
    logger.text("config", "```yaml\n" + dump_config(cfg) + "```")
    history: list[tuple[int, float]] = []

    def run_eval(step: int) -> float:
        returns = evaluate(
            agent,
            eval_env,
            episodes=cfg.eval.episodes,
            seed=cfg.seed + EVAL_SEED_OFFSET,
            obs_normalizer=obs_norm,
        )
        mean = float(np.mean(returns))
        logger.scalars({"eval/return_mean": mean, "eval/return_std": float(np.std(returns))}, step)
        history.append((step, mean))
        return mean

    steps, next_eval, start = 0, cfg.eval.every, time.perf_counter()
    batch_steps = cfg.rollout.num_envs * cfg.rollout.steps_per_env
    try:
        for _ in range(max(1, cfg.total_steps // batch_steps)):  # never past the budget
            t0 = time.perf_counter()
            batch = worker.collect(agent)
            t1 = time.perf_counter()
            adv, ret = gae(
                batch.rew_TN.numpy(),
                batch.values_TN.numpy(),
                batch.next_values_TN.numpy(),
                batch.term_TN.numpy(),
                batch.trunc_TN.numpy(),
                gamma=cfg.gamma,
                lam=cfg.gae_lambda,
            )
            scalars = agent.update(batch, torch.from_numpy(adv), torch.from_numpy(ret)).scalars()
            steps += batch.num_steps
            if batch.episode_returns:
                scalars["rollout/ep_return"] = float(np.mean(batch.episode_returns))
                scalars["rollout/ep_length"] = float(np.mean(batch.episode_lengths))
            scalars["time/collect_s"] = t1 - t0
            scalars["time/steps_per_second"] = steps / (time.perf_counter() - start)
            logger.scalars(scalars, steps)
            shown = {
                "return": scalars.get("rollout/ep_return", float("nan")),
                "kl": scalars["train/kl"],
                "steps/s": scalars["time/steps_per_second"],
            }
            if next_eval and steps >= next_eval:
                shown["eval"] = run_eval(steps)
                while next_eval <= steps:
                    next_eval += cfg.eval.every
            logger.progress(steps, cfg.total_steps, shown)
        if not history or history[-1][0] != steps:
            run_eval(steps)
        save_model(
            run_dir / MODEL_FILE,
            model_state(agent, obs_norm),
            {"version": __version__, "steps": steps, "config": config_to_dict(cfg)},
        )
    finally:
        logger.close()
        worker.close()
        eval_env.close()
    return TrainResult(run_dir=run_dir, steps=steps, eval_history=history)
