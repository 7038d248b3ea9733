"""Vector environments behind one small interface: ``reset(seed)`` and ``step(actions)``.

All kinds reset an episode in the same step it ends and hand back its final observation, the
way the rollout needs it for bootstrapping at a time limit. ``step`` is ``step_async`` then
``step_wait``, so a rollout can step several vector envs at once.

- ``SerialVectorEnv``: N envs stepped in a loop in this process. It writes into preallocated
  arrays and merges no info dicts, which is most of what Gymnasium's SyncVectorEnv spends
  per step on small envs.
- ``SubprocessVectorEnv``: one process per env, all stepping at once; a step is two small
  raw-byte pipe messages per env (Gymnasium's AsyncVectorEnv pickles every step and merges
  info dicts, which costs more than a small MuJoCo env's physics).
- ``HybridVectorEnv``: env 0 stepped in this process while the others step in their own
  processes, which poll between steps instead of sleeping.

All step each env through ``step_and_reset`` with Gymnasium's RecordEpisodeStatistics, so
they give the same numbers for the same seeds.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics

from envs.wrappers import EnvWrapper, make_env


@dataclass
class Step:
    obs: np.ndarray  # (N, ...) next observations; the reset one where an episode ended
    rew: np.ndarray  # (N,)
    term: np.ndarray  # (N,) bool
    trunc: np.ndarray  # (N,) bool
    final_obs: dict[int, np.ndarray] = field(default_factory=dict)  # env -> last observation
    episodes: list[tuple[float, int]] = field(default_factory=list)  # (return, length)


class SerialVectorEnv:
    """``num_envs`` copies of an env, stepped one after another in this process."""

    def __init__(self, make_env: Callable[[], gym.Env], num_envs: int) -> None:
        self.envs = [RecordEpisodeStatistics(make_env()) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        space = self.single_observation_space
        if not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
            self.close()
            raise ValueError(unsupported_observation_space(space))
        self._obs = np.zeros((num_envs, *space.shape), dtype=space.dtype)
        self._rew = np.zeros(num_envs)
        self._term = np.zeros(num_envs, dtype=bool)
        self._trunc = np.zeros(num_envs, dtype=bool)
        self._actions: np.ndarray | None = None

    def reset(self, *, seed: int) -> np.ndarray:
        """Env i starts from ``seed + i``, as Gymnasium's vector envs do."""
        for i, env in enumerate(self.envs):
            self._obs[i], _ = env.reset(seed=seed + i)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> Step:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> Step:
        actions, self._actions = self._actions, None
        if actions is None:
            raise RuntimeError("step_wait without step_async")
        final_obs: dict[int, np.ndarray] = {}
        episodes: list[tuple[float, int]] = []
        for i, env in enumerate(self.envs):
            self._obs[i], self._rew[i], self._term[i], self._trunc[i], final, episode = (
                step_and_reset(env, actions[i])
            )
            if final is not None and episode is not None:
                final_obs[i] = final
                episodes.append(episode)
        return Step(
            self._obs.copy(),
            self._rew.copy(),
            self._term.copy(),
            self._trunc.copy(),
            final_obs,
            episodes,
        )

    def close(self, *, terminate: bool = False) -> None:
        for env in self.envs:
            env.close()


def step_and_reset(
    env: gym.Env, action: np.ndarray
) -> tuple[np.ndarray, float, bool, bool, np.ndarray | None, tuple[float, int] | None]:
    """One step of an env wrapped in RecordEpisodeStatistics; where the episode ends, the env
    is reset in the same step: (next or reset observation, reward, terminated, truncated,
    and where it ended: the final observation and (episode return, length), else None)."""
    obs, rew, term, trunc, info = env.step(action)
    if not (term or trunc):
        return obs, float(rew), False, False, None, None
    episode = (float(info["episode"]["r"]), int(info["episode"]["l"]))
    reset_obs, _ = env.reset()
    return reset_obs, float(rew), bool(term), bool(trunc), obs, episode


# Messages of the env processes, raw bytes behind a one-byte kind: no pickling per step.
_STEP, _RESET, _CLOSE = b"s", b"r", b"c"  # to the env
_OK, _DONE, _ERROR = b"o", b"d", b"e"  # back: obs | obs + final obs + episode | error text
_HEAD = struct.Struct("<d??")  # reward, terminated, truncated
_EPISODE = struct.Struct("<dq")  # return, length


