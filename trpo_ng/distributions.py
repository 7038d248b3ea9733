"""Action distributions that know their own Fisher metric.

Each class is a plain ``torch.distributions.Distribution`` (so ``kl_divergence``, ``sample`` and
``log_prob`` work as usual) plus two things the natural gradient needs:

- ``params()``: the tensors that parameterise it (logits; mean and log-std), batch dimensions
  first, such that ``type(d)(*d.params())`` rebuilds ``d`` (``natural_gradient.detached``), and
- ``fisher_product(tangents)``: the Fisher metric of the distribution *in those parameters*
  applied to a tangent vector, per sample. With J the Jacobian of the parameters with respect to
  the network weights, the policy's Fisher is E[J^T M J] (Martens 2020, "New insights and
  perspectives on the natural gradient method", sec. 9.2).

Objects are built fresh on every forward pass and never mutated.

One class per Gymnasium action space: ``Categorical`` (Discrete), ``MultiCategorical``
(MultiDiscrete), ``Bernoulli`` (MultiBinary), ``DiagGaussian`` (1-D Box). Events are whole
actions: for the last three ``log_prob``, ``entropy`` and the KL sum over action components.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical as _TorchCategorical
from torch.distributions import Distribution, constraints, kl_divergence, register_kl

_LOG_2PI = math.log(2 * math.pi)


class Categorical(_TorchCategorical):
    """Categorical over ``n`` actions, parameterised by unnormalised logits ``(..., n)``."""

    def __init__(self, logits: Tensor) -> None:
        # torch's __init__ normalises by logits - logsumexp(logits); log_softmax gives the
        # same values at an eighth of its cost on an acting step's few rows
        self.logits = self._param = logits.log_softmax(-1)
        self._num_events = logits.size(-1)
        Distribution.__init__(self, logits.shape[:-1], validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Inverse-CDF sampling: the first action whose cumulative probability exceeds one
        uniform draw. Same distribution as torch's ``multinomial``, at a fraction of its cost
        on the few rows of an acting step."""
        u = torch.rand((*sample_shape, *self.batch_shape, 1), dtype=self.probs.dtype)
        below = self.probs.cumsum(-1) < u
        return below.sum(-1).clamp_(max=self._num_events - 1)  # clamp: a sum rounded below 1

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
        return eps.mul_(self.scale).add_(self.loc)  # in place: the acting path's hot spot

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


