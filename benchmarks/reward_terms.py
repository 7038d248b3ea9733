"""A saved agent's evaluation return split into its env's reward terms.

Gymnasium's v5 MuJoCo tasks report each term of the step reward in ``info`` (``reward_forward``,
``reward_ctrl``, ``reward_contact``, ``reward_survive``, ...). This plays the config's
deterministic evaluation episodes (same env seeds as the trainer's, normaliser frozen) and
prints one markdown row per model with the mean return and the mean sum of each term, so two
tasks' rewards can be compared term by term (e.g. Ant-v5's contact cost, absent from the v3
task behind the published figures).

    .venv/bin/python benchmarks/reward_terms.py benchmarks/results/*/runs/ant-s*
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import gymnasium as gym

from trpo_ng.rollout import play_episodes
from trpo_ng.saved_agent import load_agent
from trpo_ng.trainer import EVAL_SEED_OFFSET

PREFIX = "reward_"


class TermSums(gym.Wrapper):
    """Sums the ``info["reward_*"]`` terms over the current episode (``sums``, keyed by the
    term's name without the prefix)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.sums: dict[str, float] = {}

    def reset(self, **kwargs: Any) -> Any:
        self.sums = {}
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        for key, value in info.items():
            if key.startswith(PREFIX):
                name = key[len(PREFIX) :]
                self.sums[name] = self.sums.get(name, 0.0) + float(value)
        return obs, reward, terminated, truncated, info


def model_row(path: str) -> tuple[list[str], list[float]]:
    """(term names, [mean return, mean of each term]) over the config's evaluation episodes,
    played as the trainer plays them (``play_episodes``, one env per episode)."""
    saved = load_agent(path)
    first = saved.config.seed + EVAL_SEED_OFFSET
    seeds = range(first, first + saved.config.eval.episodes)
    envs = [TermSums(saved.make_env()) for _ in seeds]
    try:
        returns, _ = play_episodes(saved.act, envs, seeds)
    finally:
        for env in envs:
            env.close()
    names = sorted({name for env in envs for name in env.sums})
    means = [statistics.fmean(returns)]
    means += [statistics.fmean(env.sums.get(name, 0.0) for env in envs) for name in names]
    return names, means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="run directories or model files")
    args = parser.parse_args()
    header: list[str] | None = None
    for path in args.models:
        names, means = model_row(path)
        if header != names:
            header = names
            print("| model | return | " + " | ".join(names) + " |")
            print("|---|" + "---:|" * (len(names) + 1))
        print(f"| {path} | " + " | ".join(f"{m:.1f}" for m in means) + " |")


if __name__ == "__main__":
    main()
