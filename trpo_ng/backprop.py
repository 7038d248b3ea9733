"""The squared-error gradient of an MLP by hand-written backpropagation.

The value function's regression takes hundreds of small minibatch steps per batch; on small
networks autograd's graph and engine cost several times the arithmetic. This computes the
same gradient directly (Rumelhart, Hinton & Williams 1986): a forward pass that keeps each
layer's input, then for layer k, with g the loss gradient at its output,
dL/dW_k = g^T h_k, dL/db_k = sum_b g, and g <- (g W_k) * act'(h_k) for the layer below,
act' written in terms of the activation's output h_k.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# the derivative of each activation as a function of its output y
DERIVATIVE: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.Tanh: lambda y: 1 - y * y,
    nn.Sigmoid: lambda y: y * (1 - y),
    nn.ReLU: lambda y: (y > 0).to(y.dtype),
    nn.ELU: lambda y: torch.where(y > 0, 1.0, y + 1),  # alpha = 1, the default
}


def supports(net: nn.Sequential) -> bool:
    """True for Linear, activation, ..., Linear (with biases) with activations from
    ``DERIVATIVE``."""
    layers = list(net)
    return (
        len(layers) % 2 == 1
        and all(isinstance(m, nn.Linear) and m.bias is not None for m in layers[::2])
        and all(type(m) in DERIVATIVE for m in layers[1::2])
        and all(m.alpha == 1.0 for m in layers[1::2] if isinstance(m, nn.ELU))
    )


@torch.no_grad()
def squared_error_and_grad(
    net: nn.Sequential, x_BF: Tensor, target_B: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """``0.5 * mean((net(x) - target)^2)`` for a one-output MLP and its gradient with respect
    to ``net.parameters()``, in that order (weight, bias of each Linear)."""
    layers = list(net)
    linears: list[nn.Linear] = layers[::2]
    inputs = [x_BF]  # the input of each Linear
    h = x_BF
    for linear, activation in zip(linears[:-1], layers[1::2], strict=True):
        h = activation.forward(torch.addmm(linear.bias, h, linear.weight.T))
        inputs.append(h)
    out = linears[-1]
    err_B = torch.addmm(out.bias, h, out.weight.T).squeeze(-1) - target_B
    loss = 0.5 * err_B.square().mean()
    g = (err_B / err_B.numel()).unsqueeze(-1)  # dL/d(output)
    grads: list[Tensor] = []
    for k in range(len(linears) - 1, -1, -1):
        grads += [g.sum(0), g.T @ inputs[k]]  # bias, weight: reversed below
        if k > 0:
            g = (g @ linears[k].weight).mul_(DERIVATIVE[type(layers[2 * k - 1])](inputs[k]))
    return loss, grads[::-1]
