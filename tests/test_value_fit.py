"""The value fit in a background process ends where the fit in the trainer's process ends, bit
for bit, and its failures come back as errors."""

from __future__ import annotations

import multiprocessing
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from same_runs import assert_same_model, train_and_load

from agents.trpo import TRPOAgent
from trpo_ng import value_fit
from trpo_ng.adam import Adam
from trpo_ng.natural_gradient import UpdateStats
from trpo_ng.policies import ValueFunction
from trpo_ng.value_fit import BackgroundFit

SPACE = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)


def _agent(background: bool) -> TRPOAgent:
    torch.manual_seed(3)
    return TRPOAgent(
        SPACE,
        gym.spaces.Discrete(2),
        value_epochs=4,
        value_minibatch_size=32,
        value_background=background,
    )


@pytest.mark.parametrize("start_method", ["fork", "spawn"])  # Linux's, and everywhere else's
def test_background_fits_equal_the_inline_fits_bit_for_bit(monkeypatch, start_method):
    monkeypatch.setattr(value_fit, "START_METHOD", start_method)
    data = [(torch.randn(200, 5), torch.randn(200)) for _ in range(3)]
    fitted = []
    for background in (False, True):
        agent = _agent(background)
        torch.manual_seed(7)  # the epochs' permutations come from the global stream
        losses = [agent._fit_value(*data[0])[0]]  # the process is starting: fitted here
        if background:
            assert agent._background is not None
            assert agent._background.ready(timeout=120)  # the next two in the process
        losses += [agent._fit_value(obs, ret)[0] for obs, ret in data[1:]]
        state = agent.state_dict()  # waits for the last background fit
        after = torch.randn(3)  # the stream continues from the same point either way
        fitted.append((losses, state, after, agent.value(data[0][0])))
        agent.close()
    (inline_losses, inline, inline_after, inline_v), (bg_losses, bg, bg_after, bg_v) = fitted
    # in the background, each fit reports the loss of the fit before it
    assert bg_losses[0] != bg_losses[0]  # NaN: none before the first
    assert bg_losses[1:] == inline_losses[:-1]
    for key, value in inline["value"].items():
        assert torch.equal(value, bg["value"][key]), key
    for i, s in inline["value_optimizer"]["state"].items():
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s[k], bg["value_optimizer"]["state"][i][k]), (i, k)
    assert torch.equal(inline_after, bg_after)
    assert torch.equal(inline_v, bg_v)


def test_a_failing_fit_raises_in_the_trainer_with_the_childs_traceback():
    value_fn = ValueFunction(SPACE)
    fit = BackgroundFit(value_fn, Adam(value_fn.parameters()))
    fit.start()
    assert fit.ready(timeout=120)
    try:
        fit.submit(
            torch.randn(10, 4), torch.randn(10), [torch.randperm(10)], minibatch_size=5, lr=1e-3
        )
        with pytest.raises(RuntimeError, match="the value fit failed in its process") as err:
            fit.wait()
        assert "Traceback" in str(err.value)
        with pytest.raises(RuntimeError, match="no value fit is running"):
            fit.wait()
    finally:
        fit.close()


def test_a_killed_fit_process_is_an_error_not_a_hang():
    value_fn = ValueFunction(SPACE)
    fit = BackgroundFit(value_fn, Adam(value_fn.parameters()))
    fit.start()
    assert fit.ready(timeout=120)
    obs, ret = torch.randn(4000, 5), torch.randn(4000)
    fit.submit(obs, ret, [torch.randperm(4000)] * 50, minibatch_size=8, lr=1e-3)
    assert fit._process is not None
    fit._process.kill()
    with pytest.raises(RuntimeError, match="the value-fit process died"):
        fit.wait()
    assert fit._process is None


@pytest.mark.parametrize("lr_schedule", ["constant", "linear"])  # linear: the fit's clock
def test_training_with_the_background_fit_gives_the_same_run(tmp_path, lr_schedule):
    overrides = {
        "value.lr_schedule": lr_schedule,
        "total_steps": 4096,
        "rollout.num_envs": 2,
        "rollout.steps_per_env": 512,
        "eval.every": 2048,
        "eval.episodes": 2,
    }
    inline, inline_state = train_and_load(
        "configs/cartpole.yaml", {**overrides, "value.background": False}, tmp_path, "inline"
    )
    bg, bg_state = train_and_load(
        "configs/cartpole.yaml", {**overrides, "value.background": True}, tmp_path, "bg"
    )
    assert bg.eval_history == inline.eval_history
    assert_same_model(inline_state, bg_state)
    assert not multiprocessing.active_children()  # the fit's process ended with the run


def test_no_critic_epochs_leave_the_weights_in_either_mode():
    obs, ret = torch.randn(64, 5), torch.randn(64)
    for background in (False, True):
        torch.manual_seed(3)
        agent = TRPOAgent(
            SPACE, gym.spaces.Discrete(2), value_epochs=0, value_background=background
        )
        if agent._background is not None:  # up before the first fit, so that it gets both
            agent._background.start()
            assert agent._background.ready(timeout=120)
        before = [p.detach().clone() for p in agent.value_fn.parameters()]
        for _ in range(2):
            agent._fit_value(obs, ret)
        after = agent.state_dict()["value"]
        assert all(torch.equal(b, a) for b, a in zip(before, after.values(), strict=True))
        agent.close()


@pytest.mark.parametrize("background", [False, True])
def test_a_skipped_policy_step_leaves_the_value_function(background, monkeypatch):
    """In the background the fit starts beside the policy step; a step skipped for a non-finite
    gradient undoes it, weights and optimiser state, as the fit in the trainer never starts."""
    torch.manual_seed(0)
    agent = TRPOAgent(SPACE, gym.spaces.Discrete(2), value_epochs=2, value_background=background)
    obs, ret = torch.randn(64, 5), torch.randn(64)
    batch = SimpleNamespace(
        obs_TND=obs.view(32, 2, 5),
        act_TN=torch.randint(0, 2, (32, 2)),
        values_TN=torch.zeros(32, 2),
    )
    if agent._background is not None:  # up before the first fit, so that it runs there
        agent._background.start()
        assert agent._background.ready(timeout=120)
    try:
        agent.update(batch, torch.randn(32, 2), ret.view(32, 2))  # one fit, so Adam has state
        agent.value(obs)  # the collection's wait for it
        weights = [p.detach().clone() for p in agent.value_fn.parameters()]
        adam = agent.value_optimizer.state_dict()
        monkeypatch.setattr(agent.updater, "step", lambda *a, **k: UpdateStats.skipped_step())
        stats = agent.update(batch, torch.randn(32, 2), ret.view(32, 2))
        assert stats.skipped
        agent.value(obs)
        for before, after in zip(weights, agent.value_fn.parameters(), strict=True):
            assert torch.equal(before, after)
        after_adam = agent.value_optimizer.state_dict()
        for i, state in adam["state"].items():
            for key, value in state.items():
                assert torch.equal(value, after_adam["state"][i][key]), (i, key)
    finally:
        agent.close()
