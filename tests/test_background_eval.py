"""Evaluations in a forked process (``eval.background``) give the run the same evaluations
and the same weights as evaluations in the trainer, and their failures come back as errors."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest
from same_runs import assert_same_model, train_and_load
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trpo_ng import background_eval
from trpo_ng.background_eval import BackgroundEvaluation, Evaluation

needs_fork = pytest.mark.skipif(not background_eval.FORK, reason="fork: Linux only")


def _logged_returns(run_dir) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("eval/return_mean")]


@needs_fork
def test_training_with_background_evaluations_gives_the_same_run(tmp_path, monkeypatch):
    started: list[int] = []
    start = BackgroundEvaluation.start

    def counted(self: BackgroundEvaluation, step: int) -> list[Evaluation]:
        started.append(step)
        return start(self, step)

    monkeypatch.setattr(BackgroundEvaluation, "start", counted)

    overrides = {
        "total_steps": 4096,
        "rollout.steps_per_env": 512,
        "eval.every": 1024,
        "eval.episodes": 2,
        "normalize.observations": True,  # the child sees the statistics frozen at its step
    }
    here, here_state = train_and_load(
        "configs/pendulum.yaml", {**overrides, "eval.background": False}, tmp_path, "here"
    )
    bg, bg_state = train_and_load(
        "configs/pendulum.yaml", {**overrides, "eval.background": True}, tmp_path, "bg"
    )
    assert started == [1024, 2048, 3072, 4096]  # all four in the background run
    assert [s for s, _ in here.eval_history] == [1024, 2048, 3072, 4096]  # no extra final one
    assert bg.eval_history == here.eval_history
    assert _logged_returns(bg.run_dir) == _logged_returns(here.run_dir)
    assert_same_model(here_state, bg_state)
    assert not multiprocessing.active_children()  # no evaluation outlives the run


@needs_fork
def test_an_evaluation_plays_the_state_of_its_start():
    state = {"weight": 1.0}
    evaluation = BackgroundEvaluation(lambda: [state["weight"]])
    assert evaluation.start(100) == []
    state["weight"] = 2.0  # training goes on meanwhile
    assert evaluation.start(200) == [Evaluation(100, [1.0])]  # waits for the one running
    assert evaluation.wait() == [Evaluation(200, [2.0])]
    assert evaluation.wait() == []


@needs_fork
def test_failures_in_the_evaluation_process_come_back_as_errors():
    def broken() -> list[float]:
        raise ValueError("the env broke")

    evaluation = BackgroundEvaluation(broken)
    evaluation.start(0)
    with pytest.raises(RuntimeError, match="ValueError: the env broke"):
        evaluation.wait()
    dying = BackgroundEvaluation(lambda: os._exit(3))
    dying.start(0)
    with pytest.raises(RuntimeError, match=r"died \(exit code 3\)"):
        dying.wait()


@needs_fork
def test_close_stops_a_running_evaluation():
    evaluation = BackgroundEvaluation(lambda: [time.sleep(60) or 0.0])
    evaluation.start(0)
    assert evaluation.running
    start = time.perf_counter()
    evaluation.close()
    assert time.perf_counter() - start < 10
    assert not evaluation.running and not multiprocessing.active_children()


def test_without_fork_evaluations_play_at_once(monkeypatch):
    monkeypatch.setattr(background_eval, "FORK", False)
    played = []
    evaluation = BackgroundEvaluation(lambda: played.append(1) or [float(len(played))])
    assert evaluation.start(10) == [Evaluation(10, [1.0])]  # played here, at once
    assert played == [1] and not evaluation.running
    assert evaluation.wait() == []
