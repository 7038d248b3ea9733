"""Rollout workers in this process and in subprocesses (envs, or whole workers with their own
agent copy): a batch depends on the seed and the layout only; a worker whose env raises or whose
process dies is replaced and its share collected again, no sample lost or duplicated; too many
faults stop training with a checkpoint. (The Ray backend: tests/test_ray.py.)"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from worker_faults import (
    LeanAgent,
    assert_continuous_trajectories,
    assert_same_batches,
    assert_same_stats,
    collect_batches,
)

from trpo_ng.checkpoint import list_checkpoints, load_state
from trpo_ng.config import ConfigError, load_config
from trpo_ng.rollout import WorkerError, worker_seeds
from trpo_ng.trainer import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
T = 64  # steps per env and batch in these tests


@pytest.mark.parametrize("backend", ["subprocess", "hybrid", "process"])
def test_sync_and_process_workers_give_identical_batches_and_statistics(backend):
    sync, sync_stats, _ = collect_batches("sync")
    sub, sub_stats, _ = collect_batches(backend)
    assert sync[0]["obs_TND"].shape == (T, 4, 4) and sync[0]["act_TN"].shape == (T, 4)
    assert_same_batches(sync, sub)
    assert_same_stats(sync_stats, sub_stats)
    assert sync_stats["obs_count"] == 2 * T * 4  # every step of every env, once


def test_a_deterministic_agent_gets_the_same_batch_from_any_layout():
    """Env i starts from seed + i and shares merge in worker order, with the statistics of
    the whole batch: only the action sampling depends on the layout, so an agent that samples
    nothing collects the same batch from 1 x 4, 2 x 2 and 4 x 1 envs."""
    one, one_stats, _ = collect_batches("legacy", agent_factory=LeanAgent, iterations=3)
    assert one[0]["episode_returns"], "the test needs episodes that end within the batches"
    for backend, workers, envs in [
        ("sync", 1, 4),
        ("sync", 2, 2),
        ("subprocess", 4, 1),
        ("hybrid", 2, 2),
        ("hybrid", 1, 4),
        ("process", 4, 1),
        ("process", 2, 2),
        ("process", 1, 4),
    ]:
        got, stats, _ = collect_batches(
            backend, workers=workers, envs=envs, agent_factory=LeanAgent, iterations=3
        )
        assert_same_batches(one, got)
        assert_same_stats(one_stats, stats)


def test_worker_seeds_continue_the_env_numbering_and_restarts_are_reproducible():
    assert [worker_seeds(10, worker=w, envs_per_worker=3)[0] for w in range(3)] == [10, 13, 16]
    streams = {worker_seeds(10, worker=w, envs_per_worker=3)[1] for w in range(3)}
    assert len(streams) == 3
    restart = worker_seeds(10, worker=1, envs_per_worker=3, batch=5, attempt=1)
    assert restart == worker_seeds(10, worker=1, envs_per_worker=3, batch=5, attempt=1)
    assert restart != worker_seeds(10, worker=1, envs_per_worker=3, batch=5, attempt=2)
    assert restart[0] not in range(10, 19)


@pytest.mark.parametrize(
    ("backend", "fault", "worker"),
    [
        ("sync", "Raise", 1),
        ("subprocess", "Raise", 1),
        ("subprocess", "Exit", 1),  # the env's process dies
        ("sync", "Raise", 0),  # worker 0 samples from the global stream
        ("subprocess", "Exit", 0),
        ("hybrid", "Raise", 0),  # env 0 is the one stepped in the trainer
        ("hybrid", "Raise", 1),
        ("hybrid", "Exit", 1),  # env 3, in its own process, dies
        ("process", "Raise", 0),  # worker 0 runs in the trainer
        ("process", "Raise", 1),
        ("process", "Exit", 1),  # worker 1's process dies
    ],
)
def test_a_faulty_worker_is_replaced_and_its_share_collected_again(backend, fault, worker):
    """An env of one worker fails in the second batch. That batch still has T steps of every
    env: the other worker's columns as in a run without the fault, the faulty worker's from a
    fresh reset; every env column is one continuous trajectory across the batches; every backend
    redoes the share identically."""
    suffix = "0CartPole-v0" if worker == 0 else "CartPole-v0"
    kwargs = dict(steps=T, iterations=3, seed=0, normalize=False)
    clean, _, clean_restarts = collect_batches("sync", env_id="CartPole-v1", **kwargs)
    faulty, _, restarts = collect_batches(
        backend, env_id=f"worker_faults:{fault}{suffix}", **kwargs
    )
    assert clean_restarts == [0, 0, 0] and restarts == [0, 1, 0]
    for b in faulty:
        assert b["obs_TND"].shape == (T, 4, 4) and b["rew_TN"].numel() == T * 4
    assert_same_batches(clean[:1], faulty[:1])
    kept, redone = (slice(2, 4), slice(0, 2)) if worker == 0 else (slice(0, 2), slice(2, 4))
    for key in ("obs_TND", "act_TN", "rew_TN", "term_TN", "trunc_TN"):
        assert torch.equal(clean[1][key][:, kept], faulty[1][key][:, kept]), key
    assert not torch.equal(clean[1]["obs_TND"][:, redone], faulty[1]["obs_TND"][:, redone])
    assert_continuous_trajectories(faulty, fresh=[(1, n) for n in range(redone.start, redone.stop)])
    with pytest.raises(AssertionError):  # the check does see the restart
        assert_continuous_trajectories(faulty)
    if (backend, fault) != ("sync", "Raise"):
        sync, _, _ = collect_batches("sync", env_id=f"worker_faults:Raise{suffix}", **kwargs)
        assert_same_batches(sync, faulty)  # the same redone share on every backend


@pytest.mark.parametrize("backend", ["sync", "subprocess", "process"])
def test_a_share_that_keeps_failing_is_a_worker_error(backend):
    with pytest.raises(WorkerError, match=r"lost its share of the batch 3 times .*injected fault"):
        collect_batches(
            backend, env_id="worker_faults:AlwaysRaiseCartPole-v0", max_restarts=2, normalize=False
        )


FAST = [
    "rollout.num_workers=2",
    f"rollout.steps_per_env={T}",
    "value.epochs=1",
    "eval.every=0",
    "eval.episodes=1",
]


def test_training_goes_on_after_a_worker_fault_and_counts_the_restart(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        [
            "env_id=worker_faults:RaiseCartPole-v0",
            *FAST,
            f"total_steps={4 * 4 * T}",
            f"log_dir={tmp_path}",
            "run_name=fault",
        ],
    )
    result = train(cfg, quiet=True)
    assert result.steps == 4 * 4 * T
    events = EventAccumulator(str(result.run_dir))
    events.Reload()
    assert [e.value for e in events.Scalars("rollout/worker_restarts")] == [0.0, 1.0, 1.0, 1.0]
    saved = load_state(list_checkpoints(result.run_dir / "checkpoints")[-1])
    assert saved["progress"]["worker_restarts"] == 1


def test_more_faults_than_allowed_stop_training_with_a_checkpoint(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        [
            "env_id=worker_faults:RaiseCartPole-v0",
            *FAST,
            "rollout.max_worker_restarts=0",
            "checkpoint.every=1",
            "total_steps=100000",
            f"log_dir={tmp_path}",
            "run_name=stop",
        ],
    )
    with pytest.raises(TrainingError, match=r"rollout worker 1 lost its share .*checkpoint kept"):
        train(cfg, quiet=True)
    newest = load_state(list_checkpoints(tmp_path / "stop" / "checkpoints")[-1])
    assert newest["progress"]["iteration"] == 1 and newest["progress"]["steps"] == 4 * T


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rollout.num_workers=3"], "'rollout.num_envs' (4) must be a multiple of"),
        (
            ["rollout.num_workers=2", "rollout.envs_per_worker=4"],
            "'rollout.envs_per_worker' (4) times rollout.num_workers (2) must equal",
        ),
        (["rollout.ray_address=auto"], "'rollout.ray_address' is only used with"),
        (["rollout.num_worker=2"], "did you mean 'rollout.num_workers'?"),
        (["rollout.max_worker_restarts=-1"], "'rollout.max_worker_restarts' must be >= 0"),
        (["rollout.backend=threads"], "must be one of sync, subprocess, hybrid, process, ray"),
        (
            ["rollout.backend=hybrid", "rollout.num_workers=4"],
            "needs at least 2 envs per worker, got 1",
        ),
    ],
)
def test_layout_mistakes_are_one_clear_error(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "cartpole.yaml", overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_existing_configs_keep_their_meaning():
    cfg = load_config(ROOT / "configs" / "cartpole.yaml", ["rollout.num_workers=2"])
    assert cfg.rollout.num_envs == 4 and cfg.rollout.backend == "sync"
    cfg = load_config(
        ROOT / "configs" / "cartpole.yaml",
        ["rollout.num_envs=8", "rollout.num_workers=2", "rollout.envs_per_worker=4"],
    )
    assert cfg.rollout.num_envs == 8


def test_ray_backend_without_ray_installed_is_a_one_line_error_exit_2(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if ray were not installed
        "from trpo_ng.cli import main\n"
        f"sys.exit(main(['train', 'rollout.backend=ray', 'log_dir={tmp_path}', '-q']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "trpo-ng: error: rollout.backend=ray needs ray, which is not installed: "
        "pip install 'trpo-ng[ray]'"
    ]
    assert not list(tmp_path.iterdir())  # nothing was written


def test_one_worker_samples_from_the_global_stream_as_a_plain_vector_env_does():
    """Worker 0 draws its actions from torch's global stream, as the one-process loop always
    did: one worker of 4 envs is exactly one plain vector env of 4, on either backend, and
    leaves the global stream where the plain loop leaves it."""
    plain, plain_stats, _ = collect_batches("legacy", workers=1, envs=4)
    after_plain = torch.get_rng_state()
    for backend in ("sync", "subprocess"):
        one, one_stats, _ = collect_batches(backend, workers=1, envs=4)
        assert_same_batches(plain, one)
        assert_same_stats(plain_stats, one_stats)
        assert torch.equal(torch.get_rng_state(), after_plain)


def test_other_workers_sample_from_their_own_streams():
    """Worker 1 of 2 x 2 neither feeds on nor moves the global stream: worker 0's envs get
    exactly the batch of a 1 x 2 run, and the global stream ends where that run leaves it."""
    alone, _, _ = collect_batches("sync", workers=1, envs=2, normalize=False)
    after_alone = torch.get_rng_state()
    pair, _, _ = collect_batches("sync", workers=2, envs=2, normalize=False)
    assert torch.equal(torch.get_rng_state(), after_alone)
    for a, b in zip(alone, pair, strict=True):
        for key in ("obs_TND", "act_TN", "rew_TN", "term_TN", "trunc_TN"):
            assert torch.equal(a[key], b[key][:, :2]), key
    assert not torch.equal(pair[0]["act_TN"][:, :2], pair[0]["act_TN"][:, 2:])
