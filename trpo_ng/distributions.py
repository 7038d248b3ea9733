"""Action distributions that know their own Fisher metric.

Each class is a plain ``torch.distributions.Distribution`` (so ``kl_divergence``, ``sample`` and
``log_prob`` work as usual) plus two things the natural gradient needs:

- ``params()``: the tensors that parameterise it (logits; mean and log-std), and
- ``fisher_product(tangents)``: the Fisher metric of the distribution *in those parameters*
  applied to a tangent vector, per sample. With J the Jacobian of the parameters with respect to
  the network weights, the policy's Fisher is E[J^T M J] (Martens 2020, "New insights and
  perspectives on the natural gradient method", sec. 9.2).

Objects are built fresh on every forward pass and never mutated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical as _TorchCategorical
from torch.distributions import Distribution, constraints, register_kl

_LOG_2PI = math.log(2 * math.pi)


class Categorical(_TorchCategorical):
    """Categorical over ``n`` actions, parameterised by unnormalised logits ``(..., n)``."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__(logits=logits, validate_args=False)

    def params(self) -> tuple[Tensor, ...]:
        return (self.logits,)

    def fisher_product(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """M u with M = diag(p) - p p^T, the Fisher of softmax(logits) in the logits."""
        (u,) = tangents
        p = self.probs
        pu = p * u
        return (pu - p * pu.sum(-1, keepdim=True),)


class DiagGaussian(Distribution):
    """Diagonal Gaussian with mean ``(..., d)`` and log-std ``(d,)`` or ``(..., d)``.

    Events are whole action vectors: ``log_prob`` and ``entropy`` sum over the last dimension.
    """

    arg_constraints = {"loc": constraints.real, "log_std": constraints.real}  # noqa: RUF012
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, log_std: Tensor) -> None:
        self.loc = loc
        self.log_std = log_std.expand_as(loc)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def scale(self) -> Tensor:
        return self.log_std.exp()

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def stddev(self) -> Tensor:
        return self.scale

    @property
    def variance(self) -> Tensor:
        return self.scale.square()

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * self.scale

    def log_prob(self, value: Tensor) -> Tensor:
        z = (value - self.loc) / self.scale
        return -(0.5 * z.square() + self.log_std + 0.5 * _LOG_2PI).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)

    def params(self) -> tuple[Tensor, ...]:
        return (self.loc, self.log_std)

    def fisher_product(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """M u with M = diag(1/sigma^2) on the mean and 2 on the log-std."""
        d_loc, d_log_std = tangents
        return (d_loc / self.variance, 2.0 * d_log_std)


@register_kl(DiagGaussian, DiagGaussian)
def _kl_diag_gaussian(p: DiagGaussian, q: DiagGaussian) -> Tensor:
    """KL(p || q) for diagonal Gaussians, summed over action dimensions."""
    var_ratio = (2 * (p.log_std - q.log_std)).exp()
    mean_term = ((p.loc - q.loc) / q.scale).square()
    return 0.5 * (var_ratio + mean_term - 1.0 - 2 * (p.log_std - q.log_std)).sum(-1)


ActionDistribution = Categorical | DiagGaussian
