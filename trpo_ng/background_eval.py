"""Periodic evaluations in a forked process, so training goes on while they play
(``eval.background``).

A fork copies the trainer's memory as it is at that moment, so the child plays the evaluation
episodes with the weights and frozen observation statistics of the step it was started at,
while the trainer collects and updates on: the same envs, seeds and weights as an evaluation in
the trainer, so the same returns (tested). At most one runs at a time; a second ``start`` waits
for the first. A checkpoint written while one plays holds the evaluations finished before it.
Where fork is not available (not Linux), ``start`` evaluates at once, here.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import torch
import torch.multiprocessing as mp

FORK = sys.platform.startswith("linux")


@dataclass(frozen=True)
class Evaluation:
    step: int  # the env steps trained when it started
    returns: list[float]


class BackgroundEvaluation:
    """Runs ``evaluate`` (returns per episode) in a forked child per ``start``; finished
    evaluations come back, in order, from ``start`` and ``wait``."""

    def __init__(self, evaluate: Callable[[], list[float]]) -> None:
        self._evaluate = evaluate
        self._running: tuple[int, Connection, BaseProcess] | None = None

    @property
    def running(self) -> bool:
        return self._running is not None

    def start(self, step: int) -> list[Evaluation]:
        """Start evaluating the current weights as those of ``step``; returns the evaluation
        that was running (waited for), if any, and without fork this one, played here."""
        done = self.wait()
        if not FORK:
            return [*done, Evaluation(step, self._evaluate())]
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_play, args=(child, self._evaluate), daemon=True, name="trpo-ng-eval"
        )
        process.start()
        child.close()
        self._running = (step, parent, process)
        return done

    def wait(self) -> list[Evaluation]:
        """The running evaluation once it has finished (empty if none runs); raises
        RuntimeError if it failed."""
        if self._running is None:
            return []
        step, conn, process = self._running
        self._running = None
        try:
            ok, result = conn.recv()
        except (EOFError, OSError):
            process.join(timeout=5)
            raise RuntimeError(
                f"the evaluation process died (exit code {process.exitcode})"
            ) from None
        finally:
            conn.close()
        process.join(timeout=5)
        if not ok:
            raise RuntimeError(f"the evaluation failed in its process:\n{result}")
        return [Evaluation(step, result)]

    def close(self) -> None:
        """Stop a running evaluation, whose result is then lost."""
        if self._running is not None:
            _, conn, process = self._running
            self._running = None
            conn.close()
            process.kill()
            process.join()


def _play(conn: Connection, evaluate: Callable[[], list[float]]) -> None:
    """The child: one evaluation, its answer (ok, returns or error text), and exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    torch.set_num_threads(1)  # a forked child must not start OpenMP threads
    try:
        answer: tuple[bool, list[float] | str] = (True, evaluate())
    except Exception:
        answer = (False, traceback.format_exc())
    try:
        conn.send(answer)
    except OSError:  # the trainer went away
        pass
