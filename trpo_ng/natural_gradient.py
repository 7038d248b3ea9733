"""The natural-gradient core: pure functions, then one updater object.

References:
  [TRPO] Schulman et al. 2015, "Trust Region Policy Optimization", sec. 6 and appendix C.
  [NPG]  Kakade 2001, "A Natural Policy Gradient".
  [CG]   Nocedal & Wright 2006, "Numerical Optimization", algorithm 5.2.

This module imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

Closure = Callable[[], tuple[Tensor, Tensor]]
"""Returns (surrogate loss to minimise, mean KL(old || new)) for the current parameters."""

VectorProduct = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- flat vectors


def flat_grad(
    y: Tensor,
    params: list[Tensor],
    *,
    retain_graph: bool = False,
    create_graph: bool = False,
) -> Tensor:
    """d y / d params as one flat vector; parameters y does not depend on get zeros."""
    grads = torch.autograd.grad(
        y, params, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def flat_params(params: list[Tensor]) -> Tensor:
    """A detached flat copy of the parameters."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def set_flat_params(params: list[Tensor], flat: Tensor) -> None:
    """Copy a flat vector into the parameters, in order."""
    offset = 0
    for p in params:
        n = p.numel()
        p.copy_(flat[offset : offset + n].view_as(p))
        offset += n


# --------------------------------------------------------------------------- linear algebra


def conjugate_gradient(
    Avp: VectorProduct, b: Tensor, *, iters: int, tol: float = 1e-10
) -> tuple[Tensor, float]:
    """Solve A x = b for symmetric positive-definite A given only products A v [CG].

    Starts from x = 0 and stops after ``iters`` products or once ||r||^2 < tol.
    Returns the solution and the final residual norm ||b - A x||.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr < tol:
            break
        Ap = Avp(p)
        alpha = rr / torch.dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, math.sqrt(float(rr))


def fisher_vector_product(kl: Tensor, params: list[Tensor], *, damping: float) -> VectorProduct:
    """v -> (F + damping I) v, F the Hessian of the mean KL(old || new) at new = old.

    Double backprop [TRPO, appendix C.1]: the gradient of the KL is built once with a graph,
    and each product differentiates <grad KL, v>. ``kl`` must still hold its graph.
    """
    grad_kl = flat_grad(kl, params, retain_graph=True, create_graph=True)

    def product(v: Tensor) -> Tensor:
        Fv = flat_grad(torch.dot(grad_kl, v), params, retain_graph=True)
        return Fv + damping * v

    return product


# --------------------------------------------------------------------------- line search


@dataclass(frozen=True)
class LineSearchResult:
    accepted: bool
    fraction: float  # of the full step that was kept (0.0 when rejected)
    backtracks: int  # shrinkings tried before acceptance (max_backtracks when rejected)
    loss: float  # surrogate loss at the parameters left in place
    kl: float  # KL(old || new) at the parameters left in place


@torch.no_grad()
def line_search(
    closure: Closure,
    params: list[Tensor],
    full_step: Tensor,
    *,
    loss_before: float,
    max_kl: float,
    backtrack_coeff: float,
    max_backtracks: int,
) -> LineSearchResult:
    """Backtracking line search along ``full_step`` [TRPO, sec. 6].

    Tries old + coeff^k * full_step for k = 0 .. max_backtracks - 1 and keeps the first point
    whose KL is at most ``max_kl`` and whose surrogate loss is below ``loss_before``. If none
    qualifies the parameters are restored bit-exactly to their values on entry.
    """
    saved = [p.detach().clone() for p in params]
    old = torch.cat([s.reshape(-1) for s in saved])
    for k in range(max_backtracks):
        fraction = backtrack_coeff**k
        set_flat_params(params, old + fraction * full_step)
        loss, kl = closure()
        loss_f, kl_f = float(loss), float(kl)
        if kl_f <= max_kl and loss_f < loss_before:
            return LineSearchResult(True, fraction, k, loss_f, kl_f)
    for p, s in zip(params, saved, strict=True):
        p.copy_(s)
    return LineSearchResult(False, 0.0, max_backtracks, loss_before, 0.0)


# --------------------------------------------------------------------------- the updater


@dataclass(frozen=True)
class UpdateStats:
    """What one trust-region step did; the caller decides what to log."""

    loss_before: float
    loss_after: float
    improvement: float  # loss_before - loss_after (>= 0)
    expected_improvement: float  # first-order prediction for the full step: -g . step
    kl: float  # KL(old || new) after the step
    accepted: bool
    backtracks: int
    step_fraction: float
    cg_residual: float
    grad_norm: float


class TrustRegionUpdater:
    """TRPO's policy step: natural gradient by CG, scaled to the trust region, line-searched.

    Use like a ``torch.optim`` optimiser with a closure that returns ``(loss, kl)``::

        updater = TrustRegionUpdater(policy.parameters(), max_kl=0.01)
        stats = updater.step(closure)

    Defaults follow [TRPO] (max_kl 0.01, CG 10 iterations, backtracking by 0.8, damping 0.1 as
    in OpenAI baselines / Spinning Up).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        max_kl: float = 0.01,
        damping: float = 0.1,
        cg_iters: int = 10,
        backtrack_coeff: float = 0.8,
        max_backtracks: int = 10,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("TrustRegionUpdater got no parameters that require grad")
        if max_kl <= 0:
            raise ValueError(f"max_kl must be > 0, got {max_kl}")
        if damping < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        if cg_iters < 1 or max_backtracks < 1:
            raise ValueError("cg_iters and max_backtracks must be >= 1")
        if not 0 < backtrack_coeff < 1:
            raise ValueError(f"backtrack_coeff must be in (0, 1), got {backtrack_coeff}")
        self.max_kl = max_kl
        self.damping = damping
        self.cg_iters = cg_iters
        self.backtrack_coeff = backtrack_coeff
        self.max_backtracks = max_backtracks

    def step(self, closure: Closure) -> UpdateStats:
        with torch.enable_grad():
            loss, kl = closure()
            g = flat_grad(loss, self.params, retain_graph=True)
            Fvp = fisher_vector_product(kl, self.params, damping=self.damping)
            direction, residual = conjugate_gradient(Fvp, -g, iters=self.cg_iters)
            sFs = torch.dot(direction, Fvp(direction))
        full_step = torch.sqrt(2 * self.max_kl / sFs.clamp_min(1e-12)) * direction
        loss_before = float(loss.detach())
        result = line_search(
            closure,
            self.params,
            full_step,
            loss_before=loss_before,
            max_kl=self.max_kl,
            backtrack_coeff=self.backtrack_coeff,
            max_backtracks=self.max_backtracks,
        )
        return UpdateStats(
            loss_before=loss_before,
            loss_after=result.loss,
            improvement=loss_before - result.loss,
            expected_improvement=float(-torch.dot(g, full_step)),
            kl=result.kl,
            accepted=result.accepted,
            backtracks=result.backtracks,
            step_fraction=result.fraction,
            cg_residual=residual,
            grad_norm=float(g.norm()),
        )
