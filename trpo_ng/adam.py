"""Adam (Kingma & Ba 2015, Algorithm 1) for the value regression, one fused kernel per step.

``torch.optim.Adam(fused=True)`` runs the same kernel, but its first construction imports
``torch._dynamo`` (about +70 MiB resident, a fifth of a training process) and each ``step``
spends ~60 us in Python around the ~10 us kernel, many times per batch for the critic's small
minibatches. The state dict keeps ``torch.optim.Adam``'s layout, so either loads the other's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor


class Adam:
    """Adam without weight decay over a fixed list of tensors; the learning rate is given to
    each ``step``, so a schedule needs no optimiser state."""

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32) for _ in self.params]
        self.lr = 0.0  # the last step's, for the state dict

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], lr: float) -> None:
        """One Adam step of every tensor with ``grads`` (same order as the params)."""
        self.lr = lr
        torch._foreach_add_(self.steps, 1.0)  # the kernel reads t, it does not count it
        torch._fused_adam_(
            self.params,
            list(grads),
            self.exp_avg,
            self.exp_avg_sq,
            [],  # no AMSGrad
            self.steps,
            lr=lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: per-parameter state by index, one param group."""
        state = {
            i: {"step": s.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
            for i, (s, m, v) in enumerate(
                zip(self.steps, self.exp_avg, self.exp_avg_sq, strict=True)
            )
            if s.item() > 0
        }
        group = {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": 0.0,
            "amsgrad": False,
            "params": list(range(len(self.params))),
        }
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load this class's or ``torch.optim.Adam``'s state dict (keys may be str after JSON)."""
        groups = state.get("param_groups") or [{}]
        n = len(self.params)
        if len(groups) != 1 or len(groups[0].get("params", range(n))) != n:
            raise ValueError(f"an Adam state for {n} tensors in one group was expected")
        group = groups[0]
        self.lr = float(group.get("lr", self.lr))
        per_param = {int(k): v for k, v in state.get("state", {}).items()}
        for i, p in enumerate(self.params):
            s = per_param.get(i)
            if s is None:  # never stepped
                for t in (self.steps[i], self.exp_avg[i], self.exp_avg_sq[i]):
                    t.zero_()
                continue
            if s["exp_avg"].shape != p.shape:
                raise ValueError(
                    f"Adam state {i} has shape {tuple(s['exp_avg'].shape)}, "
                    f"the parameter {tuple(p.shape)}"
                )
            self.steps[i].fill_(float(s["step"]))
            self.exp_avg[i].copy_(s["exp_avg"])
            self.exp_avg_sq[i].copy_(s["exp_avg_sq"])
