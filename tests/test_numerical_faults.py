"""NaN and inf never reach the weights: the update is skipped, counted, and training stops
with a clear error and a checkpoint when it keeps happening."""

from pathlib import Path

import faulty_envs  # noqa: F401  (registers the faulty envs)
import gymnasium as gym
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import TRPOAgent
from trpo_ng.checkpoint import list_checkpoints
from trpo_ng.config import load_config
from trpo_ng.natural_gradient import TrustRegionUpdater
from trpo_ng.rollout import RolloutWorker, make_vector_env
from trpo_ng.trainer import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "rollout.num_envs=1",
    "rollout.steps_per_env=256",
    "value.epochs=1",
    "eval.every=0",
    "eval.episodes=1",
]


def weights(agent):
    return [p.detach().clone() for p in [*agent.policy.parameters(), *agent.value_fn.parameters()]]


@pytest.mark.parametrize("env_id", ["NaNOnceCartPole-v0", "NaNObsCartPole-v0"])
def test_a_batch_with_nan_leaves_the_weights_unchanged(env_id):
    torch.manual_seed(0)
    envs = make_vector_env(env_id, num_envs=1, backend="sync")
    agent = TRPOAgent(envs.single_observation_space, envs.single_action_space)
    batch = RolloutWorker(envs, steps_per_env=256, seed=0).collect(agent)
    from trpo_ng.advantages import gae

    adv, ret = gae(
        batch.rew_TN.numpy(),
        batch.values_TN.numpy(),
        batch.next_values_TN.numpy(),
        batch.term_TN.numpy(),
        batch.trunc_TN.numpy(),
        gamma=0.99,
        lam=0.95,
    )
    before = weights(agent)
    stats = agent.update(batch, torch.from_numpy(adv), torch.from_numpy(ret))
    assert stats.skipped
    for b, a in zip(before, weights(agent), strict=True):
        assert torch.equal(a, b) and torch.isfinite(a).all()


def test_a_non_finite_gradient_never_reaches_the_parameters():
    p = torch.nn.Parameter(torch.ones(3))

    def closure():
        loss = (p * torch.tensor([1.0, float("inf"), 0.0])).sum()
        return loss, (p - p.detach()).square().sum()

    stats = TrustRegionUpdater([p]).step(closure)
    assert stats.skipped and not stats.accepted
    assert torch.equal(p.detach(), torch.ones(3))


def test_training_survives_one_nan_and_counts_it(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        [
            "env_id=NaNOnceCartPole-v0",
            *FAST,
            "total_steps=1024",
            f"log_dir={tmp_path}",
            "run_name=once",
        ],
    )
    result = train(cfg, quiet=True)
    events = EventAccumulator(str(result.run_dir))
    events.Reload()
    skipped = [e.value for e in events.Scalars("train/skipped_updates")]
    assert skipped == [1.0, 1.0, 1.0, 1.0]  # the first batch held the NaN, the rest did not
    assert result.steps == 1024


def test_repeated_nan_stops_with_a_clear_error_and_a_checkpoint(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        [
            "env_id=NaNAlwaysCartPole-v0",
            *FAST,
            "total_steps=100000",
            "max_skipped_updates=3",
            f"log_dir={tmp_path}",
            "run_name=always",
        ],
    )
    with pytest.raises(TrainingError, match="3 updates in a row were skipped"):
        train(cfg, quiet=True)
    assert list_checkpoints(tmp_path / "always" / "checkpoints")
    env = gym.make("NaNAlwaysCartPole-v0")
    env.close()
