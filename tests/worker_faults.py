"""Envs that fail on purpose and a deterministic agent, for the rollout-worker tests.

Registered on import. Ray's worker processes import this module themselves through the
``worker_faults:`` prefix of the env ids (tests/ is on their PYTHONPATH in tests/test_ray.py).
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

FAULT_SEED = 3  # env 3 of a run seeded 0: worker 1 of a 2 x 2 layout
FAULT_STEP = 100  # its 100th step: step 36 of the second batch of 64 steps


class FaultyCartPole(CartPoleEnv):
    """CartPole that fails at its ``fault_step``-th step after a reset with seed ``fault_seed``
    (after any seeded reset when None): it raises (``mode`` "raise") or ends its process at
    once (``mode`` "exit", as a crash or an OOM kill would)."""

    def __init__(
        self,
        fault_seed: int | None = FAULT_SEED,
        fault_step: int = FAULT_STEP,
        mode: str = "raise",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.fault_seed, self.fault_step, self.mode = fault_seed, fault_step, mode
        self.armed, self.count = False, 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.armed = self.fault_seed is None or seed == self.fault_seed
            self.count = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.count += 1
        if self.armed and self.count == self.fault_step:
            if self.mode == "exit":
                os._exit(3)
            raise RuntimeError(f"injected fault at step {self.count}")
        return super().step(action)


ENVS = {
    "RaiseCartPole-v0": {"mode": "raise"},
    "ExitCartPole-v0": {"mode": "exit"},
    # env 0: worker 0, the one sampling from torch's global stream
    "Raise0CartPole-v0": {"mode": "raise", "fault_seed": 0},
    "Exit0CartPole-v0": {"mode": "exit", "fault_seed": 0},
    "AlwaysRaiseCartPole-v0": {"mode": "raise", "fault_seed": None, "fault_step": 10},
}


def register() -> None:
    for name, kwargs in ENVS.items():
        if name not in gym.registry:
            gym.register(name, entry_point=FaultyCartPole, kwargs=kwargs, max_episode_steps=500)


register()


class LeanAgent:
    """Pushes the cart the way the pole leans: no randomness, so the batch it collects does not
    depend on how the envs are split into workers. Values: a fixed linear function."""

    def __init__(self, observation_space=None, action_space=None):
        pass

    def act(self, obs_BD, deterministic=False):
        return (obs_BD[:, 2] > 0).long()

    def value(self, obs_BD):
        return obs_BD @ torch.tensor([0.5, -1.0, 2.0, 0.25])

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def cartpole_next(obs_4: np.ndarray, action: int) -> np.ndarray:
    """CartPole-v1's dynamics (Euler, tau 0.02), to check that a column is one trajectory."""
    x, x_dot, theta, theta_dot = (float(v) for v in obs_4)
    force = 10.0 if action == 1 else -10.0
    cos, sin = np.cos(theta), np.sin(theta)
    temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
    theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
    x_acc = temp - 0.05 * theta_acc * cos / 1.1
    return np.array(
        [
            x + 0.02 * x_dot,
            x_dot + 0.02 * x_acc,
            theta + 0.02 * theta_dot,
            theta_dot + 0.02 * theta_acc,
        ]
    )


def assert_continuous_trajectories(batches, *, fresh=()) -> None:
    """Every env column of consecutive CartPole batches (raw observations) is one trajectory:
    each row follows from the one before by the dynamics, except right after an episode ended
    or at a (batch, env) in ``fresh`` (a restarted worker's envs), where it is a reset state."""
    obs = np.concatenate([b["obs_TND"].numpy() for b in batches])
    act = np.concatenate([b["act_TN"].numpy() for b in batches])
    ended = np.concatenate([(b["term_TN"] | b["trunc_TN"]).numpy() for b in batches])
    T = batches[0]["obs_TND"].shape[0]
    restarted = {(i * T, n) for i, n in fresh}
    for n in range(obs.shape[1]):
        for t in range(1, obs.shape[0]):
            if ended[t - 1, n] or (t, n) in restarted:
                assert np.all(np.abs(obs[t, n]) <= 0.05), (t, n, obs[t, n])
            else:
                np.testing.assert_allclose(
                    obs[t, n],
                    cartpole_next(obs[t - 1, n], act[t - 1, n]),
                    atol=1e-4,
                    err_msg=f"step {t} of env {n} does not follow from step {t - 1}",
                )


