"""The natural-gradient core: pure functions, then one updater object.

References:
  [TRPO] Schulman et al. 2015, "Trust Region Policy Optimization", sec. 6 and appendix C.
  [NPG]  Kakade 2001, "A Natural Policy Gradient".
  [CG]   Nocedal & Wright 2006, "Numerical Optimization", algorithm 5.2.
  [GN]   Martens 2020, "New insights and perspectives on the natural gradient method", sec. 9;
         Schraudolph 2002, "Fast curvature matrix-vector products for second-order gradient
         descent" (the Gauss-Newton product J^T M J v without forming J).
  [VJP]  Townsend 2017, "A new trick for calculating Jacobian vector products" (J v as the
         vjp of the linear map u -> J^T u).

This module imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence
from torch.func import functional_call

Closure = Callable[[], tuple[Tensor, Tensor]]
"""Returns (surrogate loss to minimise, mean KL(old || new)) for the current parameters."""

VectorProduct = Callable[[Tensor], Tensor]

FisherFn = Callable[[float], VectorProduct]
"""damping -> (v -> (F + damping I) v): a Fisher-vector product built by hand for one network
(``trpo_ng.mlp_fisher``), the same product as ``gauss_newton_fisher_vector_product``'s."""

DistributionFn = Callable[[Sequence[Tensor]], Distribution]
"""Maps parameter tensors (in the updater's order) to a fresh distribution over a batch.

The distribution exposes ``params()`` (tensors with the batch dimensions first) and
``fisher_product(tangents)`` as in ``trpo_ng.distributions``, and ``type(d)(*d.params())``
rebuilds it.
"""


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
        if rr <= tol:
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


def detached(dist: Distribution) -> Distribution:
    """The same distribution, cut from the graph: ``type(dist)(*detached dist.params())``."""
    return type(dist)(*[t.detach() for t in dist.params()])


def _vjp(
    outputs: Sequence[Tensor],
    inputs: Sequence[Tensor],
    cotangents: Sequence[Tensor],
    *,
    create_graph: bool = False,
) -> list[Tensor]:
    """sum_k cotangent_k . d output_k / d input, per input; zeros where nothing depends on it.

    Outputs that do not require grad (constants, e.g. a fixed log-std) contribute nothing.
    """
    live = [k for k, y in enumerate(outputs) if y.requires_grad]
    if not live:
        return [torch.zeros_like(x) for x in inputs]
    # the gradient of one scalar, sum_k <output_k, cotangent_k>: autograd.grad with explicit
    # grad_outputs would import torch.fx's symbolic shapes and sympy (~+40 MiB resident)
    total = torch.stack([(outputs[k] * cotangents[k]).sum() for k in live]).sum()
    grads = torch.autograd.grad(
        total, inputs, retain_graph=True, create_graph=create_graph, allow_unused=True
    )
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def gauss_newton_fisher_vector_product(
    dist_fn: DistributionFn, params: Sequence[Tensor], *, damping: float
) -> VectorProduct:
    """v -> (F + damping I) v with F = (1/N) sum_i J_i^T M_i J_i, the Gauss-Newton form [GN].

    J_i is the Jacobian of sample i's distribution parameters ``dist_fn(params).params()``
    with respect to ``params``, M_i the distribution's Fisher metric in them
    (``fisher_product``), N the number of samples (as in the mean KL). At new = old the KL's
    gradient in the distribution parameters vanishes, and with it the network's second-order
    terms, so F is exactly the Hessian of the mean KL(old || new) that
    ``fisher_vector_product`` builds by double backprop, and cheaper to apply.

    The forward pass and J^T u (with its graph, for a placeholder u) are built once; each
    product is then two reverse passes: J v as the vjp of the linear map u -> J^T u [VJP],
    and J^T (M J v). This beat ``torch.func.jvp`` per product (it recomputes the forward
    pass), ``torch.func.linearize`` (its tracing costs more than a CG solve) and the same trick
    through nested ``torch.func.vjp`` (up to ~25% slower); see benchmarks/fvp.py.
    """
    primals = [p.detach().requires_grad_() for p in params]
    sizes = [p.numel() for p in primals]
    with torch.enable_grad():
        dist = dist_fn(tuple(primals))
        outputs = dist.params()
        u = [torch.zeros_like(y, requires_grad=True) for y in outputs]
        Jt_u = _vjp(outputs, primals, u, create_graph=True)
    metric = detached(dist)
    n = dist.batch_shape.numel()

    def product(v: Tensor) -> Tensor:
        Jv = _vjp(Jt_u, u, [t.view_as(p) for t, p in zip(v.split(sizes), primals, strict=True)])
        JtMJv = _vjp(outputs, primals, metric.fisher_product(tuple(Jv)))
        return torch.cat([g.reshape(-1) for g in JtMJv]).div_(n).add_(v, alpha=damping)

    return product


