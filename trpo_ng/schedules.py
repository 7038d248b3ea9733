"""Hyper-parameter schedules: callables of the update count (0, 1, ...), as the updaters take."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "linear", "cosine")


def make_schedule(kind: str, value: float, *, total_updates: int, end: float = 0.0) -> Schedule:
    """``constant``: ``value`` throughout; ``linear``: from ``value`` down to ``end * value`` at
    ``total_updates`` and held there, the annealing used for PPO's and the rl-zoo's learning
    rates (Schulman et al. 2017, appendix; Engstrom et al. 2020), which end at 0; ``cosine``:
    the same ends joined by half a cosine (Loshchilov & Hutter 2017, eq. 5), which stays near
    ``value`` longer and falls faster late."""
    if not 0.0 <= end <= 1.0:
        raise ValueError(f"a schedule's end fraction must be in [0, 1], got {end}")

    def progress(k: int) -> float:  # the fraction of the run done, held at 1 past its end
        return min(1.0, k / max(total_updates, 1))

    if kind == "constant":
        return lambda _: value
    if kind == "linear":
        return lambda k: value * (end + (1.0 - end) * (1.0 - progress(k)))
    if kind == "cosine":
        return lambda k: value * (end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress(k))))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
