"""Rollout workers: vector envs and an agent in, a Batch of (time, env) arrays out.

A batch is gathered by ``W`` workers, each stepping its own vector env of ``E`` envs for ``T``
steps; their shares are merged in worker order along the env axis, so env ``i`` of the batch is
env ``i % E`` of worker ``i // E``. Five backends hold the workers:

- ``sync``: every worker's envs stepped in this process (``SerialVectorEnv``);
- ``subprocess``: each worker a ``SubprocessVectorEnv`` (one process per env), all stepped
  at once; the policy runs here;
- ``hybrid``: each worker a ``HybridVectorEnv``: its first env stepped here while the others
  step in their processes; the policy runs here;
- ``process``: worker 0 in this process, every other worker in a process of its own with its
  own copy of the agent (``trpo_ng.process_workers``), all collecting at once;
- ``ray``: each worker a Ray actor holding a ``SerialVectorEnv`` and its own copy of the agent
  (``trpo_ng.ray_workers``), on this machine or a cluster.

The same code turns shares into a batch whichever backend made them (``RolloutWorker``): it
merges the observation statistics, scales the rewards and computes the values in one pass,
here, exactly as for one worker. Worker 0 samples its actions from torch's global random
stream, as a loop in one process always has (so a one-worker run is what it always was; a Ray
actor gets that stream's state and hands it back); every other worker from its own stream,
seeded from the run seed and its index. A batch thus depends on the seed and the layout
(``num_workers`` x ``envs_per_worker``) only, not on the backend or on where workers ran.

A worker whose env raises or whose process dies is replaced (fresh envs or process) and its
share collected again from a fresh reset with seeds derived from the run seed, the batch
number, the worker and the attempt, at most ``max_restarts`` times per share and batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from envs.wrappers import make_wrappers
from trpo_ng.acting import Sampler
from trpo_ng.normalization import ObservationNormalizer, RewardScaler
from trpo_ng.spaces import (
    action_dtype,
    action_numpy_dtype,
    check_action_space,
    observation_dtype,
    to_env_action,
)
from trpo_ng.vector import VectorEnv, make_vector_env

if TYPE_CHECKING:
    from trpo_ng.config import Config, RolloutConfig

__all__ = [
    "Actor",
    "Batch",
    "EnvRunner",
    "LocalWorkers",
    "RolloutWorker",
    "Share",
    "WorkerError",
    "WorkerFault",
    "Workers",
    "acting_state",
    "env_actions",
    "evaluate",
    "film_episode",
    "load_acting_state",
    "make_vector_env",
    "make_workers",
    "play_episodes",
    "worker_seeds",
]


class Actor(Protocol):
    """What a rollout worker needs from an agent. Workers in other processes (the ``process``
    and ``ray`` backends) act with a copy of it, loaded each batch from ``acting_state``."""

    def act(self, obs_BD: Tensor, deterministic: bool = False) -> Tensor:
        """Actions for a batch of observations: (B,) for Discrete; (B, A) for MultiDiscrete,
        MultiBinary and Box (``trpo_ng.spaces``). An agent with ``noise_every`` > 0 (gSDE)
        also takes ``noise=``, from its ``exploration_noise(num_envs)``, drawn by the rollout
        every ``noise_every`` steps of a share. An agent may also have ``sampler(num_envs,
        steps)``: a ``trpo_ng.acting.Sampler`` giving ``act``'s samples for the share's steps
        (its noise included) from NumPy observations, or None; the rollout then uses it
        instead of ``act``."""
        ...

    def value(self, obs_BD: Tensor) -> Tensor:
        """V(s) for a batch of observations, (B,)."""
        ...


def acting_state(agent: Actor) -> dict:
    """What a copy of ``agent`` in a worker process needs to act as it does: its
    ``acting_state_dict()`` where it has one (the policy alone: it does not wait for a
    background value fit), else its ``state_dict()``."""
    get = getattr(agent, "acting_state_dict", None) or agent.state_dict  # type: ignore[attr-defined]
    return get()


def load_acting_state(agent: Actor, state: dict) -> None:
    """Load what ``acting_state`` took from another copy of the agent."""
    load = getattr(agent, "load_acting_state_dict", None) or agent.load_state_dict  # type: ignore[attr-defined]
    load(state)


@dataclass
class Batch:
    """One iteration's experience, shaped (T time steps, N envs, ...).

    ``obs_TND`` holds what the agent saw (normalised), ``rew_TN`` what it learns from (scaled).
    ``next_values_TN[t]`` is V of the observation after step t (the episode's final observation
    when step t ended it), so GAE can bootstrap truncated episodes. The policy is unchanged
    while a batch is collected, so the agent recomputes the old log-probabilities from
    ``obs_TND`` in one pass instead of storing them step by step.
    """

    obs_TND: Tensor
    act_TN: Tensor  # (T, N) or (T, N, A); int64 for (Multi)Discrete, float32 otherwise
    rew_TN: Tensor
    term_TN: Tensor
    trunc_TN: Tensor
    values_TN: Tensor
    next_values_TN: Tensor
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return self.rew_TN.numel()


@dataclass
class Share:
    """One worker's part of a batch: ``T`` steps of its ``E`` envs, as numpy arrays (cheap to
    send between processes).

    Observations are normalised with the statistics frozen for the batch; rewards are raw (the
    batch's reward scaler runs on the merged batch); values are left to the merge, which computes
    them for the whole batch in one pass.
    """

    obs_TED: np.ndarray  # as the agent saw them: float32, or uint8 images
    act_TE: np.ndarray  # (T, E) int64 or (T, E, A) int64 / float32 (``trpo_ng.spaces``)
    rew_TE: np.ndarray  # float32
    term_TE: np.ndarray
    trunc_TE: np.ndarray
    last_obs_ED: np.ndarray  # normalised observation after the last step
    finals: list[tuple[int, np.ndarray, np.ndarray]]  # (t, envs, normalised final observations)
    episodes: list[tuple[int, float, int]]  # (t, return, length) of the episodes that ended
    raw_TED: np.ndarray | None = None  # raw observations seen, for the normaliser (if any)


class WorkerFault(Exception):
    """A worker lost its share of a batch: its env raised, or its process died."""


class WorkerError(RuntimeError):
    """A share failed more often than ``max_restarts`` allows in one batch."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _env_fault(what: str, e: Exception) -> WorkerFault:
    if isinstance(e, EOFError | BrokenPipeError | ConnectionResetError):
        return WorkerFault(f"an env process died during {what} ({type(e).__name__})")
    return WorkerFault(f"env {what} raised {_one_line(e)}")


def _derive(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def worker_seeds(
    seed: int, *, worker: int, envs_per_worker: int, batch: int = 0, attempt: int = 0
) -> tuple[int, int]:
    """(seed of the worker's first env, seed of its own action-sampling stream: worker 0 uses
    torch's global stream instead until its first restart).

    At the start (``attempt`` 0) worker w's env j resets from ``seed + w * E + j``: env i of the
    batch starts from ``seed + i`` whatever the layout, as in one vector env. A worker restarted
    after a fault (``attempt`` >= 1 while collecting batch number ``batch``) starts fresh
    episodes from seeds derived from (seed, batch, worker, attempt), so a run with faults
    is reproducible too.
    """
    rng_seed = _derive(seed, batch, worker, attempt, 1)
    if attempt == 0:
        return seed + worker * envs_per_worker, rng_seed
    return _derive(seed, batch, worker, attempt, 0), rng_seed


# --------------------------------------------------------------------------- one worker


class EnvRunner:
    """One worker's vector env, its current observations and its random stream.

    ``collect`` steps the envs for ``T`` steps and returns a ``Share``; episodes continue from
    one call to the next. ``act``, ``send``, ``receive`` and ``finish`` are the same steps one
    at a time, for stepping several runners at once. Every error raised by the envs comes out
    as a ``WorkerFault``; errors of the agent pass through unchanged.
    """

    def __init__(self, envs: VectorEnv) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self._act_space = space = envs.single_action_space
        check_action_space(space)
        self._obs_space = envs.single_observation_space
        self._obs_shape = self._obs_space.shape
        self._reset_seed: int | None = None
        self._obs: np.ndarray | None = None  # normalised, what the agent sees next
        self._raw_obs: np.ndarray | None = None
        self.rng: Tensor | None = None  # torch generator state; None: torch's global stream
        self._share: Share | None = None
        self._norm: ObservationNormalizer | None = None
        self._noise: Tensor | None = None  # gSDE's exploration matrices, per env
        self._sample: Sampler | None = None  # the agent's sampler for the share, if any

    def start(self, env_seed: int, rng_seed: int | None) -> None:
        """Begin afresh at the next collection: env j resets from ``env_seed + j`` and actions
        are sampled from a stream seeded with ``rng_seed`` (None: torch's global stream)."""
        self._reset_seed, self._obs = env_seed, None
        self.rng = None if rng_seed is None else torch.Generator().manual_seed(rng_seed).get_state()

    @contextmanager
    def stream(self) -> Iterator[None]:
        """Torch's global generator runs this worker's stream inside the block."""
        if self.rng is None:
            yield
            return
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = torch.get_rng_state()
            torch.set_rng_state(outer)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if self._norm is not None:
            return self._norm.normalize(obs)
        return np.asarray(obs, dtype=observation_dtype(self._obs_space, normalized=False))

    def begin(self, obs_normalizer: ObservationNormalizer | None, steps: int) -> None:
        """Prepare a share of ``steps`` steps; reset the envs if they are to start afresh."""
        T, E = steps, self.num_envs
        obs_dtype = observation_dtype(self._obs_space, normalized=obs_normalizer is not None)
        s = self._share
        if s is None or s.obs_TED.shape[0] != T or s.obs_TED.dtype != obs_dtype:
            s = self._share = Share(
                obs_TED=np.zeros((T, E, *self._obs_shape), dtype=obs_dtype),
                act_TE=np.zeros(
                    (T, E, *self._act_space.shape), dtype=action_numpy_dtype(self._act_space)
                ),
                rew_TE=np.zeros((T, E), dtype=np.float32),
                term_TE=np.zeros((T, E), dtype=bool),
                trunc_TE=np.zeros((T, E), dtype=bool),
                last_obs_ED=np.zeros((E, *self._obs_shape), dtype=obs_dtype),
                finals=[],
                episodes=[],
            )
        s.finals, s.episodes = [], []
        self._norm = obs_normalizer
        if obs_normalizer is None:
            s.raw_TED = None
        elif s.raw_TED is None:
            s.raw_TED = np.zeros((T, E, *self._obs_shape))
        if self._obs is None:
            if self._reset_seed is None:
                raise RuntimeError("EnvRunner.start(seed) must come before the first collection")
            try:
                self._raw_obs = self.envs.reset(seed=self._reset_seed)
            except Exception as e:
                raise _env_fault("reset", e) from e
            self._obs = self._observe(self._raw_obs)

    def act(self, agent: Actor, t: int) -> np.ndarray:
        """Record step t's observation and the agent's action; returns the action for the env."""
        s, obs = self._share, self._obs
        assert s is not None and obs is not None
        s.obs_TED[t] = obs
        if s.raw_TED is not None:
            s.raw_TED[t] = self._raw_obs
        # a NaN observation still gets an action; it stays NaN in the batch, so the update that
        # would learn from it is skipped
        seen = s.obs_TED[t] if np.isfinite(obs).all() else np.nan_to_num(obs)
        if t == 0:  # the share's samples, drawn from the stream the loop runs in
            sampler = getattr(agent, "sampler", None)
            self._sample = sampler(self.num_envs, len(s.obs_TED)) if sampler else None
        if self._sample is not None:
            s.act_TE[t] = self._sample(seen, t)
        elif every := getattr(agent, "noise_every", 0):
            if t % every == 0:  # gSDE: noise held for ``every`` steps, fresh at a share's start
                self._noise = agent.exploration_noise(self.num_envs)  # type: ignore[attr-defined]
            action = agent.act(torch.from_numpy(seen), noise=self._noise)  # type: ignore[call-arg]
            s.act_TE[t] = action.numpy()
        else:
            s.act_TE[t] = agent.act(torch.from_numpy(seen)).numpy()
        return to_env_action(self._act_space, s.act_TE[t])

    def send(self, actions: np.ndarray) -> None:
        try:
            self.envs.step_async(actions)
        except Exception as e:
            raise _env_fault("step", e) from e

    def receive(self, t: int) -> None:
        s = self._share
        assert s is not None
        try:
            step = self.envs.step_wait()
        except Exception as e:
            raise _env_fault("step", e) from e
        s.rew_TE[t], s.term_TE[t], s.trunc_TE[t] = step.rew, step.term, step.trunc
        if step.trunc.any():  # bootstrap from the true final observation (Pardo et al. 2018)
            idx = np.flatnonzero(step.trunc)
            final = np.stack([step.final_obs[i] for i in idx])
            s.finals.append((t, idx, self._observe(final)))
        for ret, length in step.episodes:
            s.episodes.append((t, ret, length))
        self._raw_obs = step.obs
        self._obs = self._observe(step.obs)

    def finish(self) -> Share:
        s = self._share
        assert s is not None and self._obs is not None
        s.last_obs_ED[:] = self._obs
        self._norm, self._sample = None, None
        return s

    @torch.inference_mode()
    def collect(
        self, agent: Actor, obs_normalizer: ObservationNormalizer | None, steps: int
    ) -> Share:
        """``steps`` steps of every env with the agent, statistics frozen."""
        self.begin(obs_normalizer, steps)
        with self.stream():  # the envs draw nothing from torch: one switch for the whole share
            for t in range(steps):
                self.send(self.act(agent, t))
                self.receive(t)
        return self.finish()

    def close(self, *, terminate: bool = False) -> None:
        self.envs.close(terminate=terminate)


# --------------------------------------------------------------------------- worker sets


class Workers(Protocol):
    """``num_workers`` workers of ``envs_per_worker`` envs each, wherever they run."""

    num_workers: int
    envs_per_worker: int
    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space

    def start(self, worker: int, *, env_seed: int, rng_seed: int | None) -> None:
        """The worker starts afresh at its next collection (``EnvRunner.start``)."""
        ...

    def collect(
        self,
        agent: Actor,
        obs_normalizer: ObservationNormalizer | None,
        steps: int,
        which: Sequence[int],
    ) -> list[Share | WorkerFault]:
        """A share from each worker in ``which`` (in that order), or the fault that lost it."""
        ...

    def restart(self, worker: int) -> None:
        """Replace the worker: new envs (and processes) or a new actor."""
        ...

    def close(self) -> None: ...


class LocalWorkers:
    """Workers whose policy runs in this process, each an ``EnvRunner`` over its own vector env
    from ``make_envs``. ``lockstep``: step all workers' envs at once each time step (for envs
    in subprocesses); otherwise one worker after the other (for envs in this process)."""

    def __init__(
        self,
        make_envs: Callable[[], VectorEnv] | None,
        *,
        num_workers: int,
        lockstep: bool,
        envs: Sequence[VectorEnv] = (),
    ) -> None:
        """``envs``: vector envs already made (then ``make_envs`` makes the rest, and the
        replacements at a restart; None: a worker cannot be restarted)."""
        self._make_envs = make_envs
        self.lockstep = lockstep
        self.runners: list[EnvRunner] = []
        try:
            for i in range(num_workers):
                if i < len(envs):
                    self.runners.append(EnvRunner(envs[i]))
                else:
                    assert make_envs is not None
                    self.runners.append(EnvRunner(make_envs()))
        except BaseException:
            self.close()
            raise
        first = self.runners[0]
        self.num_workers = num_workers
        self.envs_per_worker = first.num_envs
        self.num_envs = num_workers * first.num_envs
        self.single_observation_space = first.envs.single_observation_space
        self.single_action_space = first.envs.single_action_space

    def start(self, worker: int, *, env_seed: int, rng_seed: int | None) -> None:
        self.runners[worker].start(env_seed, rng_seed)

    @torch.inference_mode()
    def collect(
        self,
        agent: Actor,
        obs_normalizer: ObservationNormalizer | None,
        steps: int,
        which: Sequence[int],
    ) -> list[Share | WorkerFault]:
        if not self.lockstep or len(which) == 1:
            out: list[Share | WorkerFault] = []
            for w in which:
                try:
                    out.append(self.runners[w].collect(agent, obs_normalizer, steps))
                except WorkerFault as e:
                    out.append(e)
            return out
        results: dict[int, Share | WorkerFault] = {}
        live = []
        for w in which:
            try:
                self.runners[w].begin(obs_normalizer, steps)
                live.append(w)
            except WorkerFault as e:
                results[w] = e
        for t in range(steps):
            sent = []
            for w in live:
                runner = self.runners[w]
                with runner.stream():
                    actions = runner.act(agent, t)
                try:
                    runner.send(actions)
                    sent.append(w)
                except WorkerFault as e:
                    results[w] = e
            live = []
            for w in sent:
                try:
                    self.runners[w].receive(t)
                    live.append(w)
                except WorkerFault as e:
                    results[w] = e
        for w in live:
            results[w] = self.runners[w].finish()
        return [results[w] for w in which]

    def restart(self, worker: int) -> None:
        if self._make_envs is None:
            raise WorkerError("these envs were made outside the rollout and cannot be remade")
        old = self.runners[worker]
        try:
            old.close(terminate=True)
        except Exception:  # a dead or broken env may fail to close; it is dropped anyway
            pass
        self.runners[worker] = EnvRunner(self._make_envs())

    def close(self) -> None:
        for runner in self.runners:
            try:
                runner.close()
            except Exception:
                try:
                    runner.close(terminate=True)
                except Exception:  # a dead env process: nothing left to close
                    pass


def envs_per_worker(rollout: RolloutConfig) -> int:
    """``rollout.num_envs`` is the batch's env count, split evenly over the workers."""
    return rollout.envs_per_worker or rollout.num_envs // rollout.num_workers


def make_workers(
    cfg: Config,
    *,
    agent_factory: Callable[[gym.Space, gym.Space], Actor] | None = None,
) -> Workers:
    """The workers ``cfg.rollout`` asks for. ``agent_factory(observation_space,
    action_space)`` builds each Ray actor's copy of the agent (it must pickle; weights come
    from the trainer's agent every batch). Every worker's envs come from ``make_vector_env``
    (in a Ray actor too, where they are stepped in the actor's process), each env with the
    wrappers ``cfg.wrappers`` asks for (``envs.wrappers.make_wrappers``; they pickle)."""
    r = cfg.rollout
    per_worker = envs_per_worker(r)
    wrappers = make_wrappers(atari=cfg.wrappers.atari, frame_stack=cfg.wrappers.frame_stack)
    if r.backend in ("sync", "subprocess", "hybrid"):
        return LocalWorkers(
            partial(
                make_vector_env,
                cfg.env_id,
                num_envs=per_worker,
                backend=r.backend,
                wrappers=wrappers,
                env_kwargs=cfg.env_kwargs,
            ),
            num_workers=r.num_workers,
            lockstep=r.backend != "sync",
        )
    if r.backend in ("process", "ray") and agent_factory is None:
        raise ValueError(f"the {r.backend} backend needs an agent_factory")
    # a worker with its own agent steps its envs where it runs
    own_envs = partial(
        make_vector_env,
        cfg.env_id,
        num_envs=per_worker,
        backend="sync",
        wrappers=wrappers,
        env_kwargs=cfg.env_kwargs,
    )
    if r.backend == "process":
        from trpo_ng.process_workers import ProcessWorkers

        return ProcessWorkers(
            own_envs,
            num_workers=r.num_workers,
            agent_factory=agent_factory,
            torch_threads=cfg.torch_threads,
        )
    if r.backend == "ray":
        from trpo_ng.ray_workers import RayWorkers

        return RayWorkers(
            own_envs,
            num_workers=r.num_workers,
            agent_factory=agent_factory,
            torch_threads=cfg.torch_threads,
            address=r.ray_address,
            worker_cpus=r.worker_cpus,
        )
    raise ValueError(f"unknown rollout backend {r.backend!r}")


# --------------------------------------------------------------------------- the batch


class RolloutWorker:
    """Gathers ``steps_per_env`` steps of every env per call to ``collect`` into one Batch.

    ``envs``: one vector env (one worker in this process) or a worker set (``make_workers``).
    Worker 0 samples from torch's global random stream, the others each from their own
    (``worker_seeds``); a restarted worker from a new stream of its own. The buffer is
    allocated once; episodes continue across calls. An observation normaliser and a reward
    scaler sit between env and agent; both merge their statistics once per batch (from training
    data only), so the policy sees one normalisation throughout a batch. ``faults``: what made
    workers restart during the last ``collect`` (``restarts`` of them).
    """

    def __init__(
        self,
        envs: VectorEnv | Workers,
        *,
        steps_per_env: int,
        seed: int,
        obs_normalizer: ObservationNormalizer | None = None,
        reward_scaler: RewardScaler | None = None,
        max_restarts: int = 0,
    ) -> None:
        if hasattr(envs, "num_workers"):
            self.workers: Workers = envs
        else:
            self.workers = LocalWorkers(None, num_workers=1, lockstep=False, envs=[envs])
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.max_restarts = max_restarts
        self.faults: list[str] = []
        self.T, self.N = steps_per_env, self.workers.num_envs
        self._seed = seed
        self._batches = 0  # batches collected, for the seeds of restarted workers
        self._worker0_global = True
        obs_space = self.workers.single_observation_space
        space = self.workers.single_action_space
        obs_dtype = observation_dtype(obs_space, normalized=obs_normalizer is not None)
        T, N = self.T, self.N
        self._buf = Batch(
            obs_TND=torch.from_numpy(np.zeros((T, N, *obs_space.shape), dtype=obs_dtype)),
            act_TN=torch.zeros((T, N, *space.shape), dtype=action_dtype(space)),
            rew_TN=torch.zeros((T, N)),
            term_TN=torch.zeros((T, N), dtype=torch.bool),
            trunc_TN=torch.zeros((T, N), dtype=torch.bool),
            values_TN=torch.zeros((T, N)),
            next_values_TN=torch.zeros((T, N)),
        )
        # numpy views of the buffer: writes of the shares without torch dispatch
        self._np = {k: v.numpy() for k, v in vars(self._buf).items() if isinstance(v, Tensor)}

    @property
    def restarts(self) -> int:
        return len(self.faults)

    def _start(self, worker: int, *, attempt: int) -> None:
        env_seed, rng_seed = worker_seeds(
            self._seed,
            worker=worker,
            envs_per_worker=self.workers.envs_per_worker,
            batch=self._batches,
            attempt=attempt,
        )
        on_global = worker == 0 and attempt == 0  # torch's global stream
        self.workers.start(worker, env_seed=env_seed, rng_seed=None if on_global else rng_seed)
        if worker == 0:
            self._worker0_global = on_global

    def collect(self, agent: Actor) -> Batch:
        W, T = self.workers.num_workers, self.T
        if self._batches == 0:
            for w in range(W):
                self._start(w, attempt=0)
        global_state = torch.get_rng_state()
        results = self.workers.collect(agent, self.obs_normalizer, T, range(W))
        attempts = [0] * W
        failed = [w for w, r in enumerate(results) if isinstance(r, WorkerFault)]
        if 0 in failed and self._worker0_global:  # undo its draws, wherever it ran
            torch.set_rng_state(global_state)
        self.faults = []
        while failed:
            for w in failed:
                fault = results[w]
                if attempts[w] == self.max_restarts:
                    tries = attempts[w] + 1
                    raise WorkerError(
                        f"rollout worker {w} lost its share of the batch {tries} time"
                        f"{'s' if tries > 1 else ''} (rollout.max_worker_restarts="
                        f"{self.max_restarts}); last: {fault}"
                    ) from fault
                attempts[w] += 1
                self.faults.append(f"rollout worker {w} restarted: {fault}")
                self.workers.restart(w)
                self._start(w, attempt=attempts[w])
            for w, r in zip(
                failed,
                self.workers.collect(agent, self.obs_normalizer, T, failed),
                strict=True,
            ):
                results[w] = r
            failed = [w for w in failed if isinstance(results[w], WorkerFault)]
        shares = [r for r in results if isinstance(r, Share)]
        batch = self._merge(shares, agent, restarted=[w for w in range(W) if attempts[w]])
        self._batches += 1
        return batch

    @torch.inference_mode()
    def _merge(self, shares: list[Share], agent: Actor, *, restarted: list[int]) -> Batch:
        """The batch from the shares, in worker order; statistics, reward scale and values as
        one worker gathering every env would have them."""
        b, a = self._buf, self._np
        T, N, E = self.T, self.N, self.workers.envs_per_worker
        finals: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (t, worker, envs, obs)
        episodes: list[tuple[int, int, float, int]] = []  # (t, worker, return, length)
        for w, s in enumerate(shares):
            cols = slice(w * E, (w + 1) * E)
            a["obs_TND"][:, cols] = s.obs_TED
            a["act_TN"][:, cols] = s.act_TE
            a["rew_TN"][:, cols] = s.rew_TE
            a["term_TN"][:, cols] = s.term_TE
            a["trunc_TN"][:, cols] = s.trunc_TE
            finals += [(t, w, idx + w * E, obs) for t, idx, obs in s.finals]
            episodes += [(t, w, ret, length) for t, ret, length in s.episodes]
        finals.sort(key=lambda f: (f[0], f[1]))  # time, then env: as one vector env has them
        episodes.sort(key=lambda e: (e[0], e[1]))
        last_obs = np.concatenate([s.last_obs_ED for s in shares])
        if self.obs_normalizer is not None:  # statistics for the next batch
            seen_TND = np.concatenate([s.raw_TED for s in shares], axis=1)
            self.obs_normalizer.update(seen_TND.reshape(-1, *seen_TND.shape[2:]))
        if self.reward_scaler is not None:
            for w in restarted:  # their episodes started afresh
                self.reward_scaler.returns_N[w * E : (w + 1) * E] = 0.0
            a["rew_TN"][:] = self.reward_scaler(a["rew_TN"], a["term_TN"] | a["trunc_TN"])
        # values in one batched pass each: the value function is fixed during collection
        b.values_TN.copy_(agent.value(b.obs_TND.flatten(0, 1)).view(T, N))
        following = torch.cat([b.values_TN[1:], agent.value(torch.from_numpy(last_obs))[None]])
        final_values_TN = torch.zeros((T, N))
        if finals:
            values = agent.value(torch.from_numpy(np.concatenate([f[3] for f in finals])))
            for (t, _, idx, _), v in zip(
                finals, values.split([len(f[2]) for f in finals]), strict=True
            ):
                final_values_TN[t, idx] = v
        ended = b.term_TN | b.trunc_TN
        b.next_values_TN.copy_(torch.where(ended, final_values_TN, following))
        b.episode_returns = [e[2] for e in episodes]
        b.episode_lengths = [e[3] for e in episodes]
        return b

    def close(self) -> None:
        self.workers.close()


@torch.inference_mode()
def evaluate(
    agent: Actor,
    envs: gym.Env | Sequence[gym.Env],
    *,
    episodes: int,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> list[float]:
    """Returns of ``episodes`` deterministic episodes (the distribution's mode), episode ``i``
    from ``reset(seed=seed + i)``, observations normalised with the training statistics,
    frozen. Several envs play that many episodes at once, one policy pass a step for all
    (``play_episodes``); on the NumPy acting path an observation's mode does not depend on its
    batch (``Policy.act``), so an MLP policy's returns are those of one env playing them in
    turn, bit for bit."""
    space = (envs if isinstance(envs, gym.Env) else envs[0]).action_space
    act = partial(env_actions, agent, space, obs_normalizer=obs_normalizer)
    returns, _ = play_episodes(act, envs, range(seed, seed + episodes))
    return returns


@torch.inference_mode()
def env_actions(
    agent: Actor,
    space: gym.Space,
    obs_BD: np.ndarray,
    obs_normalizer: ObservationNormalizer | None = None,
    *,
    deterministic: bool = True,
) -> np.ndarray:
    """The agent's env actions for a batch of raw observations: normalised with the (frozen)
    training statistics, the policy's mode or a sample, in the form ``space`` takes."""
    if obs_normalizer is not None:
        obs_BD = obs_normalizer.normalize(obs_BD)
    obs = torch.as_tensor(obs_BD, dtype=torch.float32)
    return to_env_action(space, agent.act(obs, deterministic=deterministic).numpy())


EpisodeCallback = Callable[[int, float, int], None]  # (episode index, return, length)


def play_episodes(
    act: Callable[[np.ndarray], np.ndarray],
    envs: gym.Env | Sequence[gym.Env],
    seeds: Sequence[int],
    on_episode: EpisodeCallback | None = None,
    reset: Callable[[gym.Env, int], np.ndarray] | None = None,
) -> tuple[list[float], list[int]]:
    """(returns, lengths) of one episode per seed, episode ``i`` from ``reset(seed=seeds[i])``
    (or ``reset(env, seeds[i])``). The envs play the episodes in waves of ``len(envs)``, in
    lockstep: ``act`` maps the stacked observations of the envs still playing to their env
    actions, so a step costs one policy pass however many episodes are running.
    ``on_episode`` gets the episodes in order, each once it and those before it have ended."""
    envs = [envs] if isinstance(envs, gym.Env) else list(envs)
    reset = reset or (lambda env, seed: env.reset(seed=seed)[0])
    returns, lengths = [0.0] * len(seeds), [0] * len(seeds)
    ended = [False] * len(seeds)
    reported = 0  # episodes handed to on_episode
    for first in range(0, len(seeds), len(envs)):
        playing = dict(zip(range(first, len(seeds)), envs, strict=False))  # up to len(envs)
        obs = {i: reset(env, seeds[i]) for i, env in playing.items()}
        while playing:
            ids = list(playing)
            actions = act(np.stack([obs[i] for i in ids]))
            for i, action in zip(ids, actions, strict=True):
                obs[i], reward, terminated, truncated, _ = playing[i].step(action)
                returns[i] += float(reward)
                lengths[i] += 1
                if terminated or truncated:
                    del playing[i]
                    ended[i] = True
            while reported < len(seeds) and ended[reported]:
                if on_episode is not None:
                    on_episode(reported, returns[reported], lengths[reported])
                reported += 1
    return returns, lengths


def film_episode(
    agent: Actor,
    env: gym.Env,
    *,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> list[np.ndarray]:
    """``env.render()`` (an ``rgb_array`` env) before every step of one deterministic episode
    from ``reset(seed=seed)``, the episode ``evaluate`` plays first."""
    frames: list[np.ndarray] = []

    def act(obs_BD: np.ndarray) -> np.ndarray:
        frames.append(env.render())
        return env_actions(agent, env.action_space, obs_BD, obs_normalizer)

    play_episodes(act, env, [seed])
    return frames
