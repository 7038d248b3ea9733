"""Observation encoders: a Gymnasium observation space -> a module mapping a batch of
observations to features ``(B, out_dim)``, chosen by ``make_encoder``:

- Box of any shape (not an image): ``FlattenEncoder``, the values flattened;
- Dict of Box (nested Dicts too): ``DictEncoder``, the leaves flattened and concatenated in the
  space's key order, as ``gymnasium.spaces.flatten`` does;
- Discrete(n): ``OneHotEncoder``, a one-hot vector of size n;
- image Box (uint8, bounds 0 and 255; HxW, HxWxC or CxHxW): ``NatureCNN`` (Mnih et al. 2015).

Only ``NatureCNN`` has weights. Every encoder exposes ``out_dim``, its feature size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

Obs = Tensor | Mapping[str, "Obs"]
"""A batch of observations: a tensor ``(B, *shape)``, or for Dict spaces a mapping of them."""

ENCODERS = ("auto", "flatten", "cnn")


def is_image_space(space: gym.Space) -> bool:
    """A uint8 Box of 2 (HxW) or 3 (HxWxC / CxHxW) dimensions with bounds 0 and 255, the
    convention of Atari and pixel-observation wrappers (as Stable-Baselines3 decides it)."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) in (2, 3)
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 255))
    )


class FlattenEncoder(nn.Module):
    """obs ``(B, *shape)`` -> ``(B, prod(shape))``, values unchanged."""

    def __init__(self, space: gym.spaces.Box) -> None:
        super().__init__()
        self.out_dim = int(np.prod(space.shape))

    def forward(self, obs: Tensor) -> Tensor:
        return obs.reshape(obs.shape[0], self.out_dim)


class OneHotEncoder(nn.Module):
    """Discrete observation ``(B,)`` (an index, integer or float) -> one-hot ``(B, n)``."""

    def __init__(self, space: gym.spaces.Discrete) -> None:
        super().__init__()
        self.out_dim, self.start = int(space.n), int(space.start)

    def forward(self, obs: Tensor) -> Tensor:
        index = obs.reshape(-1).long() - self.start
        return nn.functional.one_hot(index, self.out_dim).to(torch.get_default_dtype())


class DictEncoder(nn.Module):
    """Dict of Box -> the leaves flattened and concatenated in the space's key order.

    That is the order ``gymnasium.spaces.flatten`` and ``gymnasium.wrappers.FlattenObservation``
    use (sorted keys, for a Dict built from a plain dict), so the forward pass takes either the
    mapping of tensors a vector env returns or an observation already flattened by them.
    """

    def __init__(self, space: gym.spaces.Dict) -> None:
        super().__init__()
        self.paths = _box_leaves(space, ())
        self.out_dim = int(gym.spaces.flatdim(space))

    def forward(self, obs: Obs) -> Tensor:
        if isinstance(obs, Tensor):  # already flattened (e.g. FlattenObservation)
            return obs.reshape(obs.shape[0], self.out_dim)
        parts = []
        for path in self.paths:
            leaf: Obs = obs
            for key in path:
                leaf = leaf[key]  # type: ignore[index]
            parts.append(leaf.reshape(leaf.shape[0], -1))  # type: ignore[union-attr]
        return torch.cat(parts, dim=-1)


def _box_leaves(space: gym.spaces.Dict, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, sub in space.spaces.items():
        if isinstance(sub, gym.spaces.Dict):
            paths += _box_leaves(sub, (*prefix, key))
        elif isinstance(sub, gym.spaces.Box):
            paths.append((*prefix, key))
        else:
            raise ValueError(
                f"unsupported observation space: Dict entry {'.'.join((*prefix, key))!r} is "
                f"{sub}; trpo-ng supports Dicts of Box (wrap the env in "
                "gymnasium.wrappers.FlattenObservation to one-hot Discrete entries)"
            )
    return paths


class NatureCNN(nn.Module):
    """Image -> features: the network of Mnih et al. 2015 ("Human-level control through deep
    reinforcement learning"): conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, linear
    ``features`` (512), each followed by a ReLU; pixels scaled to [0, 1] by /255 first.

    Takes ``(B, C, H, W)`` when ``channels_first`` else ``(B, H, W, C)``; an HxW space has one
    channel. By default the smallest dimension of the space is the channel one, so the
    ``(4, 84, 84)`` of ``FrameStackObservation(AtariPreprocessing(env), 4)`` and an RGB
    ``(210, 160, 3)`` both work. Orthogonal initialisation with gain sqrt(2) (OpenAI baselines).
    """

    def __init__(
        self, space: gym.spaces.Box, *, features: int = 512, channels_first: bool | None = None
    ) -> None:
        super().__init__()
        shape = space.shape
        if len(shape) == 2:
            channels_first, shape = True, (1, *shape)
        elif channels_first is None:
            channels_first = int(np.argmin(shape)) == 0
        self.channels_first = channels_first
        c, h, w = shape if channels_first else (shape[2], shape[0], shape[1])
        self.image_shape = (c, h, w)
        out_h, out_w = _conv_out(h), _conv_out(w)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"image observations of {h}x{w} are too small for the Nature CNN (at least "
                "36x36); use network.encoder=flatten for an MLP on the pixels"
            )
        gain = math.sqrt(2)
        self.conv = nn.Sequential(
            _orthogonal(nn.Conv2d(c, 32, 8, stride=4), gain),
            nn.ReLU(),
            _orthogonal(nn.Conv2d(32, 64, 4, stride=2), gain),
            nn.ReLU(),
            _orthogonal(nn.Conv2d(64, 64, 3, stride=1), gain),
            nn.ReLU(),
            nn.Flatten(),
            _orthogonal(nn.Linear(64 * out_h * out_w, features), gain),
            nn.ReLU(),
        )
        self.out_dim = features

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.reshape(obs.shape[0], *self.image_shape) if self.channels_first else obs
        if not self.channels_first:  # (B, H, W, C) -> (B, C, H, W)
            x = x.permute(0, 3, 1, 2)
        weight = self.conv[0].weight
        return self.conv(x.to(weight.dtype) / 255.0)


def _conv_out(size: int) -> int:
    """Spatial size after the three convolutions (no padding): (n - k) // s + 1 each."""
    for k, s in ((8, 4), (4, 2), (3, 1)):
        size = (size - k) // s + 1
    return size


def _orthogonal(layer: nn.Conv2d | nn.Linear, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


Encoder = FlattenEncoder | OneHotEncoder | DictEncoder | NatureCNN


def make_encoder(space: gym.Space, *, kind: str = "auto", cnn_features: int = 512) -> Encoder:
    """The encoder for ``space``: ``kind`` "auto" picks ``NatureCNN`` for image spaces and a
    flattening encoder otherwise; "flatten" never uses a CNN; "cnn" insists on one."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; choose from {ENCODERS}")
    if kind == "cnn" or (kind == "auto" and is_image_space(space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (2, 3):
            raise ValueError(
                f"the CNN encoder needs an image Box (HxW, HxWxC or CxHxW), got {space}"
            )
        return NatureCNN(space, features=cnn_features)
    if isinstance(space, gym.spaces.Box):
        return FlattenEncoder(space)
    if isinstance(space, gym.spaces.Dict):
        return DictEncoder(space)
    if isinstance(space, gym.spaces.Discrete):
        return OneHotEncoder(space)
    raise ValueError(
        f"unsupported observation space {space}; trpo-ng supports Box (flat or image), "
        "Dict of Box and Discrete"
    )
