"""The Ray backend on a local Ray instance started here (2 CPUs): the same batches as the
workers in this process for the same seed and layout, reproducible runs, actors replaced after
a fault or a death, and CartPole solved as with the sync backend."""

import os
from pathlib import Path

import pytest
import torch
from worker_faults import (
    LeanAgent,
    assert_continuous_trajectories,
    assert_same_batches,
    assert_same_stats,
    collect_batches,
)

ray = pytest.importorskip("ray", reason="the Ray backend needs ray: pip install 'trpo-ng[ray]'")

from trpo_ng.config import load_config  # noqa: E402
from trpo_ng.trainer import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
T = 64


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module; its workers import tests/worker_faults.py."""
    path = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH", "")] if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


@pytest.mark.parametrize(("workers", "envs"), [(2, 2), (1, 4)])
def test_ray_workers_give_the_batches_and_statistics_of_local_workers(workers, envs):
    """Also with one worker, which samples from the trainer's global torch stream: the actor
    gets its state with the weights and hands it back, so the stream ends where it would."""
    local, local_stats, _ = collect_batches("sync", workers=workers, envs=envs)
    after_local = torch.get_rng_state()
    remote, remote_stats, _ = collect_batches("ray", workers=workers, envs=envs)
    assert torch.equal(torch.get_rng_state(), after_local)
    assert remote[0]["obs_TND"].shape == (T, 4, 4)
    assert_same_batches(local, remote)
    assert_same_stats(local_stats, remote_stats)


def test_two_ray_runs_with_one_seed_are_identical():
    first, first_stats, _ = collect_batches("ray", seed=5)
    again, again_stats, _ = collect_batches("ray", seed=5)
    other, _, _ = collect_batches("ray", seed=6)
    assert_same_batches(first, again)
    assert_same_stats(first_stats, again_stats)
    assert not torch.equal(first[1]["obs_TND"], other[1]["obs_TND"])


def test_ray_2x2_gives_one_vector_env_of_4_the_same_batch_for_a_deterministic_agent():
    one, one_stats, _ = collect_batches("legacy", agent_factory=LeanAgent, iterations=3)
    remote, remote_stats, _ = collect_batches("ray", agent_factory=LeanAgent, iterations=3)
    assert_same_batches(one, remote)
    assert_same_stats(one_stats, remote_stats)


@pytest.mark.parametrize(("fault", "worker"), [("Raise", 1), ("Exit", 0)])
def test_a_failed_ray_worker_is_replaced_and_its_share_collected_again(fault, worker):
    """The env of worker 1 raises, or the actor process of worker 0 (the one sampling from the
    trainer's global stream) dies, in the second batch: a fresh actor collects that share again,
    as the sync backend does, no sample lost or duplicated."""
    suffix = "0CartPole-v0" if worker == 0 else "CartPole-v0"
    kwargs = dict(steps=T, iterations=3, seed=0, normalize=False)
    local, _, local_restarts = collect_batches(
        "sync", env_id=f"worker_faults:Raise{suffix}", **kwargs
    )
    remote, _, restarts = collect_batches("ray", env_id=f"worker_faults:{fault}{suffix}", **kwargs)
    assert local_restarts == restarts == [0, 1, 0]
    assert_same_batches(local, remote)
    assert_continuous_trajectories(remote, fresh=[(1, 2 * worker), (1, 2 * worker + 1)])


def test_ray_backend_solves_cartpole_like_sync(tmp_path):
    """tests/test_train.py's bar for the sync backend: eval >= 475 within 100k steps. Two
    actors of 2 envs each on the Ray instance of this module (the trainer joins it)."""
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        [
            "rollout.backend=ray",
            "rollout.num_workers=2",
            "rollout.worker_cpus=1",
            "total_steps=100000",
            f"log_dir={tmp_path}",
            "run_name=ray",
        ],
    )
    result = train(cfg, quiet=True)
    assert result.steps <= 100_000
    assert result.final_eval >= 475, result.eval_history
    assert ray.is_initialized()  # the trainer left the Ray instance it joined running


def test_more_worker_cpus_than_the_cluster_has_is_a_one_line_error():
    from functools import partial

    from agents import TRPOAgent
    from trpo_ng.config import ConfigError
    from trpo_ng.ray_workers import RayWorkers
    from trpo_ng.rollout import make_vector_env

    with pytest.raises(ConfigError, match=r"needs 4 CPUs; the Ray cluster has 2: lower"):
        RayWorkers(
            partial(make_vector_env, "CartPole-v1", num_envs=1, backend="sync"),
            num_workers=4,
            agent_factory=TRPOAgent,
            worker_cpus=1.0,
        )
    assert ray.is_initialized()  # the instance it joined is left running
