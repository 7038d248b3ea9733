"""Rollout workers in processes of their own (``rollout.backend: process``).

Worker 0 runs in the trainer; every other worker in a process of its own, started once, with
its own vector env (stepped in that process) and its own copy of the agent. Once per batch the
trainer sends each the policy's weights and the frozen observation statistics, collects worker
0's share itself meanwhile, and reads the others' shares back: two messages per worker and
batch, none per step (the ``subprocess`` and ``hybrid`` backends send two per env and step).
On a machine with a core per worker the shares are collected at once, so a batch takes about
one worker's time. The shares are merged by ``RolloutWorker`` as every backend's are: a batch
depends on the seed and the layout only, the same as from ``sync`` workers.

A worker whose env raises, or whose process dies, is replaced (fresh envs, or a fresh process)
and its share collected again, as with the other backends.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import gymnasium as gym
import torch

from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.rollout import (
    Actor,
    EnvRunner,
    Share,
    WorkerFault,
    acting_state,
    load_acting_state,
)
from trpo_ng.vector import VectorEnv

AgentFactory = Callable[[gym.Space, gym.Space], Actor]


def _serve(
    conn: Connection,
    make_envs: Callable[[], VectorEnv],
    agent_factory: AgentFactory,
    torch_threads: int,
) -> None:
    """A worker process: builds its envs and agent, says so, then collects a share for each
    (acting state, observation normaliser, steps, start) it gets, until None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    try:
        import envs  # noqa: F401  (registers trpo-ng's custom environments in this process)

        torch.set_num_threads(torch_threads)
        runner = EnvRunner(make_envs())
        agent = agent_factory(runner.envs.single_observation_space, runner.envs.single_action_space)
    except Exception as e:
        conn.send(f"{type(e).__name__}: {e}")
        return
    conn.send(None)
    try:
        while (msg := conn.recv()) is not None:
            state, obs_normalizer, steps, start = msg
            try:
                load_acting_state(agent, state)
                if start is not None:
                    runner.start(*start)
                reply: Share | WorkerFault | str = runner.collect(agent, obs_normalizer, steps)
            except WorkerFault as e:
                reply = e
            except Exception as e:  # the agent's own error: the trainer raises it
                reply = f"{type(e).__name__}: {e}"
            conn.send(reply)
    except (EOFError, OSError, KeyboardInterrupt):  # the trainer went away
        pass
    finally:
        runner.close()


class _Process:
    """One worker process and the trainer's end of its pipe."""

    def __init__(self, args: tuple[Any, ...]) -> None:
        ctx = mp.get_context()
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=_serve, args=(child, *args), daemon=True, name="trpo-ng-worker"
        )
        self.process.start()
        child.close()

    def ready(self) -> None:
        """Wait for the worker's envs and agent; their error as a RuntimeError."""
        try:
            error = self.conn.recv()
        except (EOFError, OSError):
            error = f"its process died (exit code {self._exitcode()})"
        if error is not None:
            self.kill()
            raise RuntimeError(f"a rollout worker could not start: {error}")

    def send(self, msg: Any) -> WorkerFault | None:
        try:
            self.conn.send(msg)
        except OSError:
            return WorkerFault(f"its process died (exit code {self._exitcode()})")
        return None

    def receive(self) -> Share | WorkerFault | str:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return WorkerFault(f"its process died (exit code {self._exitcode()})")

    def _exitcode(self) -> int | None:
        self.process.join(timeout=1.0)
        return self.process.exitcode

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=5.0)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class ProcessWorkers:
    """``num_workers`` workers of ``make_envs()`` (a vector env stepped where its worker runs):
    worker 0 in this process, the others one process each with their own agent
    ``agent_factory(observation_space, action_space)``. Both factories must pickle where
    processes are spawned rather than forked."""

    def __init__(
        self,
        make_envs: Callable[[], VectorEnv],
        *,
        num_workers: int,
        agent_factory: AgentFactory,
        torch_threads: int = 1,
    ) -> None:
        self._make_envs = make_envs
        self._args = (make_envs, agent_factory, torch_threads)
        self.local = EnvRunner(make_envs())
        self.processes: list[_Process] = []
        try:
            for _ in range(num_workers - 1):  # one at a time, so close() finds every one started
                self.processes.append(_Process(self._args))
            for p in self.processes:
                p.ready()
        except BaseException:
            self.close()
            raise
        self.num_workers = num_workers
        self.envs_per_worker = self.local.num_envs
        self.num_envs = num_workers * self.local.num_envs
        self.single_observation_space = self.local.envs.single_observation_space
        self.single_action_space = self.local.envs.single_action_space
        self._starts: list[tuple[int, int | None] | None] = [None] * num_workers

    def start(self, worker: int, *, env_seed: int, rng_seed: int | None) -> None:
        if worker == 0:
            self.local.start(env_seed, rng_seed)
        elif rng_seed is None:
            raise ValueError("only worker 0, in this process, samples from torch's global stream")
        else:
            self._starts[worker] = (env_seed, rng_seed)

    def collect(
        self,
        agent: Actor,
        obs_normalizer: ObservationNormalizer | None,
        steps: int,
        which: Sequence[int],
    ) -> list[Share | WorkerFault]:
        results: dict[int, Share | WorkerFault] = {}
        remote = [w for w in which if w > 0]
        state = acting_state(agent) if remote else None
        sent = []
        for w in remote:
            fault = self.processes[w - 1].send((state, obs_normalizer, steps, self._starts[w]))
            if fault is None:
                self._starts[w] = None
                sent.append(w)
            else:
                results[w] = fault
        try:
            if 0 in which:
                try:
                    results[0] = self.local.collect(agent, obs_normalizer, steps)
                except WorkerFault as e:
                    results[0] = e
        finally:  # every reply is read, so none is left for the next batch
            errors = []
            for w in sent:
                reply = self.processes[w - 1].receive()
                if isinstance(reply, str):
                    errors.append(f"rollout worker {w} raised {reply}")
                else:
                    results[w] = reply
        if errors:
            raise RuntimeError("; ".join(errors))
        return [results[w] for w in which]

    def restart(self, worker: int) -> None:
        if worker == 0:
            try:
                self.local.close(terminate=True)
            except Exception:  # a broken env may fail to close; it is dropped anyway
                pass
            self.local = EnvRunner(self._make_envs())
            return
        self.processes[worker - 1].kill()
        self.processes[worker - 1] = p = _Process(self._args)
        p.ready()

    def close(self) -> None:
        for p in self.processes:
            p.close()
        self.processes = []
        self.local.close()
