"""The acting path in NumPy: a policy's actions for one vector-env step.

An acting step runs the policy on a few observations. There each torch op's dispatch (several
microseconds) costs more than its arithmetic, and a NumPy op costs about a third of that.
``NumpyMLP`` runs an MLP's forward pass on NumPy views of the network's own weights: the
updater changes weights in place, so the views stay current, and they are rebuilt when a
parameter's storage is replaced (``load_state_dict(assign=True)``, ``.to(dtype)``). The samples
are drawn from torch's generator exactly as the torch path draws them (``Policy.act``), so the
random streams, and what a run consumes from them, do not depend on the path; a rollout share
draws those of all its steps before the first (``Policy.sampler``), the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import Tensor, nn

Sampler = Callable[[np.ndarray, int], np.ndarray]
"""``sample(obs_BF, t)``: the actions for acting step t of a stretch (``Policy.sampler``)."""

MAX_ROWS = 64
"""Batches of up to this many observations take the NumPy path. Measured on a 64x64 Hopper
policy: NumPy 2-4x faster than torch at 2-64 rows, 2x slower at 256, where torch's kernels win
and NumPy's BLAS may spread a product over threads the trainer did not ask for."""


def _sigmoid(h: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-h) as (1 + tanh(h / 2)) / 2: no overflow for very negative h."""
    np.multiply(h, 0.5, out=h)
    np.tanh(h, out=h)
    h += 1
    h *= 0.5
    return h


def _elu(h: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(h > 0, h, alpha * np.expm1(np.minimum(h, 0)))


def _activation(module: nn.Module) -> Callable[[np.ndarray], np.ndarray] | None:
    """The activation as a NumPy function that may overwrite its argument; None if unknown."""
    if isinstance(module, nn.Tanh):
        return lambda h: np.tanh(h, out=h)
    if isinstance(module, nn.ReLU):
        return lambda h: np.maximum(h, 0, out=h)
    if isinstance(module, nn.Sigmoid):
        return _sigmoid
    if isinstance(module, nn.ELU):
        return lambda h, a=float(module.alpha): _elu(h, a)
    return None


def supports(net: nn.Sequential) -> bool:
    """True for Linear, activation, ..., Linear (with biases) with activations
    ``_activation`` knows."""
    layers = list(net)
    return (
        len(layers) % 2 == 1
        and all(type(m) is nn.Linear and m.bias is not None for m in layers[::2])
        and all(_activation(m) is not None for m in layers[1::2])
    )


class NumpyMLP:
    """An MLP's forward pass (``supports(net)``) on NumPy views of its weights."""

    def __init__(self, net: nn.Sequential) -> None:
        if not supports(net):
            raise ValueError("NumpyMLP takes Linear, activation, ..., Linear")
        layers = list(net)
        # the modules' own parameter dicts: a replaced parameter shows up there
        self._params = [m._parameters for m in layers[::2]]
        self._activations: list[Callable[[np.ndarray], np.ndarray]] = [
            f for f in map(_activation, layers[1::2]) if f is not None
        ]
        self._key: tuple[int, ...] = ()
        self._weights: list[tuple[np.ndarray, np.ndarray]] = []

    def _views(self) -> list[tuple[np.ndarray, np.ndarray]]:
        key = tuple(p[name].data_ptr() for p in self._params for name in ("weight", "bias"))
        if key != self._key:
            self._weights = [(_view(p["weight"]).T, _view(p["bias"])) for p in self._params]
            self._key = key
        return self._weights

    def __call__(self, x_BF: np.ndarray, *, rowwise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(the last hidden layer's output, the network's output) for inputs ``x_BF``.
        ``rowwise``: each row's products computed as for that row alone (BLAS may round a
        batch's product differently), so a row's output does not depend on its batch."""
        return _forward(self._views(), self._activations, x_BF, rowwise)

    def frozen(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``__call__`` on the views taken now, for a stretch in which no parameter is replaced
        (a rollout share): no check per call."""
        weights, activations = self._views(), self._activations
        return lambda x_BF: _forward(weights, activations, x_BF, False)


def _forward(
    weights: list[tuple[np.ndarray, np.ndarray]],
    activations: list[Callable[[np.ndarray], np.ndarray]],
    x_BF: np.ndarray,
    rowwise: bool,
) -> tuple[np.ndarray, np.ndarray]:
    *hidden, (w_out, b_out) = weights
    h = np.asarray(x_BF, dtype=w_out.dtype)
    if rowwise:
        h = h[:, None, :]  # (B, 1, F): matmul takes one (1, F) product per row
    for (w, b), act in zip(hidden, activations, strict=True):
        h = act(np.add(h @ w, b))
    out = np.add(h @ w_out, b_out)
    return (h[:, 0], out[:, 0]) if rowwise else (h, out)


def _view(p: Tensor | None) -> np.ndarray:
    assert p is not None
    return p.detach().numpy()


def categorical_sample(logits_BN: np.ndarray, u_B1: np.ndarray) -> np.ndarray:
    """Inverse-CDF sample of softmax(logits) with uniforms ``u`` (``Categorical.sample``)."""
    p = np.exp(logits_BN - logits_BN.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    below = np.cumsum(p, -1) < u_B1
    return np.minimum(below.sum(-1), logits_BN.shape[-1] - 1)  # a sum rounded below 1
