"""FruitClassification-v0: Gymnasium API, reproducibility, reward semantics, and TRPO learns it."""

import importlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # registers FruitClassification-v0
from envs.fruit import PROTOTYPES, FruitClassificationEnv

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "FruitClassification-v0"


def test_passes_gymnasium_env_checker():
    check_env(gym.make(ENV_ID).unwrapped)


def test_registration_is_idempotent():
    importlib.reload(envs)
    env = gym.make(ENV_ID, episode_length=4, noise=0.1)
    assert isinstance(env.unwrapped, FruitClassificationEnv)
    assert env.unwrapped.episode_length == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"episode_length": 0},
        {"episode_length": 2.5},
        {"episode_length": True},
        {"noise": -0.1},
        {"noise": float("nan")},
        {"noise": "0.3"},
        {"render_mode": "human"},
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FruitClassificationEnv(**kwargs)


def _rollout(seed: int, steps: int = 30) -> tuple[np.ndarray, list[int]]:
    env = FruitClassificationEnv()
    obs, info = env.reset(seed=seed)
    observations, labels = [obs], [info["label"]]
    for t in range(steps):
        obs, _, terminated, _, info = env.step(t % 3)
        if terminated:
            obs, info = env.reset()
        observations.append(obs)
        labels.append(info["label"])
    return np.stack(observations), labels


def test_same_seed_same_sequence():
    obs_a, labels_a = _rollout(seed=7)
    obs_b, labels_b = _rollout(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert labels_a == labels_b
    obs_c, _ = _rollout(seed=8)
    assert not np.array_equal(obs_a, obs_c)


def test_reward_is_one_exactly_when_action_is_the_label():
    env = FruitClassificationEnv()
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    seen = set()
    for _ in range(300):
        action = int(rng.integers(3))
        label = info["label"]
        _, reward, terminated, _, info = env.step(action)
        assert reward == (1.0 if action == label else 0.0)
        seen.add((label, action == label))
        if terminated:
            _, info = env.reset()
    assert seen == {(label, hit) for label in range(3) for hit in (True, False)}


@pytest.mark.parametrize("episode_length", [1, 3, 10])
def test_episode_terminates_after_episode_length_steps(episode_length):
    env = FruitClassificationEnv(episode_length=episode_length)
    obs, _ = env.reset(seed=1)
    for t in range(1, episode_length + 1):
        obs, _, terminated, truncated, _ = env.step(0)
        assert obs in env.observation_space
        assert terminated == (t == episode_length)
        assert not truncated


def test_ansi_render_describes_the_last_step():
    env = FruitClassificationEnv(render_mode="ansi")
    _, info = env.reset(seed=2)
    env.step(info["label"])
    assert "(right)" in env.render()
    assert FruitClassificationEnv().render() is None


def test_classes_overlap_slightly():
    """The best (nearest-prototype, here linear) classifier is near but not at 100%."""
    env = FruitClassificationEnv(episode_length=10_000)
    obs, info = env.reset(seed=3)
    hits = []
    for _ in range(10_000):
        guess = int(np.argmin(((PROTOTYPES - obs) ** 2).sum(axis=1)))
        hits.append(guess == info["label"])
        obs, _, _, _, info = env.step(guess)
    assert 0.95 <= np.mean(hits) <= 0.995


def test_random_policy_scores_about_a_third():
    env = FruitClassificationEnv()
    env.action_space.seed(0)
    returns = []
    for episode in range(200):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        returns.append(total)
    assert 2.5 <= np.mean(returns) <= 4.2