def module_distribution_fn(module: torch.nn.Module, *inputs: Tensor) -> DistributionFn:
    """``params -> module(*inputs)`` with the module's trainable parameters replaced by
    ``params``, given in ``module.parameters()`` order (those with ``requires_grad`` only)."""
    names = [name for name, p in module.named_parameters() if p.requires_grad]

    def dist_fn(params: Sequence[Tensor]) -> Distribution:
        if len(params) != len(names):
            raise ValueError(f"expected {len(names)} parameter tensors, got {len(params)}")
        return functional_call(module, dict(zip(names, params, strict=True)), inputs)

    return dist_fn


# --------------------------------------------------------------------------- line search


@dataclass(frozen=True)
class StepResult:
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
) -> StepResult:
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
            return StepResult(True, fraction, k, loss_f, kl_f)
    for p, s in zip(params, saved, strict=True):
        p.copy_(s)
    return StepResult(False, 0.0, max_backtracks, loss_before, 0.0)


@torch.no_grad()
def take_step(closure: Closure, params: list[Tensor], step: Tensor) -> StepResult:
    """Apply ``step`` unconditionally and measure where it landed."""
    set_flat_params(params, flat_params(params) + step)
    loss, kl = closure()
    return StepResult(True, 1.0, 0, float(loss), float(kl))


# --------------------------------------------------------------------------- the updaters

Hyper = float | Callable[[int], float]
"""A hyper-parameter: a constant, or a schedule mapping the update count (0, 1, ...) to a value."""

METRICS = ("identity", "fisher")
STEP_RULES = ("learning_rate", "fixed_kl", "line_search")
FVPS = ("double_backprop", "analytic")


@dataclass(frozen=True)
class UpdateStats:
    """What one policy step did; the caller decides what to log."""

    loss_before: float
    loss_after: float
    improvement: float  # loss_before - loss_after
    expected_improvement: float  # first-order prediction for the full step: -g . step
    kl: float  # KL(old || new) at the parameters left in place
    accepted: bool
    backtracks: int
    step_fraction: float  # of the full step that was applied
    cg_residual: float  # 0.0 under the identity metric
    grad_norm: float
    skipped: bool = False  # a NaN or inf in the loss, gradient or step: nothing was changed
    max_kl: float = float("nan")  # the KL bound this step used (its schedule's value); NaN
    # for the learning-rate rule, which has none

    @classmethod
    def skipped_step(cls) -> UpdateStats:
        nan = float("nan")
        return cls(nan, nan, nan, nan, nan, False, 0, 0.0, nan, nan, skipped=True)