class MultiCategorical(Distribution):
    """Independent categoricals, one per MultiDiscrete component: component k has logits
    ``(..., n_k)`` and the action is the vector ``(..., K)`` of their indices.

    Built from the per-component logits, ``MultiCategorical(logits_1, ..., logits_K)``, which
    are also its ``params()``: the component sizes ``nvec`` are the logits' widths, so
    ``type(d)(*d.params())`` rebuilds it with no side information. From one network head of
    width ``sum(nvec)`` use ``MultiCategorical.from_flat(logits, nvec)``.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, *logits: Tensor) -> None:
        if not logits:
            raise ValueError("MultiCategorical needs the logits of at least one component")
        batch_shape = logits[0].shape[:-1]
        if any(t.shape[:-1] != batch_shape for t in logits):
            shapes = [tuple(t.shape) for t in logits]
            raise ValueError(f"component logits differ in their batch shapes: {shapes}")
        self.components = tuple(Categorical(t) for t in logits)
        super().__init__(batch_shape, torch.Size([len(logits)]), validate_args=False)

    @classmethod
    def from_flat(cls, logits: Tensor, nvec: tuple[int, ...]) -> MultiCategorical:
        """Split concatenated logits ``(..., sum(nvec))`` into components of sizes ``nvec``."""
        return cls(*logits.split(list(nvec), dim=-1))

    @property
    def nvec(self) -> tuple[int, ...]:
        return tuple(c.logits.shape[-1] for c in self.components)

    @property
    def mode(self) -> Tensor:
        """The most probable action: each component's argmax (the first one on ties)."""
        return torch.stack([c.logits.argmax(-1) for c in self.components], dim=-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        return torch.stack([c.sample(sample_shape) for c in self.components], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """log pi(a) = sum_k log p_k(a_k)."""
        logps = [c.log_prob(value[..., k]) for k, c in enumerate(self.components)]
        return torch.stack(logps, dim=-1).sum(-1)

    def entropy(self) -> Tensor:
        """H = sum_k H_k (independent components)."""
        return torch.stack([c.entropy() for c in self.components], dim=-1).sum(-1)

    def params(self) -> tuple[Tensor, ...]:
        return tuple(c.logits for c in self.components)

    def fisher_product(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """M u with M block-diagonal, block k = diag(p_k) - p_k p_k^T (independent softmaxes)."""
        return tuple(
            c.fisher_product((u,))[0] for c, u in zip(self.components, tangents, strict=True)
        )


@register_kl(MultiCategorical, MultiCategorical)
def _kl_multi_categorical(p: MultiCategorical, q: MultiCategorical) -> Tensor:
    """KL(p || q) = sum_k KL(p_k || q_k), the chain rule for independent components."""
    if p.nvec != q.nvec:
        raise ValueError(f"KL between MultiCategoricals of sizes {p.nvec} and {q.nvec}")
    kls = [kl_divergence(a, b) for a, b in zip(p.components, q.components, strict=True)]
    return torch.stack(kls, dim=-1).sum(-1)


class Bernoulli(Distribution):
    """Independent bits, one per MultiBinary component, with logits ``(..., n)``.

    Unlike ``torch.distributions.Bernoulli`` an event is the whole bit vector: ``log_prob``
    and ``entropy`` sum over the last dimension (like ``DiagGaussian``). Samples and the mode
    are 0.0/1.0 in the logits' dtype, as torch's; ``log_prob`` takes any numeric dtype. Written
    with log-sigmoids, log p = log sigma(z) and log(1 - p) = log sigma(-z), so it is finite
    for any logit and twice differentiable (double-backprop Fisher products).
    """

    arg_constraints = {"logits": constraints.real}  # noqa: RUF012
    support = constraints.independent(constraints.boolean, 1)

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=False)

    @property
    def probs(self) -> Tensor:
        return torch.sigmoid(self.logits)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def mode(self) -> Tensor:
        """1 where p > 1/2 (logit > 0), else 0: ties go to 0, deterministically."""
        return (self.logits > 0).to(self.logits.dtype)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        with torch.no_grad():
            return torch.bernoulli(self.probs.expand(self._extended_shape(sample_shape)))

    def log_prob(self, value: Tensor) -> Tensor:
        """sum_i x_i log sigma(z_i) + (1 - x_i) log sigma(-z_i)."""
        x = value.to(self.logits.dtype)
        z = self.logits
        return (x * F.logsigmoid(z) + (1 - x) * F.logsigmoid(-z)).sum(-1)

    def entropy(self) -> Tensor:
        z, p = self.logits, self.probs
        return -(p * F.logsigmoid(z) + (1 - p) * F.logsigmoid(-z)).sum(-1)

    def params(self) -> tuple[Tensor, ...]:
        return (self.logits,)

    def fisher_product(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """M u with M = diag(p (1 - p)), the Fisher of sigmoid(logits) in the logits."""
        (u,) = tangents
        p = self.probs
        return (p * (1 - p) * u,)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli(p: Bernoulli, q: Bernoulli) -> Tensor:
    """KL(p || q) = sum_i p_i log(p_i / q_i) + (1 - p_i) log((1 - p_i) / (1 - q_i)),
    in log-sigmoids of the logits a (of p) and b (of q)."""
    a, b, pa = p.logits, q.logits, p.probs
    return (
        pa * (F.logsigmoid(a) - F.logsigmoid(b)) + (1 - pa) * (F.logsigmoid(-a) - F.logsigmoid(-b))
    ).sum(-1)


ActionDistribution = Categorical | MultiCategorical | Bernoulli | DiagGaussian
