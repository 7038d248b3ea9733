"""NPG (Kakade 2001; Rajeswaran et al. 2017): the natural gradient at a fixed KL step."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from agents.actor_critic import ActorCriticAgent
from trpo_ng.natural_gradient import Hyper, NaturalPolicyGradientUpdater


def NPGAgent(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    max_kl: Hyper = 0.01,
    damping: Hyper = 0.1,
    cg_iters: int = 10,
    fvp: str = "analytic",
    damped_step_size: bool = False,
    **common: Any,
) -> ActorCriticAgent:
    """``common``: the network and value-function keywords of ``ActorCriticAgent``."""
    return ActorCriticAgent(
        observation_space,
        action_space,
        make_updater=lambda params: NaturalPolicyGradientUpdater(
            params,
            max_kl=max_kl,
            damping=damping,
            cg_iters=cg_iters,
            fvp=fvp,
            damped_step_size=damped_step_size,
        ),
        **common,
    )