class PolicyUpdater:
    """One policy step: a search direction from a metric, scaled by a step rule.

    The family the natural gradient unifies (Kakade 2001; Schulman et al. 2015, sec. 7):

    ================  ==========  ============  ===============================================
    algorithm         metric      step rule     step
    ================  ==========  ============  ===============================================
    VPG               identity    learning_rate -lr * g
    NPG               fisher      fixed_kl      sqrt(2 delta / d^T F d) * d,  d = -F^-1 g (CG)
    TRPO              fisher      line_search   the NPG step, shrunk until KL <= delta and the
                                                surrogate improves, else no step at all
    ================  ==========  ============  ===============================================

    Any metric pairs with any step rule. ``closure()`` returns (loss, mean KL(old || new)) for
    the current parameters; it is re-evaluated after the step. Hyper-parameters accept a
    constant or a schedule of the update count.

    The Fisher comes from the closure's KL by double backprop, unless ``step`` is given a
    ``dist_fn`` (params -> distribution over a batch, possibly a subsample of the closure's,
    e.g. from ``module_distribution_fn``); then ``fvp`` picks how: "double_backprop" of the
    mean KL(detached(new) || new) or "analytic" (``gauss_newton_fisher_vector_product``,
    faster; it needs ``dist_fn``; a ``fisher_fn`` given with it, the same product written out
    for the network, is used instead).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        metric: str,
        step_rule: str,
        lr: Hyper = 0.01,
        max_kl: Hyper = 0.01,
        damping: Hyper = 0.1,
        cg_iters: int = 10,
        cg_tol: float = 1e-10,
        backtrack_coeff: float = 0.8,
        max_backtracks: int = 10,
        fvp: str = "double_backprop",
        damped_step_size: bool = False,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError(f"{type(self).__name__} got no parameters that require grad")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
        if fvp not in FVPS:
            raise ValueError(f"fvp must be one of {FVPS}, got {fvp!r}")
        for name, value in (("lr", lr), ("max_kl", max_kl)):
            if not callable(value) and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not callable(damping) and damping < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        if cg_iters < 1 or max_backtracks < 1:
            raise ValueError("cg_iters and max_backtracks must be >= 1")
        if not 0 < backtrack_coeff < 1:
            raise ValueError(f"backtrack_coeff must be in (0, 1), got {backtrack_coeff}")
        self.metric, self.step_rule, self.fvp = metric, step_rule, fvp
        self.lr, self.max_kl, self.damping = lr, max_kl, damping
        self.cg_iters, self.cg_tol = cg_iters, cg_tol
        self.backtrack_coeff = backtrack_coeff
        self.max_backtracks = max_backtracks
        self.damped_step_size = damped_step_size
        self.num_updates = 0

    def hyper(self, value: Hyper) -> float:
        """A hyper-parameter's value at the current update count."""
        return float(value(self.num_updates)) if callable(value) else float(value)

    def fisher(
        self,
        kl: Tensor,
        dist_fn: DistributionFn | None,
        *,
        damping: float,
        fisher_fn: FisherFn | None = None,
    ) -> VectorProduct:
        """(F + damping I) v at the current parameters: from ``dist_fn`` by ``self.fvp`` when
        given (``fisher_fn`` for "analytic" when given), else from ``kl`` (the closure's, with
        its graph) by double backprop."""
        if dist_fn is None:
            return fisher_vector_product(kl, self.params, damping=damping)
        if self.fvp == "analytic":
            if fisher_fn is not None:
                return fisher_fn(damping)
            return gauss_newton_fisher_vector_product(dist_fn, self.params, damping=damping)
        new = dist_fn(tuple(self.params))
        kl_new = kl_divergence(detached(new), new).mean()
        return fisher_vector_product(kl_new, self.params, damping=damping)

    def step(
        self,
        closure: Closure,
        *,
        dist_fn: DistributionFn | None = None,
        fisher_fn: FisherFn | None = None,
    ) -> UpdateStats:
        """One update; ``dist_fn`` (and ``fisher_fn``), when given, define the Fisher (see the
        class docstring)."""
        if self.fvp == "analytic" and dist_fn is None:
            raise ValueError('fvp="analytic" needs step(closure, dist_fn=...)')
        max_kl, damping = self.hyper(self.max_kl), self.hyper(self.damping)
        with torch.enable_grad():
            loss, kl = closure()
            g = flat_grad(loss, self.params, retain_graph=True)
            residual = 0.0
            if self.metric == "identity" and self.step_rule == "learning_rate":
                Fvp = None  # VPG needs no curvature at all
            else:
                Fvp = self.fisher(kl, dist_fn, damping=damping, fisher_fn=fisher_fn)
            if self.metric == "fisher":
                direction, residual = conjugate_gradient(
                    Fvp, -g, iters=self.cg_iters, tol=self.cg_tol
                )
            else:
                direction = -g
            if self.step_rule == "learning_rate":
                full_step = self.hyper(self.lr) * direction
            else:  # the step whose quadratic KL model 0.5 s^T F s equals max_kl. By default
                # the damping regularises the direction only and is taken out of d^T F d;
                # damped_step_size keeps it (OpenAI baselines, Spinning Up, sb3-contrib),
                # a smaller, more conservative step
                dFd = torch.dot(direction, Fvp(direction))
                if not self.damped_step_size:
                    dFd = dFd - damping * torch.dot(direction, direction)
                full_step = torch.sqrt(2 * max_kl / dFd.clamp_min(1e-12)) * direction
        loss_before = float(loss.detach())
        if not (math.isfinite(loss_before) and torch.isfinite(full_step).all()):
            return UpdateStats.skipped_step()  # the parameters were never touched
        if self.step_rule == "line_search":
            result = line_search(
                closure,
                self.params,
                full_step,
                loss_before=loss_before,
                max_kl=max_kl,
                backtrack_coeff=self.backtrack_coeff,
                max_backtracks=self.max_backtracks,
            )
        else:
            result = take_step(closure, self.params, full_step)
        self.num_updates += 1
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
            max_kl=float("nan") if self.step_rule == "learning_rate" else max_kl,
        )

    def state_dict(self) -> dict[str, Tensor]:
        return {"num_updates": torch.tensor(self.num_updates)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.num_updates = int(state["num_updates"])


class VanillaPolicyGradientUpdater(PolicyUpdater):
    """VPG: the plain gradient step -lr * g (Williams 1992; Sutton et al. 2000)."""

    def __init__(self, params: Iterable[Tensor], *, lr: Hyper = 0.01) -> None:
        super().__init__(params, metric="identity", step_rule="learning_rate", lr=lr)


class NaturalPolicyGradientUpdater(PolicyUpdater):
    """NPG: the natural gradient scaled to a fixed KL, no line search (Kakade 2001;
    Rajeswaran et al. 2017, "Towards Generalization and Simplicity in Continuous Control")."""

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        max_kl: Hyper = 0.01,
        damping: Hyper = 0.1,
        cg_iters: int = 10,
        cg_tol: float = 1e-10,
        fvp: str = "double_backprop",
        damped_step_size: bool = False,
    ) -> None:
        super().__init__(
            params,
            metric="fisher",
            step_rule="fixed_kl",
            max_kl=max_kl,
            damping=damping,
            cg_iters=cg_iters,
            cg_tol=cg_tol,
            fvp=fvp,
            damped_step_size=damped_step_size,
        )


class TrustRegionUpdater(PolicyUpdater):
    """TRPO's step: natural gradient by CG, scaled to the trust region, line-searched [TRPO].

    Use like a ``torch.optim`` optimiser with a closure that returns ``(loss, kl)``::

        updater = TrustRegionUpdater(policy.parameters(), max_kl=0.01)
        stats = updater.step(closure)

    Defaults follow [TRPO] (max_kl 0.01, 10 CG iterations, backtracking by 0.8) with damping
    0.1 as in OpenAI baselines.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        max_kl: Hyper = 0.01,
        damping: Hyper = 0.1,
        cg_iters: int = 10,
        cg_tol: float = 1e-10,
        backtrack_coeff: float = 0.8,
        max_backtracks: int = 10,
        fvp: str = "double_backprop",
        damped_step_size: bool = False,
    ) -> None:
        super().__init__(
            params,
            metric="fisher",
            step_rule="line_search",
            max_kl=max_kl,
            damping=damping,
            cg_iters=cg_iters,
            cg_tol=cg_tol,
            backtrack_coeff=backtrack_coeff,
            max_backtracks=max_backtracks,
            fvp=fvp,
            damped_step_size=damped_step_size,
        )
