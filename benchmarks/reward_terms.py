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

from trpo_ng.saved_agent import SavedAgent, load_agent
from trpo_ng.trainer import EVAL_SEED_OFFSET

PREFIX = "reward_"


def episode_terms(saved: SavedAgent, seed: int) -> tuple[float, dict[str, float]]:
    """(return, summed reward terms) of one deterministic episode from env seed ``seed``."""
    env = saved.make_env()
    try:
        obs, _ = env.reset(seed=seed)
        ret, done = 0.0, False
        terms: dict[str, float] = {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(saved.act(obs))
            ret += float(reward)
            done = terminated or truncated
            for key, value in info.items():
                if key.startswith(PREFIX):
                    name = key[len(PREFIX) :]
                    terms[name] = terms.get(name, 0.0) + float(value)
        return ret, terms
    finally:
        env.close()


def model_row(path: str) -> tuple[list[str], list[float]]:
    """(term names, [mean return, mean of each term]) over the config's evaluation episodes."""
    saved = load_agent(path)
    first = saved.config.seed + EVAL_SEED_OFFSET
    played = [episode_terms(saved, first + i) for i in range(saved.config.eval.episodes)]
    names = sorted({name for _, terms in played for name in terms})
    means = [statistics.fmean(ret for ret, _ in played)]
    means += [statistics.fmean(terms.get(name, 0.0) for _, terms in played) for name in names]
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
