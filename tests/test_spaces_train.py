"""End to end on every common space: `train` on small registered envs with MultiDiscrete and
MultiBinary actions, Dict and Discrete observations, and stacked uint8 images (CNN), then the
saved model acts on raw observations. Two of them must also learn (a threshold on the return
of the sampled actions)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_spaces import DICT, SpacesEnv

from trpo_ng.api import train
from trpo_ng.saved_agent import load_agent

IMAGE_HW = gym.spaces.Box(0, 255, (36, 36), dtype=np.uint8)
TASKS = {  # name: (observation space, action space, best return of an 8-step episode)
    "MultiDiscrete": (gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.MultiDiscrete([3, 2, 4]), 8.0),
    "MultiBinary": (DICT, gym.spaces.MultiBinary(4), 8.0),
    "DiscreteObs": (gym.spaces.Discrete(5), gym.spaces.Box(-1.0, 1.0, (2,)), 0.0),
    "Image": (IMAGE_HW, gym.spaces.Discrete(3), 8.0),
}


def _register() -> None:
    for name, (obs_space, act_space, _) in TASKS.items():
        env_id = f"SpacesTest{name}-v0"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=SpacesEnv,
                kwargs={"observation_space": obs_space, "action_space": act_space},
            )


def _overrides(tmp_path, name, *extra):
    _register()
    return [
        f"env_id=SpacesTest{name}-v0",
        f"log_dir={tmp_path}",
        "run_name=run",
        "rollout.num_envs=2",
        "rollout.steps_per_env=64",
        "total_steps=640",
        "eval.every=0",
        "eval.episodes=2",
        "network.hidden_sizes=[16]",
        "network.cnn_features=32",
        "value.epochs=2",
        *extra,
    ]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_train_runs_and_the_saved_agent_acts_on_each_space(tmp_path, name):
    extra = ["wrappers.frame_stack=2"] if name == "Image" else []
    result = train(overrides=_overrides(tmp_path, name, *extra), quiet=True)
    assert result.steps == 640 and np.isfinite(result.final_eval)
    saved = load_agent(result.run_dir)
    env = saved.make_env()
    obs, _ = env.reset(seed=0)
    action = saved.act(obs)
    assert env.action_space.contains(action), action
    if name == "Image":
        assert env.observation_space.shape == (2, 36, 36)
        assert any(n.startswith("encoder.conv") for n in saved.agent.policy.state_dict())
    env.close()


def _stochastic_return(run_dir, episodes: int = 10) -> float:
    """Mean return of the saved policy's sampled actions (its mode finds the target long
    before the policy is sure of it, so the deterministic evaluation is too easy a check)."""
    saved = load_agent(run_dir)
    env = saved.make_env()
    total = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(episodes):
            obs, _ = env.reset(seed=100 + i)
            done = False
            while not done:
                obs, reward, term, trunc, _ = env.step(saved.act(obs, deterministic=False))
                total += float(reward)
                done = term or trunc
    env.close()
    return total / episodes


@pytest.mark.parametrize("name", ["MultiDiscrete", "MultiBinary"])
def test_trpo_learns_the_target_action(tmp_path, name):
    """Sampling at random earns ~3.4 (MultiDiscrete) or 4 (MultiBinary) of the best 8 an
    episode; 30 TRPO iterations must bring the sampled actions to 90% of the best."""
    overrides = _overrides(tmp_path, name, "total_steps=3840", "policy.max_kl=0.05")
    result = train(overrides=overrides, quiet=True)
    assert _stochastic_return(result.run_dir) >= 0.9 * TASKS[name][2]
