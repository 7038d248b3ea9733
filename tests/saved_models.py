"""Model files of untrained agents, written in a blink for loading tests."""

from pathlib import Path

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers FruitClassification-v0)
from agents import make_agent
from trpo_ng.checkpoint import save_model
from trpo_ng.config import Config, config_to_dict
from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.trainer import model_state


def untrained_model(path: Path, cfg: Config, *, seed: int = 0) -> Path:
    """An untrained agent for ``cfg`` saved as a model file; its observation normaliser (if the
    config asks for one) has seen some random observations, so it is far from the identity."""
    env = gym.make(cfg.env_id)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    norm = None
    if cfg.normalize.observations:
        norm = ObservationNormalizer(env.observation_space.shape)
        rng = np.random.default_rng(seed)
        norm.update(rng.normal(3.0, 2.0, (64, *env.observation_space.shape)))
    env.close()
    save_model(path, model_state(agent, norm), {"config": config_to_dict(cfg), "steps": 0})
    return path
