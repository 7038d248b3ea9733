"""Custom Gymnasium environments, registered on import."""

import gymnasium as gym

from envs.fruit import FruitClassificationEnv

__all__ = ["FruitClassificationEnv"]

if "FruitClassification-v0" not in gym.registry:  # importing twice must not re-register
    gym.register(id="FruitClassification-v0", entry_point="envs.fruit:FruitClassificationEnv")
