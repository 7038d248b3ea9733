"""TRPO (Schulman et al. 2015): the natural gradient, scaled to the trust region, line-searched."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from agents.actor_critic import ActorCriticAgent
from trpo_ng.natural_gradient import Hyper, TrustRegionUpdater


def TRPOAgent(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    max_kl: Hyper = 0.01,
    damping: Hyper = 0.1,
    cg_iters: int = 10,
    fvp: str = "analytic",
    damped_step_size: bool = False,
    backtrack_coeff: float = 0.8,
    max_backtracks: int = 10,
    **common: Any,
) -> ActorCriticAgent:
    """``common``: the network and value-function keywords of ``ActorCriticAgent``."""
    return ActorCriticAgent(
        observation_space,
        action_space,
        make_updater=lambda params: TrustRegionUpdater(
            params,
            max_kl=max_kl,
            damping=damping,
            cg_iters=cg_iters,
            fvp=fvp,
            damped_step_size=damped_step_size,
            backtrack_coeff=backtrack_coeff,
            max_backtracks=max_backtracks,
        ),
        **common,
    )