def make_test_workers(backend, *, env_id, num_workers, envs_per_worker, agent_factory):
    from functools import partial

    from trpo_ng.rollout import LocalWorkers, make_vector_env

    if backend == "ray":
        from trpo_ng.ray_workers import RayWorkers

        return RayWorkers(
            partial(make_vector_env, env_id, num_envs=envs_per_worker, backend="sync"),
            num_workers=num_workers,
            agent_factory=agent_factory,
            worker_cpus=0.5,
        )
    if backend == "process":
        from trpo_ng.process_workers import ProcessWorkers

        return ProcessWorkers(
            partial(make_vector_env, env_id, num_envs=envs_per_worker, backend="sync"),
            num_workers=num_workers,
            agent_factory=agent_factory,
        )
    return LocalWorkers(
        partial(make_vector_env, env_id, num_envs=envs_per_worker, backend=backend),
        num_workers=num_workers,
        lockstep=backend == "subprocess",
    )


def collect_batches(
    backend,
    *,
    workers=2,
    envs=2,
    env_id="CartPole-v1",
    steps=64,
    iterations=2,
    seed=3,
    agent_factory=None,
    normalize=True,
    max_restarts=3,
):
    """Batches (copied to dicts), the statistics after them and the restarts per batch, from
    ``workers`` x ``envs`` envs on ``backend`` ("legacy": one plain vector env of
    ``workers * envs`` envs). The TRPO agent's weights come from torch seed 0."""
    from agents import TRPOAgent

    agent_factory = agent_factory or TRPOAgent
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trainer runs (torch_threads: 1): tiny ops, no thread pool
    try:
        return _collect(
            backend,
            workers,
            envs,
            env_id,
            steps,
            iterations,
            seed,
            agent_factory,
            normalize,
            max_restarts,
        )
    finally:
        torch.set_num_threads(threads)


def _collect(
    backend, workers, envs, env_id, steps, iterations, seed, agent_factory, normalize, max_restarts
):
    from trpo_ng.normalization import ObservationNormalizer, RewardScaler
    from trpo_ng.rollout import RolloutWorker, make_vector_env

    torch.manual_seed(0)
    if backend == "legacy":
        pool = make_vector_env(env_id, num_envs=workers * envs, backend="sync")
    else:
        pool = make_test_workers(
            backend,
            env_id=env_id,
            num_workers=workers,
            envs_per_worker=envs,
            agent_factory=agent_factory,
        )
    agent = agent_factory(pool.single_observation_space, pool.single_action_space)
    obs_norm = ObservationNormalizer(pool.single_observation_space.shape) if normalize else None
    rew_scale = RewardScaler(workers * envs, gamma=0.99) if normalize else None
    worker = RolloutWorker(
        pool,
        steps_per_env=steps,
        seed=seed,
        obs_normalizer=obs_norm,
        reward_scaler=rew_scale,
        max_restarts=max_restarts,
    )
    batches, restarts = [], []
    try:
        for _ in range(iterations):
            b = worker.collect(agent)
            batches.append(
                {
                    k: v.clone() if isinstance(v, torch.Tensor) else list(v)
                    for k, v in vars(b).items()
                }
            )
            restarts.append(worker.restarts)
    finally:
        worker.close()
    stats = {}
    if normalize:
        stats = {
            "obs_mean": obs_norm.rms.mean.copy(),
            "obs_var": obs_norm.rms.var.copy(),
            "obs_count": obs_norm.rms.count,
            "ret_var": rew_scale.rms.var,
            "returns": rew_scale.returns_N.copy(),
        }
    return batches, stats, restarts


def assert_same_batches(first, second) -> None:
    assert len(first) == len(second)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, (i, key)
                assert torch.equal(a[key], b[key]), (i, key)
            else:
                assert a[key] == b[key], (i, key)


def assert_same_stats(first, second) -> None:
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
