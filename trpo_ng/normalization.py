"""Running statistics for observation normalisation and reward scaling.

Both live on the environment side of the rollout, like a wrapper: the agent sees normalised
observations and scaled rewards, episode statistics stay in the env's own units. Their state is
saved with the model, and evaluation uses them frozen.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class RunningMeanStd:
    """Mean and variance of a stream of arrays of shape ``(batch, *shape)``, merged batch by
    batch with the parallel algorithm of Chan, Golub and LeVeque (1979)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0.0

    def update(self, x_B: np.ndarray) -> None:
        """Merge a batch; rows holding NaN or inf are left out, so one faulty observation
        cannot poison the statistics for the rest of the run."""
        finite = np.isfinite(x_B).reshape(x_B.shape[0], -1).all(axis=1)
        if not finite.all():
            x_B = x_B[finite]
        if x_B.shape[0] == 0:
            return
        batch_mean, batch_var, n = x_B.mean(axis=0), x_B.var(axis=0), x_B.shape[0]
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta**2 * (self.count * n / total)
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "mean": torch.from_numpy(np.array(self.mean, dtype=np.float64)),
            "var": torch.from_numpy(np.array(self.var, dtype=np.float64)),
            "count": torch.tensor(self.count, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if tuple(state["mean"].shape) != np.shape(self.mean):
            raise ValueError(
                f"normaliser shape {tuple(state['mean'].shape)} does not match "
                f"{np.shape(self.mean)}"
            )
        self.mean = state["mean"].numpy().astype(np.float64)
        self.var = state["var"].numpy().astype(np.float64)
        self.count = float(state["count"])


class ObservationNormalizer:
    """obs -> clip((obs - mean) / sqrt(var + eps), -clip, clip), statistics from training data.

    As in OpenAI baselines' VecNormalize (eps 1e-8, clip 10). ``update`` merges a batch of raw
    observations; ``normalize`` never changes the statistics. With ``freeze_after`` > 0 the
    statistics stop at that many observations: a batch that would take them past it is not
    merged, as VecNormalize with ``training = False`` from then on (0: never frozen).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        clip: float = 10.0,
        eps: float = 1e-8,
        freeze_after: int = 0,
    ) -> None:
        self.rms = RunningMeanStd(shape)
        self.clip, self.eps, self.freeze_after = clip, eps, freeze_after
        self._refresh()

    def _refresh(self) -> None:
        self._mean = self.rms.mean.astype(np.float32)
        self._inv_std = (1.0 / np.sqrt(self.rms.var + self.eps)).astype(np.float32)

    def update(self, obs_BD: np.ndarray) -> None:
        if self.freeze_after and self.rms.count + obs_BD.shape[0] > self.freeze_after:
            return
        self.rms.update(obs_BD)
        self._refresh()

    def normalize(self, obs_BD: np.ndarray) -> np.ndarray:
        z = (np.asarray(obs_BD, dtype=np.float32) - self._mean) * self._inv_std
        return np.clip(z, -self.clip, self.clip, out=z)

    def state_dict(self) -> dict[str, Tensor]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.rms.load_state_dict(state)
        self._refresh()


class RewardScaler:
    """r -> clip(r / sqrt(Var[G] + eps)), G the running discounted return of each env.

    Dividing by the return's scale, not the reward's, keeps value targets O(1) (Engstrom et al.
    2020, "Implementation Matters in Deep Policy Gradients", sec. 3; baselines' VecNormalize).
    The statistics are merged a batch at a time, then the batch is scaled.
    """

    def __init__(
        self, num_envs: int, *, gamma: float, clip: float = 10.0, eps: float = 1e-8
    ) -> None:
        self.rms = RunningMeanStd(())
        self.returns_N = np.zeros(num_envs, dtype=np.float64)
        self.gamma, self.clip, self.eps = gamma, clip, eps

    def __call__(self, rew_TN: np.ndarray, done_TN: np.ndarray) -> np.ndarray:
        """Scale a batch of rewards; ``done_TN`` marks steps that ended an episode."""
        returns_TN = np.empty(rew_TN.shape, dtype=np.float64)
        for t in range(rew_TN.shape[0]):
            self.returns_N = self.returns_N * self.gamma + rew_TN[t]
            returns_TN[t] = self.returns_N
            self.returns_N[done_TN[t] | ~np.isfinite(self.returns_N)] = 0.0
        self.rms.update(returns_TN.reshape(-1))
        scaled = rew_TN / np.sqrt(self.rms.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Tensor]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.rms.load_state_dict(state)
