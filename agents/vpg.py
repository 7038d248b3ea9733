"""VPG (Williams 1992; Sutton et al. 2000): a plain gradient step with a value baseline."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from agents.actor_critic import ActorCriticAgent
from trpo_ng.natural_gradient import Hyper, VanillaPolicyGradientUpdater


def VPGAgent(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    lr: Hyper = 0.01,
    **common: Any,
) -> ActorCriticAgent:
    """``common``: the network and value-function keywords of ``ActorCriticAgent``."""
    return ActorCriticAgent(
        observation_space,
        action_space,
        make_updater=lambda params: VanillaPolicyGradientUpdater(params, lr=lr),
        **common,
    )
