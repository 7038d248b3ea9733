import math

import gymnasium as gym
import pytest

from agents import make_agent
from trpo_ng.config import load_config
from trpo_ng.schedules import make_schedule


def test_linear_schedule_anneals_to_zero_and_constant_stays():
    lin = make_schedule("linear", 1e-3, total_updates=10)
    assert [lin(k) for k in (0, 5, 10, 20)] == pytest.approx([1e-3, 5e-4, 0.0, 0.0])
    assert make_schedule("constant", 0.5, total_updates=10)(99) == 0.5
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("exponential", 1.0, total_updates=1)


def test_linear_schedule_can_end_above_zero():
    lin = make_schedule("linear", 0.08, total_updates=10, end=0.25)
    assert [lin(k) for k in (0, 5, 10, 20)] == pytest.approx([0.08, 0.05, 0.02, 0.02])
    assert make_schedule("constant", 0.5, total_updates=10, end=0.25)(99) == 0.5
    with pytest.raises(ValueError, match="end fraction"):
        make_schedule("linear", 1.0, total_updates=1, end=1.5)


def test_cosine_schedule_holds_longer_then_meets_the_same_end():
    cos = make_schedule("cosine", 0.08, total_updates=10, end=0.25)
    lin = make_schedule("linear", 0.08, total_updates=10, end=0.25)
    assert [cos(k) for k in (0, 5, 10, 20)] == pytest.approx([0.08, 0.05, 0.02, 0.02])
    assert cos(2) == pytest.approx(0.02 + 0.06 * (1 + math.cos(0.2 * math.pi)) / 2)
    assert cos(2) > lin(2) and cos(8) < lin(8)  # above the line early, below it late
    assert make_schedule("cosine", 1.0, total_updates=4)(4) == pytest.approx(0.0)


def test_config_passes_the_schedule_end_to_the_step_size():
    overrides = ["policy.schedule=linear", "policy.max_kl=0.02", "policy.schedule_end=0.5"]
    cfg = load_config(None, [*overrides, "total_steps=20480"])  # ten updates of 4 x 512
    env = gym.make(cfg.env_id)
    updater = make_agent(cfg, env.observation_space, env.action_space).updater
    updater.num_updates = 10
    assert updater.hyper(updater.max_kl) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"policy\.schedule_end"):
        load_config(None, ["policy.schedule_end=-0.1"])


def test_value_learning_rate_follows_the_configured_schedule():
    cfg = load_config(None, ["value.lr_schedule=linear", "value.lr=0.002", "total_steps=20480"])
    env = gym.make(cfg.env_id)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    assert callable(agent.value_lr)
    # 20480 steps of 4 x 512: ten updates, so the sixth fit uses 2e-3 * (1 - 5/10)
    assert agent.value_lr(5) == pytest.approx(0.001)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])  # both at half the value mid-run
@pytest.mark.parametrize(("agent", "key", "value"), [("trpo", "max_kl", 0.02), ("vpg", "lr", 0.4)])
def test_policy_step_size_follows_the_configured_schedule(agent, key, value, schedule):
    overrides = [f"agent={agent}", f"policy.schedule={schedule}", f"policy.{key}={value}"]
    cfg = load_config(None, [*overrides, "total_steps=20480"])  # ten updates of 4 x 512
    env = gym.make(cfg.env_id)
    updater = make_agent(cfg, env.observation_space, env.action_space).updater
    assert updater.hyper(getattr(updater, key)) == pytest.approx(value)
    updater.num_updates = 5
    assert updater.hyper(getattr(updater, key)) == pytest.approx(value / 2)
    constant = load_config(None, [f"agent={agent}", f"policy.{key}={value}"])
    updater = make_agent(constant, env.observation_space, env.action_space).updater
    updater.num_updates = 5
    assert updater.hyper(getattr(updater, key)) == pytest.approx(value)
