"""trpo_ng.adam.Adam takes the steps torch.optim.Adam takes, and their state dicts load into
each other (checkpoints written before the switch keep loading)."""

from __future__ import annotations

import pytest
import torch

from trpo_ng.adam import Adam


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(4, 3, dtype=dtype), torch.randn(3, dtype=dtype)]


def _steps(n: int, dtype: torch.dtype) -> list[tuple[list[torch.Tensor], float]]:
    torch.manual_seed(1)
    return [
        ([torch.randn(4, 3, dtype=dtype), torch.randn(3, dtype=dtype)], 0.1 / (k + 1))
        for k in range(n)
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_steps_equal_torch_optim_adam_with_a_changing_learning_rate(dtype):
    ours_p = [p.clone() for p in _params(dtype)]
    ref_p = [torch.nn.Parameter(p.clone()) for p in _params(dtype)]
    ours, ref = Adam(ours_p, eps=1e-6), torch.optim.Adam(ref_p, lr=1.0, eps=1e-6)
    for grads, lr in _steps(5, dtype):
        ours.step(grads, lr)
        for p, g in zip(ref_p, grads, strict=True):
            p.grad = g
        ref.param_groups[0]["lr"] = lr
        ref.step()
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a, b.detach())
    assert any(not torch.equal(a, b) for a, b in zip(ours_p, _params(dtype), strict=True))


def test_state_dicts_load_into_each_other():
    ref_p = [torch.nn.Parameter(p) for p in _params(torch.float32)]
    ref = torch.optim.Adam(ref_p, lr=1.0)
    steps = _steps(3, torch.float32)
    for grads, lr in steps[:2]:
        for p, g in zip(ref_p, grads, strict=True):
            p.grad = g
        ref.param_groups[0]["lr"] = lr
        ref.step()
    ours = Adam([p.detach().clone() for p in ref_p])
    # as a checkpoint's JSON tree gives it back: integer keys as strings
    saved = ref.state_dict()
    ours.load_state_dict({**saved, "state": {str(k): v for k, v in saved["state"].items()}})
    grads, lr = steps[2]
    ours.step(grads, lr)
    for p, g in zip(ref_p, grads, strict=True):
        p.grad = g
    ref.param_groups[0]["lr"] = lr
    ref.step()
    for a, b in zip(ours.params, ref_p, strict=True):
        torch.testing.assert_close(a, b.detach())
    back = torch.optim.Adam([torch.nn.Parameter(p.clone()) for p in ours.params], lr=1.0)
    back.load_state_dict(ours.state_dict())
    for i, s in back.state_dict()["state"].items():
        torch.testing.assert_close(s["exp_avg"], ours.exp_avg[i])
        assert float(s["step"]) == 3.0


def test_a_fresh_state_and_a_wrong_one():
    ours = Adam(_params(torch.float32))
    assert ours.state_dict()["state"] == {}
    ours.load_state_dict(ours.state_dict())
    with pytest.raises(ValueError, match="4 tensors"):
        Adam([*_params(torch.float32)] * 2).load_state_dict(ours.state_dict() | {"state": {}})
