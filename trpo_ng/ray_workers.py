"""Rollout workers as Ray actors, on this machine or a cluster (``rollout.backend: ray``).

Each actor holds one vector env (a ``SerialVectorEnv``, stepped in the actor's process) and its
own copy of the agent, both built by picklable factories. Once per batch the trainer's policy
weights (``acting_state``) and observation statistics go into Ray's object store once
(``ray.put``) and every actor collects its share with them; the shares come back in worker
order and are merged by ``RolloutWorker`` exactly as for local workers. An actor whose env
raises, or whose process dies, is killed and replaced by a fresh one.

Needs the ``ray`` extra: ``pip install 'trpo-ng[ray]'``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import torch

from trpo_ng.config import ConfigError
from trpo_ng.extras import require
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

START_TIMEOUT_S = 300.0  # for every actor to come up; past it, the cluster lacks room for them


class RolloutActor:
    """One worker in a Ray process: a vector env, an agent copy, a runner."""

    def __init__(
        self,
        make_envs: Callable[[], VectorEnv],
        agent_factory: Callable[[gym.Space, gym.Space], Any],
        torch_threads: int,
    ) -> None:
        import envs  # noqa: F401  (registers trpo-ng's custom environments in this process)

        torch.set_num_threads(torch_threads)
        self.envs = make_envs()
        self.agent = agent_factory(
            self.envs.single_observation_space, self.envs.single_action_space
        )
        self.runner = EnvRunner(self.envs)

    def ready(self) -> bool:
        return True

    def collect(
        self,
        broadcast: tuple[dict[str, Any], ObservationNormalizer | None],
        steps: int,
        start: tuple[int, int | None] | None,
        rng_state: torch.Tensor | None,
    ) -> tuple[Share, torch.Tensor | None]:
        """``broadcast``: the agent's acting state (``acting_state``) and the observation
        normaliser (frozen); ``start``: (env seed, stream seed) to begin afresh, or None to go
        on; ``rng_state``: the trainer's global torch stream, for the worker that samples from
        it (else None). Returns the share and that stream's state after it."""
        agent_state, obs_normalizer = broadcast
        load_acting_state(self.agent, agent_state)
        if start is not None:
            self.runner.start(*start)
        if rng_state is not None:
            self.runner.rng = rng_state
        share = self.runner.collect(self.agent, obs_normalizer, steps)
        return share, self.runner.rng if rng_state is not None else None


class RayWorkers:
    """``num_workers`` ``RolloutActor`` s, each with the vector env ``make_envs()`` (a
    picklable factory) and the agent ``agent_factory(observation_space, action_space)``. Joins
    the Ray instance this process already has, else ``ray.init(address)`` (``""``: a new local
    instance, shut down by ``close``)."""

    def __init__(
        self,
        make_envs: Callable[[], VectorEnv],
        *,
        num_workers: int,
        agent_factory: Callable[[gym.Space, gym.Space], Actor],
        torch_threads: int = 1,
        address: str = "",
        worker_cpus: float = 1.0,
    ) -> None:
        self.ray = ray = require("ray", extra="ray", purpose="rollout.backend=ray")
        probe = make_envs()  # a bad env id is a config error here, not in every actor
        self.single_observation_space = probe.single_observation_space
        self.single_action_space = probe.single_action_space
        self.num_workers, self.envs_per_worker = num_workers, probe.num_envs
        self.num_envs = num_workers * probe.num_envs
        probe.close()
        self._owns_ray = False
        if not ray.is_initialized():
            self._init(address, num_workers * worker_cpus)
        try:
            have = ray.cluster_resources().get("CPU", 0.0)
            if num_workers * worker_cpus > have:
                raise ConfigError(
                    f"rollout.num_workers ({num_workers}) x rollout.worker_cpus ({worker_cpus}) "
                    f"needs {num_workers * worker_cpus:g} CPUs; the Ray cluster has {have:g}: "
                    "lower rollout.worker_cpus or add nodes"
                )
            self._remote = ray.remote(num_cpus=worker_cpus, max_restarts=0)(RolloutActor)
            self._args = (make_envs, agent_factory, torch_threads)
            self.actors = [self._spawn() for _ in range(num_workers)]
            self._pending: list[tuple[int, int | None] | None] = [None] * num_workers
            self._on_global = [False] * num_workers
            try:
                ray.get([a.ready.remote() for a in self.actors], timeout=START_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise ConfigError(
                    f"the Ray workers did not start within {START_TIMEOUT_S:g} s: does the "
                    f"cluster have {num_workers * worker_cpus:g} free CPUs?"
                ) from None
            except ray.exceptions.RayError as e:
                raise ConfigError(
                    f"a Ray rollout worker could not start: {_first_line(e)}"
                ) from None
        except BaseException:
            self.close()
            raise

    def _init(self, address: str, cpus: float) -> None:
        ray = self.ray
        # ray.init makes SIGTERM exit at once; the trainer's own handler checkpoints first
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:  # this machine only: room for every worker, even past its core count
                ray.init(
                    num_cpus=max(os.cpu_count() or 1, math.ceil(cpus)),
                    include_dashboard=False,
                    logging_level=logging.ERROR,  # a private instance: no notices on stderr
                )
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = f"config key 'rollout.ray_address': cannot join Ray at {address!r}"
            raise ConfigError(
                f"{where if address else 'cannot start Ray on this machine'}: {_first_line(e)}"
            ) from None
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self._owns_ray = True

    def _spawn(self) -> Any:
        return self._remote.remote(*self._args)

    def start(self, worker: int, *, env_seed: int, rng_seed: int | None) -> None:
        """``rng_seed`` None: the worker samples from this process's global torch stream, sent
        along with each collection and set here from what comes back."""
        self._pending[worker] = (env_seed, rng_seed)
        self._on_global[worker] = rng_seed is None

    def collect(
        self,
        agent: Actor,
        obs_normalizer: ObservationNormalizer | None,
        steps: int,
        which: Sequence[int],
    ) -> list[Share | WorkerFault]:
        ray = self.ray
        broadcast = ray.put((acting_state(agent), obs_normalizer))
        if sum(self._on_global[w] for w in which) > 1:
            raise ValueError("only one worker can sample from the global torch stream")
        futures = []
        for w in which:
            state = torch.get_rng_state() if self._on_global[w] else None
            futures.append(self.actors[w].collect.remote(broadcast, steps, self._pending[w], state))
            self._pending[w] = None
        out: list[Share | WorkerFault] = []
        for future in futures:
            try:
                share, state = ray.get(future)
                if state is not None:
                    torch.set_rng_state(state)
                out.append(share)
            except WorkerFault as e:  # the env raised (Ray re-raises it as a RayTaskError too)
                out.append(WorkerFault(str(getattr(e, "cause", e))))
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                out.append(WorkerFault(f"its process died ({_first_line(e)})"))
        return out

    def restart(self, worker: int) -> None:
        self.ray.kill(self.actors[worker], no_restart=True)
        self.actors[worker] = self._spawn()

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
