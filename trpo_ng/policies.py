"""Networks: observations -> action distribution (policy), observations -> value.

``Policy`` and ``ValueFunction`` pick an observation encoder by the observation space (flat,
Dict, Discrete, or a CNN for images) and ``Policy`` picks the distribution by the action
space; ``MLPPolicy`` and ``MLPValue`` are the same networks that never use a CNN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trpo_ng.acting import MAX_ROWS as NUMPY_MAX_ROWS
from trpo_ng.acting import NumpyMLP, Sampler, categorical_sample
from trpo_ng.acting import supports as numpy_supports
from trpo_ng.distributions import (
    ActionDistribution,
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
)
from trpo_ng.encoders import FlattenEncoder, Obs, make_encoder

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}


_TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


class MLP(nn.Sequential):
    """``nn.Sequential`` that runs each layer's ``forward`` directly. ``nn.Module.__call__``
    costs about 6 us per layer on this machine, more than a small layer itself on an acting
    batch of a few observations; the layers' own hooks are therefore not called."""

    def forward(self, x: Tensor) -> Tensor:
        for layer in self:
            x = layer.forward(x)
        return x

    def latent(self, x: Tensor) -> Tensor:
        """The last hidden layer's output: the input of the output layer."""
        for layer in list(self)[:-1]:
            x = layer.forward(x)
        return x