def _serve(conn: Connection, make_env: Callable[[], gym.Env], spin_s: float = 0.0) -> None:
    """An env process: builds the env, sends its spaces, then answers messages until closed,
    polling for ``spin_s`` seconds after each answer before it sleeps (``poll``)."""
    try:
        env = RecordEpisodeStatistics(make_env())
        obs_space, act_space = env.observation_space, env.action_space
        conn.send((obs_space, act_space))
    except Exception as e:
        conn.send(_describe(e))
        return
    as_obs = partial(np.asarray, dtype=obs_space.dtype)
    try:
        while True:
            poll(conn, spin_s)
            msg = conn.recv_bytes()
            kind, body = msg[:1], msg[1:]
            if kind == _CLOSE:
                return
            try:
                if kind == _RESET:
                    obs, _ = env.reset(seed=int.from_bytes(body, "little", signed=True))
                    conn.send_bytes(_OK + as_obs(obs).tobytes())
                    continue
                action = np.frombuffer(body, act_space.dtype).reshape(act_space.shape)
                obs, rew, term, trunc, final, episode = step_and_reset(
                    env, action[()] if action.ndim == 0 else action
                )
            except Exception as e:
                conn.send_bytes(_ERROR + _describe(e).encode())
                continue
            head = _HEAD.pack(rew, term, trunc) + as_obs(obs).tobytes()
            if final is None or episode is None:
                conn.send_bytes(_OK + head)
            else:
                conn.send_bytes(_DONE + head + as_obs(final).tobytes() + _EPISODE.pack(*episode))
    except (EOFError, OSError, KeyboardInterrupt):  # the trainer went away
        return
    finally:
        env.close()


def poll(conn: Connection, spin_s: float) -> None:
    """Return once ``conn`` has a message or ``spin_s`` seconds have passed, without sleeping:
    a process woken by the OS for each message adds its wake-up (tens of microseconds on a
    VM) to every step, more than a small MuJoCo env's physics; polling keeps a core busy."""
    if spin_s > 0:
        end = time.perf_counter() + spin_s
        while not conn.poll(0) and time.perf_counter() < end:
            pass


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class SubprocessVectorEnv:
    """``num_envs`` envs, each in its own process, all stepped at once. Each env takes its
    action and answers with its step over its own pipe as raw bytes (no pickling, no info
    dicts), so a step costs two small pipe messages per env on top of the env's own work."""

    def __init__(
        self, make_env: Callable[[], gym.Env], num_envs: int, *, spin_s: float = 0.0
    ) -> None:
        """``spin_s``: how long the env processes, and this one waiting for their replies,
        poll before they sleep (``poll``); 0 where there is no core to spare for each."""
        ctx = mp.get_context()
        self._spin_s = spin_s
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        # the processes ignore Ctrl-C: the trainer, not the terminal, decides when they stop
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _ in range(num_envs):
                conn, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, make_env, spin_s), daemon=True)
                proc.start()
                child.close()
                self._conns.append(conn)
                self._procs.append(proc)
        finally:
            signal.signal(signal.SIGINT, previous)
        try:
            spaces = [self._recv_object(i) for i in range(num_envs)]
        except BaseException:
            self.close(terminate=True)
            raise
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = spaces[0]
        space = self.single_observation_space
        if not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
            self.close()
            raise ValueError(unsupported_observation_space(space))
        self._obs_dtype, self._obs_shape = space.dtype, space.shape
        self._obs_size = int(np.prod(space.shape, dtype=np.int64))
        self._obs_bytes = self._obs_size * space.dtype.itemsize
        self._act_dtype = self.single_action_space.dtype

    def _recv_object(self, i: int) -> tuple[gym.Space, gym.Space]:
        try:
            reply = self._conns[i].recv()
        except (EOFError, OSError) as e:
            raise self._died(i) from e
        if isinstance(reply, str):
            raise RuntimeError(f"env {i} could not be made: {reply}")
        return reply

    def _died(self, i: int) -> RuntimeError:
        self._procs[i].join(timeout=1.0)
        return RuntimeError(f"env process {i} died (exit code {self._procs[i].exitcode})")

    def _send(self, i: int, msg: bytes) -> None:
        try:
            self._conns[i].send_bytes(msg)
        except OSError as e:
            raise self._died(i) from e

    def _recv(self, i: int) -> bytes:
        try:
            poll(self._conns[i], self._spin_s)
            reply = self._conns[i].recv_bytes()
        except (EOFError, OSError) as e:
            raise self._died(i) from e
        if reply[:1] == _ERROR:
            raise RuntimeError(f"env {i} raised {reply[1:].decode()}")
        return reply

    def _array(self, reply: bytes, offset: int) -> np.ndarray:
        """The observation at ``offset`` of a reply (read-only, it views the bytes)."""
        return np.frombuffer(reply, self._obs_dtype, self._obs_size, offset).reshape(
            self._obs_shape
        )

    def reset(self, *, seed: int) -> np.ndarray:
        """Env i starts from ``seed + i``."""
        for i in range(self.num_envs):
            self._send(i, _RESET + (seed + i).to_bytes(8, "little", signed=True))
        return np.stack([self._array(self._recv(i), 1) for i in range(self.num_envs)])

    def step(self, actions: np.ndarray) -> Step:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=self._act_dtype)
        for i in range(self.num_envs):
            self._send(i, _STEP + actions[i].tobytes())

    def step_wait(self) -> Step:
        n = self.num_envs
        obs = np.empty((n, *self._obs_shape), dtype=self._obs_dtype)
        rew, term, trunc = np.empty(n), np.empty(n, dtype=bool), np.empty(n, dtype=bool)
        step = Step(obs, rew, term, trunc)
        start = 1 + _HEAD.size
        error: RuntimeError | None = None
        for i in range(n):  # every reply is read, so a failing env leaves none behind
            try:
                reply = self._recv(i)
            except RuntimeError as e:
                error = error or e
                continue
            rew[i], term[i], trunc[i] = _HEAD.unpack_from(reply, 1)
            obs[i] = self._array(reply, start)
            if reply[:1] == _DONE:
                step.final_obs[i] = self._array(reply, start + self._obs_bytes).copy()
                step.episodes.append(_EPISODE.unpack_from(reply, start + 2 * self._obs_bytes))
        if error is not None:
            raise error
        return step

    def close(self, *, terminate: bool = False) -> None:
        """``terminate``: kill the env processes instead of asking them to close (after a
        fault, when one of them may be dead or stuck)."""
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if not terminate and proc.is_alive():
                try:
                    conn.send_bytes(_CLOSE)
                except OSError:
                    pass
                proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._conns, self._procs = [], []


