"""The actor-critic agent shared by VPG, NPG and TRPO; only the policy updater differs.

Policy: one step per batch on the importance-weighted surrogate E[ratio * A] through a
``PolicyUpdater`` (Schulman et al. 2015, eq. 14). Value function: minibatch Adam regression
onto the GAE lambda-returns.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor
from torch.distributions import kl_divergence

from trpo_ng.acting import Sampler
from trpo_ng.adam import Adam
from trpo_ng.mlp_fisher import mlp_fisher_product
from trpo_ng.natural_gradient import Hyper, PolicyUpdater, UpdateStats, module_distribution_fn
from trpo_ng.policies import Policy, ValueFunction
from trpo_ng.rollout import Batch
from trpo_ng.value_fit import BackgroundFit, fit_value


@dataclass(frozen=True)
class AgentStats:
    policy: UpdateStats
    value_loss: float
    explained_variance: float
    entropy: float
    policy_update_s: float
    value_update_s: float
    log_std: Tensor | None = None  # a Gaussian policy's log-std after the update

    @property
    def skipped(self) -> bool:
        return self.policy.skipped

    @classmethod
    def skipped_update(cls) -> AgentStats:
        nan = float("nan")
        return cls(UpdateStats.skipped_step(), nan, nan, nan, 0.0, 0.0)

    def histograms(self) -> dict[str, Tensor]:
        return {} if self.log_std is None else {"policy/log_std": self.log_std}

    def scalars(self) -> dict[str, float]:
        """Values to log, by TensorBoard tag."""
        p = self.policy
        bound = {} if math.isnan(p.max_kl) else {"train/max_kl": p.max_kl}
        return {
            **bound,
            "train/kl": p.kl,
            "train/surrogate_improvement": p.improvement,
            "train/expected_improvement": p.expected_improvement,
            "train/line_search_backtracks": float(p.backtracks),
            "train/line_search_accepted": float(p.accepted),
            "train/cg_residual": p.cg_residual,
            "train/grad_norm": p.grad_norm,
            "train/value_loss": self.value_loss,
            "train/explained_variance": self.explained_variance,
            "train/entropy": self.entropy,
            "time/policy_update_s": self.policy_update_s,
            "time/value_update_s": self.value_update_s,
        }


UpdaterFactory = Callable[[Iterable[Tensor]], PolicyUpdater]


class ActorCriticAgent:
    """A policy network stepped by ``make_updater(policy.parameters())`` and a value network."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        make_updater: UpdaterFactory,
        hidden_sizes: Sequence[int] = (64, 64),
        value_hidden_sizes: Sequence[int] | None = None,
        activation: str = "tanh",
        encoder: str = "auto",
        cnn_features: int = 512,
        value_epochs: int = 10,
        value_minibatch_size: int = 128,
        value_lr: Hyper = 1e-3,
        normalize_advantages: bool = True,
        fisher_subsample: int = 1,
        init_log_std: float = 0.0,
        sde: bool = False,
        sde_sample_freq: int = 4,
        value_background: bool = False,
    ) -> None:
        """``value_hidden_sizes``: the value network's MLP, ``hidden_sizes`` where None (as
        SB3's ``net_arch=dict(pi=..., vf=...)``).
        ``fisher_subsample``: the Fisher-vector products use every k-th sample of the batch
        (the TRPO paper, sec. 6, evaluates the Fisher on a subsample to cut its cost).
        ``sde``: gSDE exploration (``Policy.explore``), a fresh noise matrix per env every
        ``sde_sample_freq`` steps (``noise_every``; 0 without gSDE).
        ``value_background``: fit the value function in a second process beside the policy
        step and the next batch's collection (``trpo_ng.value_fit.BackgroundFit``; the same
        weights, a core more; undone if the policy step is skipped);
        ``close`` ends that process."""
        if sde and sde_sample_freq < 1:
            raise ValueError(f"sde_sample_freq must be >= 1, got {sde_sample_freq}")
        if fisher_subsample < 1:
            raise ValueError(f"fisher_subsample must be >= 1, got {fisher_subsample}")
        network = dict(activation=activation, encoder=encoder, cnn_features=cnn_features)
        self.policy = Policy(
            observation_space,
            action_space,
            hidden_sizes=hidden_sizes,
            init_log_std=init_log_std,
            sde=sde,
            **network,
        )
        self.noise_every = sde_sample_freq if sde else 0
        value_sizes = hidden_sizes if value_hidden_sizes is None else value_hidden_sizes
        self.value_fn = ValueFunction(observation_space, hidden_sizes=value_sizes, **network)
        self.updater = make_updater(self.policy.parameters())
        self.value_lr = value_lr  # a constant or a schedule of the update count
        self.value_optimizer = Adam(self.value_fn.parameters())
        self.value_epochs = value_epochs
        self.value_minibatch_size = value_minibatch_size
        self.normalize_advantages = normalize_advantages
        self.fisher_subsample = fisher_subsample
        self._background = (
            BackgroundFit(self.value_fn, self.value_optimizer) if value_background else None
        )
        self._last_loss = float("nan")  # the last background fit's

    # ------------------------------------------------------------------ acting

    def act(
        self, obs_BD: Tensor, deterministic: bool = False, noise: Tensor | None = None
    ) -> Tensor:
        """The policy's mode, a sample, or with gSDE ``noise`` (``exploration_noise``) its
        state-dependent exploration (``Policy.act``)."""
        return self.policy.act(obs_BD, deterministic, noise)

    @torch.inference_mode()
    def sampler(self, num_envs: int, steps: int) -> Sampler | None:
        """``act``'s samples for the ``steps`` steps of a rollout share, gSDE's noise
        included, drawn now (``Policy.sampler``); None where the rollout calls ``act`` step by
        step, as it must where a subclass or the instance replaces ``act``."""
        if type(self).act is not ActorCriticAgent.act or "act" in vars(self):
            return None
        return self.policy.sampler(num_envs, steps, self.noise_every)

    @torch.inference_mode()
    def exploration_noise(self, num_envs: int) -> Tensor:
        """Fresh gSDE noise for ``num_envs`` envs; a rollout draws it every ``noise_every``
        steps."""
        return self.policy.sde_noise(num_envs)

    @torch.inference_mode()
    def value(self, obs_BD: Tensor) -> Tensor:
        self._settle()
        return self.value_fn(obs_BD)

    # ------------------------------------------------------------------ learning

    def update(self, batch: Batch, adv_TN: Tensor, ret_TN: Tensor) -> AgentStats:
        """One policy step and one value fit; skipped whole (nothing changes) when the batch
        holds a NaN or inf, so a numerical fault never reaches the weights."""
        obs_BD = batch.obs_TND.flatten(0, 1)
        act_B = batch.act_TN.flatten(0, 1)
        adv_B = adv_TN.flatten()
        if not all(bool(torch.isfinite(t).all()) for t in (obs_BD, act_B, adv_TN, ret_TN)):
            return AgentStats.skipped_update()
        if self.normalize_advantages:
            adv_B = (adv_B - adv_B.mean()) / (adv_B.std() + 1e-8)
        ret_B = ret_TN.flatten()
        early = self._background is not None  # the fit runs beside the policy step
        if early:
            self._settle()  # done already: this batch's values waited for it
            undo = self._value_state()
            value_loss, value_s = self._fit_value(obs_BD, ret_B, self.updater.num_updates + 1)
        with torch.no_grad():
            old = self.policy(obs_BD)
            logp_old_B = old.log_prob(act_B)

        def closure() -> tuple[Tensor, Tensor]:
            new = self.policy(obs_BD)
            ratio_B = (new.log_prob(act_B) - logp_old_B).exp()
            return -(ratio_B * adv_B).mean(), kl_divergence(old, new).mean()

        t0 = time.perf_counter()
        fisher_obs = obs_BD[:: self.fisher_subsample]
        by_hand = (  # the analytic product written out for MLP policies (trpo_ng.mlp_fisher)
            mlp_fisher_product(self.policy, fisher_obs, self.updater.params)
            if self.updater.fvp == "analytic"
            else None
        )
        policy_stats = self.updater.step(
            closure, dist_fn=module_distribution_fn(self.policy, fisher_obs), fisher_fn=by_hand
        )
        t1 = time.perf_counter()
        if policy_stats.skipped:  # non-finite gradient or step: leave the value function too
            if early:
                self._settle()
                self._load_value_state(undo)
                self._last_loss = value_loss  # the fit before, not yet reported
            return AgentStats.skipped_update()
        if not early:
            value_loss, value_s = self._fit_value(obs_BD, ret_B)
        values_B = batch.values_TN.flatten()
        return AgentStats(
            policy_update_s=t1 - t0,
            value_update_s=value_s,
            policy=policy_stats,
            value_loss=value_loss,
            explained_variance=explained_variance(values_B, ret_B),
            entropy=float(old.entropy().mean()),
            log_std=None if self.policy.log_std is None else self.policy.log_std.detach().clone(),
        )

    def _fit_value(
        self, obs_BD: Tensor, ret_B: Tensor, updates: int | None = None
    ) -> tuple[float, float]:
        """Fit the value function (``trpo_ng.value_fit``) with the learning rate after
        ``updates`` policy updates (None: those made so far): (loss, seconds). In the
        background: start the fit and return the loss of the one before (NaN at first) and the
        seconds it took to start; a wait for it falls in the next collection (``value``)."""
        if updates is None:
            updates = self.updater.num_updates
        lr = self.value_lr(updates) if callable(self.value_lr) else self.value_lr
        n = ret_B.numel()
        perms = [torch.randperm(n) for _ in range(self.value_epochs)]  # the global stream
        start = time.perf_counter()
        if self._background is None:
            loss = fit_value(
                self.value_fn,
                self.value_optimizer,
                obs_BD,
                ret_B,
                perms,
                minibatch_size=self.value_minibatch_size,
                lr=lr,
            )
            return loss, time.perf_counter() - start
        self._settle()  # done already: this batch's values waited for it
        self._background.submit(
            obs_BD, ret_B, perms, minibatch_size=self.value_minibatch_size, lr=lr
        )
        loss, self._last_loss = self._last_loss, float("nan")
        return loss, time.perf_counter() - start

    def _value_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The value function's weights and optimiser state, copied (to undo a fit)."""
        weights = {k: v.clone() for k, v in self.value_fn.state_dict().items()}
        return weights, self.value_optimizer.state_dict()

    def _load_value_state(self, state: tuple[dict[str, Tensor], dict[str, Any]]) -> None:
        """Copy ``_value_state``'s copies back into the tensors the fit's process shares."""
        self.value_fn.load_state_dict(state[0])
        self.value_optimizer.load_state_dict(state[1])

    def _settle(self) -> None:
        """Wait for a background fit, if one is running, and keep its loss."""
        if self._background is not None and self._background.pending:
            self._last_loss = self._background.wait()

    def close(self) -> None:
        """End the background fit's process, after the fit it runs; a failure of that fit is
        not raised here (``value`` and ``state_dict`` raise it). A later update starts a new
        process."""
        if self._background is not None:
            with contextlib.suppress(RuntimeError):
                self._settle()
            self._background.close()

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        self._settle()
        return {
            "policy": self.policy.state_dict(),
            "value": self.value_fn.state_dict(),
            "updater": self.updater.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
        }

    def acting_state_dict(self) -> dict[str, Any]:
        """What ``act`` and ``sampler`` use: the policy's state (a rollout worker's copy of
        the agent loads it each batch, ``load_acting_state_dict``)."""
        return {"policy": self.policy.state_dict()}

    def load_acting_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._settle()
        self.policy.load_state_dict(state["policy"])
        self.value_fn.load_state_dict(state["value"])
        self.updater.load_state_dict(state["updater"])
        if "value_optimizer" in state:  # absent in a file written only to act with
            self.value_optimizer.load_state_dict(state["value_optimizer"])


def explained_variance(pred_B: Tensor, target_B: Tensor) -> float:
    """1 - Var(target - pred) / Var(target); 1 is perfect, <= 0 is no better than a constant."""
    var = target_B.var()
    return float("nan") if var == 0 else float(1 - (target_B - pred_B).var() / var)
