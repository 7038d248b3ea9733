"""Algorithms built only from trpo_ng's parts, chosen by the config's ``agent`` key."""

from __future__ import annotations

import gymnasium as gym

from agents.actor_critic import ActorCriticAgent
from agents.npg import NPGAgent
from agents.trpo import TRPOAgent
from agents.vpg import VPGAgent
from trpo_ng.config import Config
from trpo_ng.natural_gradient import Hyper
from trpo_ng.schedules import make_schedule


def make_agent(
    cfg: Config, observation_space: gym.Space, action_space: gym.Space
) -> ActorCriticAgent:
    """The agent named by ``cfg.agent``, built from the config's sections."""
    updates = cfg.total_steps // (cfg.rollout.num_envs * cfg.rollout.steps_per_env)
    p = cfg.policy
    step_size: Hyper = p.lr if cfg.agent == "vpg" else p.max_kl  # VPG's lr or the step's KL
    if p.schedule != "constant":
        step_size = make_schedule(p.schedule, step_size, total_updates=updates, end=p.schedule_end)
    common = dict(
        hidden_sizes=cfg.network.hidden_sizes,
        value_hidden_sizes=cfg.network.value_hidden_sizes,
        activation=cfg.network.activation,
        encoder=cfg.network.encoder,
        cnn_features=cfg.network.cnn_features,
        value_epochs=cfg.value.epochs,
        value_minibatch_size=cfg.value.minibatch_size,
        value_lr=make_schedule(cfg.value.lr_schedule, cfg.value.lr, total_updates=updates),
        normalize_advantages=cfg.normalize_advantages,
        fisher_subsample=cfg.policy.fisher_subsample,
        init_log_std=p.init_log_std,
        sde=p.sde,
        sde_sample_freq=p.sde_sample_freq,
        value_background=cfg.value.background,
    )
    if cfg.agent == "vpg":
        return VPGAgent(observation_space, action_space, lr=step_size, **common)
    natural = dict(  # the Fisher step NPG and TRPO share
        max_kl=step_size,
        damping=p.damping,
        cg_iters=p.cg_iters,
        fvp=p.fvp,
        damped_step_size=p.damped_step_size,
    )
    if cfg.agent == "npg":
        return NPGAgent(observation_space, action_space, **natural, **common)
    if cfg.agent == "trpo":
        return TRPOAgent(
            observation_space,
            action_space,
            backtrack_coeff=p.backtrack_coeff,
            max_backtracks=p.max_backtracks,
            **natural,
            **common,
        )
    raise ValueError(f"unknown agent {cfg.agent!r}")


__all__ = ["ActorCriticAgent", "NPGAgent", "TRPOAgent", "VPGAgent", "make_agent"]
