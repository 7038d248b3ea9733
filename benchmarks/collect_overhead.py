"""What trpo-ng's collection costs on top of the envs' own ``step``.

Each round collects ``--steps`` steps of ``--num-envs`` envs with ``EnvRunner.collect`` (a fresh
64x64 tanh Gaussian policy, observations normalised, as in training), then replays the same env
actions through a fresh ``SerialVectorEnv`` from the same reset seed (checked: the same
rewards, so the same trajectories), then times choosing the actions alone (``EnvRunner.act``).
Prints microseconds per vector step over ``--repeats`` rounds: the fastest (the least disturbed
by a shared machine), the median and the slowest.

    .venv/bin/python benchmarks/collect_overhead.py --env Hopper-v5 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from envs.wrappers import make_env
from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.policies import MLPPolicy
from trpo_ng.rollout import EnvRunner
from trpo_ng.spaces import to_env_action
from trpo_ng.vector import SerialVectorEnv

SEED = 0


def one_round(env_id: str, num_envs: int, steps: int, rng_seed: int) -> dict[str, float]:
    """Seconds per vector step: the whole collection, the envs alone, the acting alone."""

    def envs() -> SerialVectorEnv:
        return SerialVectorEnv(lambda: make_env(env_id), num_envs)

    torch.manual_seed(SEED)
    runner = EnvRunner(envs())
    policy = MLPPolicy(
        runner.envs.single_observation_space,
        runner.envs.single_action_space,
        hidden_sizes=[64, 64],
        activation="tanh",
    )
    norm = ObservationNormalizer(runner.envs.single_observation_space.shape)
    norm.update(runner.envs.reset(seed=SEED + 1))  # any frozen statistics do for timing
    runner.start(SEED, rng_seed)
    start = time.perf_counter()
    share = runner.collect(policy, norm, steps)
    collect = time.perf_counter() - start
    actions = to_env_action(runner.envs.single_action_space, share.act_TE.copy())

    replay = envs()
    replay.reset(seed=SEED)
    rewards = np.zeros_like(share.rew_TE)
    start = time.perf_counter()
    for t in range(steps):
        rewards[t] = replay.step(actions[t]).rew
    env_only = time.perf_counter() - start
    if not np.array_equal(rewards, share.rew_TE):
        raise SystemExit("the replay left the collected trajectories")

    acting = EnvRunner(envs())
    acting.start(SEED, rng_seed)
    acting.begin(norm, steps)
    with torch.inference_mode(), acting.stream():
        start = time.perf_counter()
        for t in range(steps):
            acting.act(policy, t)
        act_only = time.perf_counter() - start
    for r in (runner.envs, replay, acting.envs):
        r.close()
    return {"collect": collect / steps, "envs alone": env_only / steps, "acting": act_only / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2048, help="vector steps a round")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = [one_round(args.env, args.num_envs, args.steps, r) for r in range(args.repeats)]
    print(f"{args.env}, {args.num_envs} envs, {args.steps} steps, {args.repeats} rounds")
    print("| part | fastest (us per vector step) | median | slowest |")
    print("|---|---:|---:|---:|")
    for part in rounds[0]:
        us = [r[part] * 1e6 for r in rounds]
        print(f"| {part} | {min(us):.0f} | {statistics.median(us):.0f} | {max(us):.0f} |")


if __name__ == "__main__":
    main()
