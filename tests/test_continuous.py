"""Continuous control: a Pendulum learning test and a MuJoCo smoke run with normalisation."""

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents import make_agent
from trpo_ng.checkpoint import load_model
from trpo_ng.config import load_config
from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.rollout import evaluate
from trpo_ng.saved_agent import load_agent
from trpo_ng.trainer import EVAL_SEED_OFFSET, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_pendulum_learns_to_swing_up(tmp_path):
    # a random policy scores about -1200; configs/pendulum.yaml (gSDE) reaches about -160 by 61k
    cfg = load_config(
        CONFIGS / "pendulum.yaml", ["total_steps=61440", "eval.every=0", f"log_dir={tmp_path}"]
    )
    result = train(cfg, config_name="pendulum", quiet=True)
    assert result.final_eval >= -400, result.eval_history


def test_hopper_smoke_run_saves_and_restores_the_normaliser(tmp_path):
    pytest.importorskip("mujoco", reason="MuJoCo tasks need the mujoco extra")
    cfg = load_config(
        CONFIGS / "hopper.yaml",
        [
            "total_steps=4096",
            "eval.episodes=2",
            "value.epochs=2",
            f"log_dir={tmp_path}",
            "run_name=hop",
        ],
    )
    start = time.perf_counter()
    result = train(cfg, config_name="hopper", quiet=True)
    assert 0 < result.eval_s < time.perf_counter() - start  # the final evaluation's share
    state, meta = load_model(result.run_dir / "model.safetensors")
    saved = state["obs_normalizer"]
    assert saved["count"].item() == 4096  # one row per observation the agent acted on
    assert saved["mean"].abs().max() > 0.01

    # a fresh agent and normaliser restored from the file play exactly the logged evaluation
    env = gym.make(meta["config"]["env_id"])
    agent = make_agent(cfg, env.observation_space, env.action_space)
    agent.load_state_dict(state["agent"])
    norm = ObservationNormalizer(env.observation_space.shape)
    norm.load_state_dict(saved)
    np.testing.assert_array_equal(norm.rms.mean, saved["mean"].numpy())
    returns = evaluate(
        agent, env, episodes=2, seed=cfg.seed + EVAL_SEED_OFFSET, obs_normalizer=norm
    )
    assert np.mean(returns) == pytest.approx(result.final_eval)
    # acting with the raw observations instead would be a different policy
    unnormalised = evaluate(agent, env, episodes=2, seed=cfg.seed + EVAL_SEED_OFFSET)
    assert np.mean(unnormalised) != pytest.approx(result.final_eval)


def test_observation_statistics_stop_at_normalize_freeze_observations_after(tmp_path):
    overrides = [
        "total_steps=512",
        "rollout.num_envs=2",
        "rollout.steps_per_env=64",
        "normalize.observations=true",
        "normalize.freeze_observations_after=300",  # two batches of 128 fit, the third not
        "eval.every=0",
        "eval.episodes=1",
        f"log_dir={tmp_path}",
    ]
    cfg = load_config(CONFIGS / "pendulum.yaml", overrides)
    result = train(cfg, config_name="pendulum", quiet=True)
    state, _ = load_model(result.run_dir / "model.safetensors")
    assert state["obs_normalizer"]["count"].item() == 256


@pytest.mark.parametrize("backend", ["sync", "process"])
def test_env_kwargs_reach_every_env_of_a_run(tmp_path, backend):
    # Ant-v5 without the 78 contact forces observes 27 numbers: an env made without the
    # keyword arguments anywhere (a worker's, the evaluation's) would not fit the policy
    pytest.importorskip("mujoco", reason="MuJoCo tasks need the mujoco extra")
    overrides = [
        "env_kwargs.include_cfrc_ext_in_observation=false",
        "total_steps=512",
        "rollout.num_envs=2",
        "rollout.steps_per_env=128",
        f"rollout.backend={backend}",
        "rollout.num_workers=2",
        "value.epochs=1",
        "eval.every=256",
        "eval.episodes=1",
        f"log_dir={tmp_path}",
    ]
    result = train(load_config(CONFIGS / "ant.yaml", overrides), quiet=True)
    assert [step for step, _ in result.eval_history] == [256, 512]
    saved = load_agent(result.run_dir)
    assert saved.make_env().observation_space.shape == (27,)
    assert saved.obs_normalizer.rms.mean.shape == (27,)


def test_initial_log_std_comes_from_the_config():
    env = gym.make("Pendulum-v1")
    for sde, shape in [("false", (1,)), ("true", (64, 1))]:
        overrides = ["policy.init_log_std=-0.5", f"policy.sde={sde}"]
        cfg = load_config(CONFIGS / "pendulum.yaml", overrides)
        log_std = make_agent(cfg, env.observation_space, env.action_space).policy.log_std
        assert log_std.shape == shape and bool((log_std == -0.5).all())
    default = load_config(CONFIGS / "pendulum.yaml", ["policy.sde=false"])
    log_std = make_agent(default, env.observation_space, env.action_space).policy.log_std
    assert log_std.tolist() == [0.0]
