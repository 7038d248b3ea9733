"""End to end: the `trpo-ng train` command on CartPole-v1, its TensorBoard file and model file."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from agents.trpo import TRPOAgent
from trpo_ng.checkpoint import load_model
from trpo_ng.config import load_config
from trpo_ng.rollout import evaluate
from trpo_ng.trainer import EVAL_SEED_OFFSET, train

ROOT = Path(__file__).resolve().parents[1]

TAGS = {
    "rollout/ep_return",
    "rollout/ep_length",
    "train/kl",
    "train/max_kl",
    "train/surrogate_improvement",
    "train/line_search_backtracks",
    "train/line_search_accepted",
    "train/cg_residual",
    "train/value_loss",
    "train/explained_variance",
    "train/entropy",
    "eval/return_mean",
    "time/steps_per_second",
    "time/eval_s",
}


def test_train_command_solves_cartpole_within_100k_steps(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trpo_ng.cli",
            "train",
            str(ROOT / "configs" / "cartpole.yaml"),
            f"log_dir={tmp_path}",
            "run_name=cartpole",
            "total_steps=100000",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "cartpole"

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    assert TAGS <= set(events.Tags()["scalars"])
    assert "config/text_summary" in events.Tags()["tensors"]
    # the dashboard: custom scalar layout, histograms, and an hparams entry with the result
    assert "custom_scalars__config__" in events.Tags()["tensors"]
    assert {"rollout/actions", "train/advantages"} <= set(events.Tags()["histograms"])
    plugin_tags = {
        (v.metadata.plugin_data.plugin_name, v.tag)
        for f in sorted(run.glob("events.*"))
        for ev in EventFileLoader(str(f)).Load()
        if ev.HasField("summary")
        for v in ev.summary.value
    }
    assert ("hparams", "_hparams_/experiment") in plugin_tags
    assert ("scalars", "hparam/final_eval_return") in plugin_tags
    evals = events.Scalars("eval/return_mean")
    assert max(e.step for e in events.Scalars("train/kl")) <= 100_000
    assert evals[-1].value >= 475, [(e.step, e.value) for e in evals]
    assert all(e.value <= 0.01 + 1e-6 for e in events.Scalars("train/kl"))

    # the model file restores an agent that plays as well as the logged evaluation
    cfg = load_config(run / "config.yaml")
    state, meta = load_model(run / "model.safetensors")
    assert meta["steps"] == evals[-1].step
    env = gym.make(cfg.env_id)
    agent = TRPOAgent(env.observation_space, env.action_space)
    agent.load_state_dict(state["agent"])
    returns = evaluate(agent, env, episodes=cfg.eval.episodes, seed=cfg.seed + EVAL_SEED_OFFSET)
    assert sum(returns) / len(returns) == evals[-1].value
    assert torch.equal(agent.policy.net[0].weight, state["agent"]["policy"]["net.0.weight"])


def test_evaluation_videos_go_to_tensorboard(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        [
            "total_steps=4096",
            "rollout.steps_per_env=256",
            "eval.episodes=1",
            "eval.video_every=2048",
            "value.epochs=1",
            f"log_dir={tmp_path}",
            "run_name=video",
        ],
    )
    train(cfg, quiet=True)
    events = EventAccumulator(str(tmp_path / "video"), size_guidance={"images": 0})
    events.Reload()
    videos = events.Images("eval/video")
    assert [v.step for v in videos] == [2048, 4096]
    assert all(v.width == 600 and v.height == 400 for v in videos)  # CartPole's frames
