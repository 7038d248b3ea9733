"""Deterministic evaluation of saved models: one env playing the episodes in turn against one
env per episode, all playing at once (``rollout.evaluate``, what the trainer and ``trpo-ng
eval`` do).

For each model, ``--repeats`` rounds time both ways back to back (so a busy machine slows both
alike) on the config's evaluation episodes and seeds, check that they give the same returns,
and print a markdown row: medians in seconds, env steps per second and the ratio.

    .venv/bin/python benchmarks/evaluation.py runs/hopper/*/model.safetensors --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from trpo_ng.rollout import env_actions, play_episodes
from trpo_ng.saved_agent import SavedAgent, load_agent
from trpo_ng.trainer import EVAL_SEED_OFFSET

Played = tuple[list[float], list[int]]


def timed(fn: Callable[[], Played]) -> tuple[float, Played]:
    start = time.perf_counter()
    played = fn()
    return time.perf_counter() - start, played


def compare(saved: SavedAgent, repeats: int) -> str:
    """One table row: the two ways timed ``repeats`` times each, alternating."""
    cfg = saved.config
    seeds = range(cfg.seed + EVAL_SEED_OFFSET, cfg.seed + EVAL_SEED_OFFSET + cfg.eval.episodes)
    one_env = saved.make_env()
    at_once = [saved.make_env() for _ in seeds]
    space, norm = one_env.action_space, saved.obs_normalizer
    act = partial(env_actions, saved.agent, space, obs_normalizer=norm)  # as rollout.evaluate
    times: dict[str, list[float]] = {"one": [], "at_once": []}
    for _ in range(repeats):
        t_one, in_turn = timed(lambda: play_episodes(act, one_env, seeds))
        t_all, together = timed(lambda: play_episodes(act, at_once, seeds))
        if in_turn != together:
            raise SystemExit(f"{saved.source}: the two ways gave different returns")
        times["one"].append(t_one)
        times["at_once"].append(t_all)
    for env in [one_env, *at_once]:
        env.close()
    returns, lengths = in_turn
    steps = sum(lengths)
    one, together_s = statistics.median(times["one"]), statistics.median(times["at_once"])
    return (
        f"| {saved.source} | {sum(returns) / len(returns):.1f} | {steps:,} | {one:.2f} | "
        f"{together_s:.2f} | {steps / one:,.0f} | {steps / together_s:,.0f} | "
        f"{together_s / one:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model.safetensors files or run directories")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as training)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| model | eval return | env steps | one env (s) | at once (s) | one env steps/s | "
        "at once steps/s | at once / one env |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models:
        print(compare(load_agent(model), args.repeats), flush=True)


if __name__ == "__main__":
    main()
