"""The process backend (``trpo_ng.process_workers``): a whole run is the sync backend's run of the
same layout; errors of a worker's agent or start come back as errors; no process outlives the
workers. (Its batches, faults and restarts: tests/test_workers.py.)"""

import multiprocessing
import threading
from functools import partial

import pytest
import torch
from same_runs import assert_same_model, train_and_load
from worker_faults import LeanAgent

from agents import TRPOAgent
from trpo_ng.process_workers import ProcessWorkers
from trpo_ng.rollout import LocalWorkers, RolloutWorker, make_vector_env

CARTPOLE = partial(make_vector_env, "CartPole-v1", num_envs=1, backend="sync")


def test_training_on_process_workers_gives_the_sync_run(tmp_path):
    """Pendulum with gSDE noise, normalised observations and rewards, and the critic fitted in
    the background (the workers' copies take the policy alone and do not wait for the fit)."""
    overrides = {
        "total_steps": 4096,
        "rollout.num_workers": 2,
        "rollout.steps_per_env": 512,
        "eval.every": 2048,
        "eval.episodes": 2,
        "normalize.observations": True,
        "normalize.rewards": True,
        "value.background": True,
    }
    sync, sync_state = train_and_load(
        "configs/pendulum.yaml", {**overrides, "rollout.backend": "sync"}, tmp_path, "sync"
    )
    proc, proc_state = train_and_load(
        "configs/pendulum.yaml", {**overrides, "rollout.backend": "process"}, tmp_path, "proc"
    )
    assert [s for s, _ in proc.eval_history] == [2048, 4096]
    assert proc.eval_history == sync.eval_history
    assert_same_model(sync_state, proc_state)
    assert not multiprocessing.active_children()  # the workers ended with the run


class ActingFails(LeanAgent):
    def act(self, obs_BD, deterministic=False):
        raise ValueError("the policy broke")


def test_an_error_of_a_workers_agent_is_raised_in_the_trainer():
    workers = ProcessWorkers(CARTPOLE, num_workers=2, agent_factory=ActingFails)
    rollout = RolloutWorker(workers, steps_per_env=8, seed=0)
    try:
        with pytest.raises(ValueError, match="the policy broke"):  # worker 0, in the trainer
            rollout.collect(ActingFails())
        with pytest.raises(RuntimeError, match="rollout worker 1 raised ValueError: the policy"):
            workers.collect(LeanAgent(), None, 8, [1])
    finally:
        rollout.close()
    assert not multiprocessing.active_children()


class LoadFails(LeanAgent):
    def load_state_dict(self, state):
        raise ValueError("not this agent's state")


def test_a_copy_that_cannot_load_the_policy_is_an_error_not_a_restart():
    workers = ProcessWorkers(CARTPOLE, num_workers=2, agent_factory=LoadFails)
    rollout = RolloutWorker(workers, steps_per_env=8, seed=0, max_restarts=3)
    try:
        with pytest.raises(RuntimeError, match="worker 1 raised ValueError: not this agent's"):
            rollout.collect(LeanAgent())
        assert rollout.restarts == 0
    finally:
        rollout.close()


def _no_agent(observation_space, action_space):
    raise ValueError("no agent for these spaces")


def test_a_worker_that_cannot_start_is_one_error_and_leaves_no_process():
    with pytest.raises(RuntimeError, match="could not start: ValueError: no agent for these"):
        ProcessWorkers(CARTPOLE, num_workers=3, agent_factory=_no_agent)
    assert not multiprocessing.active_children()


def test_workers_start_and_collect_from_a_thread_other_than_the_main_one():
    """As ``train`` runs in a user's thread: nothing here may need the main thread."""
    out = []

    def run():
        workers = ProcessWorkers(CARTPOLE, num_workers=2, agent_factory=LeanAgent)
        rollout = RolloutWorker(workers, steps_per_env=8, seed=0)
        try:
            out.append(rollout.collect(LeanAgent()).obs_TND.shape)
        finally:
            rollout.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert out == [(8, 2, 4)]
    assert not multiprocessing.active_children()


def test_only_worker_0_samples_from_the_global_stream():
    workers = ProcessWorkers(CARTPOLE, num_workers=2, agent_factory=TRPOAgent)
    try:
        workers.start(0, env_seed=0, rng_seed=None)
        with pytest.raises(ValueError, match="only worker 0"):
            workers.start(1, env_seed=1, rng_seed=None)
    finally:
        workers.close()


def test_a_workers_copy_acts_with_the_trainers_policy_of_each_batch():
    """The trainer's policy changes between batches; the worker's copy follows it: the same
    batches as sync workers whose one agent is changed the same way."""
    batches = {}
    for backend in ("sync", "process"):
        if backend == "sync":
            workers = LocalWorkers(CARTPOLE, num_workers=2, lockstep=False)
        else:
            workers = ProcessWorkers(CARTPOLE, num_workers=2, agent_factory=TRPOAgent)
        torch.manual_seed(0)
        agent = TRPOAgent(workers.single_observation_space, workers.single_action_space)
        rollout = RolloutWorker(workers, steps_per_env=16, seed=0)
        got = []
        try:
            for _ in range(3):
                got.append(rollout.collect(agent).act_TN.clone())
                with torch.no_grad():
                    for p in agent.policy.parameters():
                        p.add_(0.5 * torch.randn_like(p))
        finally:
            rollout.close()
        batches[backend] = got
    for a, b in zip(batches["sync"], batches["process"], strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(batches["sync"][0], batches["sync"][2])
