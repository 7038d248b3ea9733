"""A trained agent loaded from a run directory, a model file or a checkpoint, ready to act.

A run directory gives its ``model.safetensors``, or its newest loadable checkpoint when the run
has no model file yet (it was stopped, or is still training). The agent is rebuilt from the
config saved in the file itself, so it always matches the weights, and acts on raw env
observations through the saved observation normaliser, frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs as _custom_envs  # noqa: F401  (registers the custom environments)
from envs.wrappers import make_env as make_wrapped_env
from envs.wrappers import make_wrappers
from trpo_ng.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_latest_checkpoint,
    load_state,
)
from trpo_ng.config import Config, ConfigError, config_from_dict
from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.rollout import env_actions
from trpo_ng.trainer import CHECKPOINT_DIR, MODEL_FILE, Agent, load_model_state


class SavedAgent:
    """A trained agent with its frozen observation normaliser; ``act`` takes raw observations.

    ``source`` is the file it came from; ``skipped`` lists newer checkpoints that were broken
    and passed over.
    """

    def __init__(
        self,
        *,
        agent: Agent,
        config: Config,
        obs_normalizer: ObservationNormalizer | None,
        observation_space: gym.Space,
        action_space: gym.Space,
        render_modes: tuple[str, ...],
        source: Path,
        skipped: list[str],
    ) -> None:
        self.agent, self.config, self.obs_normalizer = agent, config, obs_normalizer
        self.observation_space, self.action_space = observation_space, action_space
        self.render_modes, self.source, self.skipped = render_modes, source, skipped

    @property
    def env_id(self) -> str:
        return self.config.env_id

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for one raw observation or a batch of them (leading axis), as numpy arrays
        ready for ``env.step``: the distribution's mode by default, clipped to a Box's bounds,
        shifted by a (Multi)Discrete's start, as int8 bits for MultiBinary."""
        obs = np.asarray(obs)
        shape = tuple(self.observation_space.shape)
        single = obs.shape == shape
        if not single and obs.shape[1:] != shape:
            raise ValueError(
                f"observation of shape {obs.shape} is neither one {self.env_id} observation "
                f"{shape} nor a batch of them"
            )
        action = env_actions(
            self.agent,
            self.action_space,
            obs[None] if single else obs,
            self.obs_normalizer,
            deterministic=deterministic,
        )
        return action[0] if single else action

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """A fresh single env of the saved task, with the wrappers it was trained with."""
        return make_env(self.env_id, render_mode=render_mode, config=self.config)

    def __repr__(self) -> str:
        return f"SavedAgent({self.config.agent} on {self.env_id}, from {self.source})"


def make_env(
    env_id: str, *, render_mode: str | None = None, config: Config | None = None
) -> gym.Env:
    """``gym.make`` with the config's wrappers (as in training), with a bad env id, a missing
    dependency or a wrapper that does not fit the env as a one-line ConfigError."""
    w = config.wrappers if config is not None else None
    wrappers = make_wrappers(atari=w.atari, frame_stack=w.frame_stack) if w else []
    env_kwargs = config.env_kwargs if config is not None else {}
    try:
        return make_wrapped_env(env_id, wrappers, render_mode=render_mode, **env_kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"env {env_id!r} needs an optional dependency: {e}") from None
    except gym.error.Error as e:
        raise ConfigError(f"cannot make env {env_id!r}: {e}") from None
    except ValueError as e:  # e.g. wrappers.atari on an env with its own frame skip
        raise ConfigError(f"env {env_id!r}: {e}") from None


def read_saved(path: str | Path) -> tuple[Path, dict[str, Any], Config, list[str]]:
    """(file, model state, config, skipped checkpoints) of a run directory, a checkpoint
    directory, a model file or a checkpoint file."""
    path = Path(path)
    skipped: list[str] = []
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            file, loaded = path / MODEL_FILE, load_state(path / MODEL_FILE)
        else:
            ckpt_dir = path if list_checkpoints(path) else path / CHECKPOINT_DIR
            if not list_checkpoints(ckpt_dir):
                raise CheckpointError(
                    f"{path} is not a trpo-ng run directory "
                    f"(no {MODEL_FILE} and no {CHECKPOINT_DIR}/ckpt-*.safetensors)"
                )
            file, loaded, skipped = load_latest_checkpoint(ckpt_dir)
    elif path.exists():
        file, loaded = path, load_state(path)
    else:
        raise CheckpointError(f"no such run directory, model or checkpoint file: {path}")
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{file} is a trpo-ng file but neither a model nor a checkpoint")
    if isinstance(loaded.get("metadata"), dict) and "state" in loaded:  # a model file
        state, raw_config = loaded["state"], loaded["metadata"].get("config")
    elif "model" in loaded and "progress" in loaded:  # a checkpoint
        state, raw_config = loaded["model"], loaded.get("config")
    else:
        raise CheckpointError(f"{file} is a trpo-ng file but neither a model nor a checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds no agent state")
    if not isinstance(raw_config, dict):
        raise CheckpointError(f"{file} holds no config to rebuild its agent from")
    try:
        config = config_from_dict(raw_config)
    except ConfigError as e:
        raise CheckpointError(f"{file}: its saved config does not load ({e})") from None
    return file, state, config, skipped


def load_agent(path: str | Path) -> SavedAgent:
    """The agent saved in a run directory (its model file, else its newest loadable
    checkpoint), a model file or a checkpoint file, with its observation normaliser, frozen."""
    from agents import make_agent  # agents are built from trpo_ng, so imported late

    file, state, config, skipped = read_saved(path)
    env = make_env(config.env_id, config=config)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        render_modes = tuple(env.metadata.get("render_modes") or ())
    finally:
        env.close()
    try:
        with torch.random.fork_rng(devices=[]):  # initial weights, overwritten: leave the RNG be
            agent = make_agent(config, obs_space, act_space)
    except ValueError as e:  # an env whose spaces no policy supports
        raise ConfigError(f"env {config.env_id!r}: {e}") from None
    obs_norm = (
        ObservationNormalizer(obs_space.shape, clip=config.normalize.clip_observations)
        if config.normalize.observations
        else None
    )
    load_model_state(state, agent, obs_norm, source=file)
    return SavedAgent(
        agent=agent,
        config=config,
        obs_normalizer=obs_norm,
        observation_space=obs_space,
        action_space=act_space,
        render_modes=render_modes,
        source=file,
        skipped=skipped,
    )