def mlp(
    in_dim: int, hidden_sizes: Sequence[int], out_dim: int, *, activation: str, out_gain: float
) -> MLP:
    """An MLP with orthogonal initialisation (Saxe et al. 2014; gains as in Engstrom et al. 2020,
    "Implementation Matters in Deep Policy Gradients": sqrt(2) hidden, small output)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in itertools.pairwise(sizes):
        layers += [_orthogonal(nn.Linear(a, b), math.sqrt(2)), ACTIVATIONS[activation]()]
    layers.append(_orthogonal(nn.Linear(sizes[-1], out_dim), out_gain))
    return MLP(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def flat_obs_dim(space: gym.Space) -> int:
    """Size of the flattened observation (Box, Dict of Box or Discrete as one-hot)."""
    return make_encoder(space, kind="flatten").out_dim


def action_head(space: gym.Space) -> tuple[str, int, tuple[int, ...]]:
    """(distribution kind, network output width, MultiDiscrete component sizes) for ``space``.

    ==================  =================  ===========================================
    action space        distribution       network output
    ==================  =================  ===========================================
    Discrete(n)         Categorical        n logits
    MultiDiscrete(nvec) MultiCategorical   sum(nvec) logits, split by nvec
    MultiBinary(n)      Bernoulli          n logits
    Box (d,)            DiagGaussian       d means; log-std a state-independent param
    ==================  =================  ===========================================
    """
    if isinstance(space, gym.spaces.Discrete):
        return "categorical", int(space.n), ()
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        nvec = tuple(int(n) for n in space.nvec)
        return "multi_categorical", sum(nvec), nvec
    if isinstance(space, gym.spaces.MultiBinary) and len(space.shape) == 1:
        return "bernoulli", int(space.shape[0]), ()
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return "gaussian", int(space.shape[0]), ()
    raise ValueError(
        f"unsupported action space {space}; trpo-ng supports Discrete, 1-D MultiDiscrete, "
        "1-D MultiBinary and 1-D Box"
    )


class Policy(nn.Module):
    """obs -> encoder -> MLP -> action distribution, each part chosen by a space.

    The encoder comes from the observation space (``trpo_ng.encoders.make_encoder``: flat,
    Dict, Discrete, or a Nature CNN for images when ``encoder`` is "auto"), the distribution
    from the action space (``action_head``). The MLP has ``hidden_sizes`` (may be empty: a
    linear head on the encoder's features, as on Atari) and a small output gain (0.01), so the
    initial policy is close to uniform / zero-mean. The Gaussian's log-std is a
    state-independent parameter (TRPO paper, sec. 8).

    Parameters, in ``parameters()`` order: ``log_std`` (Gaussian only), ``encoder.*`` (CNN
    only), ``net.*``; an ``MLPPolicy`` has the names and order it always had.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
        encoder: str = "auto",
        cnn_features: int = 512,
        sde: bool = False,
    ) -> None:
        super().__init__()
        self.kind, out_dim, self.nvec = action_head(action_space)
        if sde and self.kind != "gaussian":
            raise ValueError(f"gSDE (policy.sde) needs a Box action space, not {action_space}")
        self.sde = sde
        self.encoder = make_encoder(observation_space, kind=encoder, cnn_features=cnn_features)
        self.net = mlp(
            self.encoder.out_dim, hidden_sizes, out_dim, activation=activation, out_gain=0.01
        )
        # gSDE: one log-std per (latent feature, action) pair; else one per action
        shape = (self.net[-1].in_features, out_dim) if sde else (out_dim,)
        self.log_std = (
            nn.Parameter(torch.full(shape, float(init_log_std)))
            if self.kind == "gaussian"
            else None
        )
        # acting on flat observations with a Gaussian or Categorical head runs in NumPy
        fast = (
            type(self.encoder) is FlattenEncoder
            and self.kind in ("gaussian", "categorical")
            and numpy_supports(self.net)
        )
        self._numpy_net = NumpyMLP(self.net) if fast else None

    def forward(self, obs: Obs) -> ActionDistribution:
        if self.sde:
            latent, loc = self._latent_and_mean(obs)
            return DiagGaussian(loc, sde_log_std(latent, self.log_std))
        out = self.net(_features(self.encoder, obs, self.net))
        if self.kind == "categorical":
            return Categorical(out)
        if self.kind == "multi_categorical":
            return MultiCategorical.from_flat(out, self.nvec)
        if self.kind == "bernoulli":
            return Bernoulli(out)
        # clone: a distribution must not alias a parameter, or an "old" policy kept for the
        # KL would move with the update
        return DiagGaussian(out, self.log_std.clone())

    def act(self, obs: Obs, deterministic: bool = False, noise: Tensor | None = None) -> Tensor:
        """Actions for a batch of observations: the mode, a sample, or with gSDE ``noise``
        (``sde_noise``) its state-dependent exploration (``explore``). A few flat observations
        (``acting.MAX_ROWS``) with a Gaussian or Categorical head take the NumPy path
        (``trpo_ng.acting``), which draws the same random numbers from torch's generator as
        this torch path and takes the mode row by row, so that a row's mode does not depend on
        the rest of its batch."""
        net = self._numpy_net
        explore = noise is not None and not deterministic
        if (
            net is not None
            and isinstance(obs, Tensor)
            and obs.device.type == "cpu"
            and obs.shape[0] <= NUMPY_MAX_ROWS
            and (explore or deterministic or not self.sde)
        ):
            return torch.from_numpy(self._act_numpy(net, obs, deterministic, noise))
        with torch.inference_mode():
            if explore:
                return self.explore(obs, noise)
            dist = self(obs)
            return dist.mode if deterministic else dist.sample()

    @torch.inference_mode()
    def sampler(self, rows: int, steps: int, noise_every: int = 0) -> Sampler | None:
        """``act``'s samples for ``steps`` acting steps on ``rows`` flat observations each, for
        a stretch in which the policy does not change (a rollout share): ``sample(obs, t)``
        is ``act``'s sample for step t, from the random numbers of all ``steps`` calls drawn
        now, call by call in ``act``'s order and shapes, so the actions and what is left of
        the stream are ``act``'s. With gSDE, ``noise_every``: the steps each noise matrix is
        held (``sde_noise`` drawn at steps 0, k, 2k, ... as a rollout draws it). It keeps
        torch out of the step loop, where its dispatch slows the envs' own stepping as well
        (``benchmarks/collect_overhead.py``). None where ``act`` would not take the NumPy
        path."""
        net = self._numpy_net
        if net is None or rows > NUMPY_MAX_ROWS or (self.sde and noise_every < 1):
            return None
        forward = net.frozen()
        dtype = self.net[-1].weight.dtype  # that of the output, which act draws in
        if self.kind == "categorical":
            u = [torch.rand((rows, 1), dtype=dtype).numpy() for _ in range(steps)]
            return lambda obs, t: categorical_sample(forward(obs.reshape(rows, -1))[1], u[t])
        if self.sde:
            noise = [self.sde_noise(rows).numpy() for _ in range(0, steps, noise_every)]

            def explore(obs: np.ndarray, t: int) -> np.ndarray:
                latent, out = forward(obs.reshape(rows, -1))
                return out + (latent[:, None, :] @ noise[t // noise_every])[:, 0]

            return explore
        assert self.log_std is not None
        shape = (rows, self.net[-1].out_features)
        eps = [torch.randn(shape, dtype=dtype).numpy() for _ in range(steps)]
        std = np.exp(self.log_std.detach().numpy())
        return lambda obs, t: eps[t] * std + forward(obs.reshape(rows, -1))[1]

    def _act_numpy(
        self, net: NumpyMLP, obs: Tensor, deterministic: bool, noise: Tensor | None
    ) -> np.ndarray:
        # the mode row by row: many episodes evaluated at once play what one at a time would
        # (``rollout.evaluate``)
        x = obs.detach().numpy().reshape(obs.shape[0], -1)
        latent, out = net(x, rowwise=deterministic)
        if self.kind == "categorical":
            if deterministic:
                return out.argmax(-1)
            u = torch.rand((out.shape[0], 1), dtype=_TORCH_DTYPE[out.dtype.type]).numpy()
            return categorical_sample(out, u)
        if deterministic:
            return out
        if noise is not None:  # gSDE: mu(s) + z(s) W, per env
            return out + (latent[:, None, :] @ noise.detach().numpy())[:, 0]
        assert self.log_std is not None
        eps = torch.randn(out.shape, dtype=_TORCH_DTYPE[out.dtype.type]).numpy()
        return eps * np.exp(self.log_std.detach().numpy()) + out

    def sde_noise(self, num_envs: int) -> Tensor:
        """gSDE exploration matrices W, (num_envs, latent, actions), W_ij ~ N(0, sigma_ij^2)
        with sigma = exp(log_std)."""
        assert self.sde and self.log_std is not None
        std = self.log_std.exp()
        return torch.randn(num_envs, *std.shape, dtype=std.dtype) * std

    def explore(self, obs: Obs, noise_EKA: Tensor) -> Tensor:
        """gSDE actions mu(s) + z(s) W (generalized state-dependent exploration, Raffin et al.
        2021): z(s) the last hidden layer, W held for several steps (``sde_noise``). For a
        fresh W, a ~ N(mu(s), diag(z(s)^2 sigma^2)): the distribution ``forward`` gives."""
        latent, loc = self._latent_and_mean(obs)
        return loc + torch.bmm(latent.unsqueeze(1), noise_EKA).squeeze(1)

    def _latent_and_mean(self, obs: Obs) -> tuple[Tensor, Tensor]:
        """gSDE's features z(s), the last hidden layer, and the mean mu(s) computed from them."""
        latent = self.net.latent(_features(self.encoder, obs, self.net))
        return latent, self.net[-1].forward(latent)


def sde_log_std(latent_BK: Tensor, log_std_KA: Tensor, eps: float = 1e-6) -> Tensor:
    """log sigma(s) of gSDE's actions: 0.5 log(z(s)^2 exp(2 log_std) + eps), with the latent
    features z(s) held constant (sb3's default ``learn_features=False``)."""
    return 0.5 * torch.log(latent_BK.detach().square() @ (2 * log_std_KA).exp() + eps)


class ValueFunction(nn.Module):
    """obs -> encoder -> MLP -> V(s)_B, the encoder chosen as in ``Policy`` (its own weights)."""

    def __init__(
        self,
        observation_space: gym.Space,
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        encoder: str = "auto",
        cnn_features: int = 512,
    ) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, kind=encoder, cnn_features=cnn_features)
        self.net = mlp(self.encoder.out_dim, hidden_sizes, 1, activation=activation, out_gain=1.0)

    def forward(self, obs: Obs) -> Tensor:
        return self.net(self.features(obs)).squeeze(-1)

    def features(self, obs: Obs) -> Tensor:
        """The encoder's output, the MLP's input."""
        return _features(self.encoder, obs, self.net)


def _features(encoder: nn.Module, obs: Obs, net: MLP) -> Tensor:
    """The encoder's features in the MLP's dtype (a no-op when they already agree)."""
    return encoder(obs).to(net[0].weight.dtype)


class MLPPolicy(Policy):
    """``Policy`` without a CNN: observations are flattened (Box, Dict of Box, Discrete)."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes=hidden_sizes,
            activation=activation,
            init_log_std=init_log_std,
            encoder="flatten",
        )


class MLPValue(ValueFunction):
    """``ValueFunction`` without a CNN: observations are flattened."""

    def __init__(
        self,
        observation_space: gym.Space,
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__(
            observation_space, hidden_sizes=hidden_sizes, activation=activation, encoder="flatten"
        )