HYBRID_SPIN_S = 500e-6
"""How long ``HybridVectorEnv``'s processes poll before they sleep: longer than an acting
step plus a small MuJoCo env's step (~0.2-0.4 ms), so that during collection they never sleep,
and short against an update (~0.1 s), during which they do. On the 2-core dev VM, Hopper with
2 envs: interleaved single runs 1.0-1.45x the steps/s of the sync backend with polling (the
median of three 1.01x), and slower than sync without it."""


class HybridVectorEnv:
    """Env 0 in this process, the others one process each (``SubprocessVectorEnv``): the
    other envs step while this process steps env 0, so on a machine with a core to spare for
    each other env, a step takes about one env's time instead of ``num_envs``'. The processes
    poll instead of sleeping between steps (``HYBRID_SPIN_S``). Same numbers as the other
    vector envs for the same seeds."""

    def __init__(
        self, make_env: Callable[[], gym.Env], num_envs: int, *, spin_s: float = HYBRID_SPIN_S
    ) -> None:
        if num_envs < 2:
            raise ValueError(f"the hybrid vector env needs at least 2 envs, got {num_envs}")
        self.local = SerialVectorEnv(make_env, 1)
        try:
            self.remote = SubprocessVectorEnv(make_env, num_envs - 1, spin_s=spin_s)
        except BaseException:
            self.local.close()
            raise
        self.num_envs = num_envs
        self.single_observation_space = self.local.single_observation_space
        self.single_action_space = self.local.single_action_space

    def reset(self, *, seed: int) -> np.ndarray:
        """Env i starts from ``seed + i``."""
        return np.concatenate([self.local.reset(seed=seed), self.remote.reset(seed=seed + 1)])

    def step(self, actions: np.ndarray) -> Step:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self.remote.step_async(actions[1:])
        self.local.step_async(actions[:1])

    def step_wait(self) -> Step:
        try:
            local = self.local.step_wait()
        except Exception:
            self.remote.step_wait()  # read the other envs' replies, none is left behind
            raise
        remote = self.remote.step_wait()
        return Step(
            np.concatenate([local.obs, remote.obs]),
            np.concatenate([local.rew, remote.rew]),
            np.concatenate([local.term, remote.term]),
            np.concatenate([local.trunc, remote.trunc]),
            local.final_obs | {i + 1: obs for i, obs in remote.final_obs.items()},
            local.episodes + remote.episodes,
        )

    def close(self, *, terminate: bool = False) -> None:
        try:
            self.local.close(terminate=terminate)
        finally:
            self.remote.close(terminate=terminate)


VectorEnv = SerialVectorEnv | SubprocessVectorEnv | HybridVectorEnv


def unsupported_observation_space(space: gym.Space) -> str:
    return (
        f"unsupported observation space {space}; trpo-ng supports Box (flat or image), "
        "Discrete, and Dict (flattened by the env wrappers)"
    )


def make_vector_env(
    env_id: str,
    *,
    num_envs: int,
    backend: str,
    wrappers: Sequence[EnvWrapper] = (),
    env_kwargs: Mapping[str, Any] | None = None,
) -> VectorEnv:
    """``backend``: "sync" (in this process) or "subprocess"; each env is
    ``gym.make(env_id, **env_kwargs)`` with ``wrappers`` applied in order
    (``envs.wrappers.make_wrappers``)."""
    one_env = partial(make_env, env_id, wrappers, **(env_kwargs or {}))
    if backend == "sync":
        return SerialVectorEnv(one_env, num_envs)
    if backend == "subprocess":
        return SubprocessVectorEnv(one_env, num_envs)
    if backend == "hybrid":
        return HybridVectorEnv(one_env, num_envs)
    raise ValueError(f"unknown rollout backend {backend!r}")
