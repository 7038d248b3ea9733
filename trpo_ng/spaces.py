"""What a rollout needs to know of a Gymnasium space: how a policy's actions are stored and handed
to the env, and in which dtype observations are kept.

=================  ====================  ============  ======================================
action space       policy's actions      stored as     handed to the env
=================  ====================  ============  ======================================
Discrete(n)        index, ``(B,)``       int64         + ``start``
MultiDiscrete      indices, ``(B, K)``   int64         + ``start``
MultiBinary(n)     0.0/1.0, ``(B, n)``   float32       as the space's int8
Box (d,)           ``(B, d)``            float32       clipped to ``[low, high]``
=================  ====================  ============  ======================================
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from trpo_ng.encoders import is_image_space

ACTION_SPACES = (
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
    gym.spaces.Box,
)


def check_action_space(space: gym.Space) -> None:
    """Raise a one-line ValueError for an action space no policy supports."""
    if not isinstance(space, ACTION_SPACES) or len(space.shape) > 1:
        raise ValueError(
            f"unsupported action space {space}; trpo-ng supports Discrete, 1-D MultiDiscrete, "
            "1-D MultiBinary and 1-D Box"
        )


def action_dtype(space: gym.Space) -> torch.dtype:
    """The dtype of the policy's actions: indices (int64) for Discrete and MultiDiscrete,
    float32 for MultiBinary (0.0/1.0, as torch samples bits) and Box."""
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return torch.int64
    return torch.float32


def action_numpy_dtype(space: gym.Space) -> type[np.generic]:
    """``action_dtype`` for numpy buffers."""
    return np.int64 if action_dtype(space) == torch.int64 else np.float32


def to_env_action(space: gym.Space, action: np.ndarray) -> np.ndarray:
    """A policy's action(s), one or a batch, as the env takes them: Box clipped to its bounds,
    (Multi)Discrete indices shifted by the space's ``start``, MultiBinary bits as its int8."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(action, space.low, space.high)
    if isinstance(space, gym.spaces.MultiBinary):
        return np.asarray(action).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete) and np.any(space.start):
        return action + space.start
    return action


def observation_dtype(space: gym.Space, *, normalized: bool) -> type[np.generic]:
    """uint8 for image observations that are not normalised (a quarter of float32's memory;
    the CNN scales pixels by 1/255 itself), float32 otherwise."""
    return np.uint8 if is_image_space(space) and not normalized else np.float32
