"""The Gauss-Newton Fisher-vector product of an MLP policy, written out by hand.

F v = (1/N) sum_i J_i^T M_i J_i v (Martens 2020, sec. 9; Schraudolph 2002), as
``natural_gradient.gauss_newton_fisher_vector_product`` computes it through autograd, here
with the layers' own arithmetic: J v by forward-mode differentiation through the MLP (the
R-operator, Pearlmutter 1994): for layer k with input h_k, input tangent t_k and weight
tangents dW_k, db_k, the output tangent is s_k = t_k W_k^T + h_k dW_k^T + db_k, and
t_{k+1} = s_k * act'(h_{k+1}); then M applied to the output tangent, and J^T by
backpropagation (``trpo_ng.backprop``). On the small networks of continuous control, autograd's
graph bookkeeping costs more than these few matrix products.

Covers policies whose encoder has no weights, with an MLP of ``backprop.supports`` and a
Categorical or a state-independent diagonal Gaussian head; ``mlp_fisher_product`` returns
None for the others, which keep the autograd product.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from trpo_ng import backprop
from trpo_ng.natural_gradient import FisherFn, VectorProduct
from trpo_ng.policies import Policy


def mlp_fisher_product(policy: Policy, obs: Tensor, params: Sequence[Tensor]) -> FisherFn | None:
    """The Fisher of ``policy`` on the observations ``obs`` at its current weights, for a flat
    parameter vector ordered as ``params``; None where the policy is not covered or ``params``
    are not [log_std (Gaussian),] the MLP's weights and biases, in that order."""
    net = policy.net
    gaussian = policy.kind == "gaussian" and not policy.sde
    expected = ([policy.log_std] if gaussian else []) + list(net.parameters())
    if (
        policy.kind not in ("categorical", "gaussian")
        or policy.sde
        or not backprop.supports(net)
        or any(True for _ in policy.encoder.parameters())
        or len(params) != len(expected)
        or any(p is not q for p, q in zip(params, expected, strict=True))
    ):
        return None
    with torch.no_grad():
        return _product(policy, policy.encoder(obs).to(net[0].weight.dtype), gaussian)


def _product(policy: Policy, x_BF: Tensor, gaussian: bool) -> FisherFn:
    layers = list(policy.net)
    linears: list[nn.Linear] = layers[::2]
    derivatives = [backprop.DERIVATIVE[type(m)] for m in layers[1::2]]
    inputs = [x_BF]  # the input of each Linear
    act_derivs: list[Tensor] = []  # act'(.) at the input of Linear k, k >= 1
    h = x_BF
    for linear, activation, derivative in zip(linears[:-1], layers[1::2], derivatives, strict=True):
        h = activation.forward(torch.addmm(linear.bias, h, linear.weight.T))
        inputs.append(h)
        act_derivs.append(derivative(h))
    out_BO = torch.addmm(linears[-1].bias, h, linears[-1].weight.T)
    n = x_BF.shape[0]
    if gaussian:
        assert policy.log_std is not None
        inv_var = (-2 * policy.log_std.detach()).exp()  # M on the mean: 1 / sigma^2
    else:
        probs_BO = out_BO.softmax(-1)  # M on the logits: diag(p) - p p^T
    sizes = ([out_BO.shape[-1]] if gaussian else []) + [
        t.numel() for m in linears for t in (m.weight, m.bias)
    ]

    def metric(s_BO: Tensor) -> Tensor:
        if gaussian:
            return s_BO * inv_var
        pu = probs_BO * s_BO
        return pu.sub_(probs_BO * pu.sum(-1, keepdim=True))

    def fisher(damping: float) -> VectorProduct:
        @torch.no_grad()
        def product(v: Tensor) -> Tensor:
            pieces = list(v.split(sizes))
            d_log_std = pieces.pop(0) if gaussian else None
            tangent: Tensor | None = None
            for k, linear in enumerate(linears):  # J v, layer by layer
                d_w, d_b = pieces[2 * k].view_as(linear.weight), pieces[2 * k + 1]
                s = torch.addmm(d_b, inputs[k], d_w.T)
                if tangent is not None:
                    s.addmm_(tangent, linear.weight.T)
                tangent = s.mul_(act_derivs[k]) if k < len(act_derivs) else s
            assert tangent is not None
            g = metric(tangent)  # M J v, then J^T of it, layer by layer
            grads: list[Tensor] = []
            for k in range(len(linears) - 1, -1, -1):
                grads += [g.sum(0), (g.T @ inputs[k]).reshape(-1)]  # bias, weight
                if k > 0:
                    g = (g @ linears[k].weight).mul_(act_derivs[k - 1])
            # the log-std: its tangent is the same in every row, and M is 2 there
            head = [2 * n * d_log_std] if d_log_std is not None else []
            return torch.cat(head + grads[::-1]).div_(n).add_(v, alpha=damping)

        return product

    return fisher
