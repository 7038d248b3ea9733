"""Hyper-parameter schedules: callables of the update count (0, 1, ...), as the updaters take."""

from __future__ import annotations

from collections.abc import Callable

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "linear")


def make_schedule(kind: str, value: float, *, total_updates: int, end: float = 0.0) -> Schedule:
    """``constant``: ``value`` throughout; ``linear``: from ``value`` down to ``end * value`` at
    ``total_updates`` and held there, the annealing used for PPO's and the rl-zoo's learning
    rates (Schulman et al. 2017, appendix; Engstrom et al. 2020), which end at 0."""
    if not 0.0 <= end <= 1.0:
        raise ValueError(f"a schedule's end fraction must be in [0, 1], got {end}")
    if kind == "constant":
        return lambda _: value
    if kind == "linear":
        return lambda k: value * (end + (1.0 - end) * max(0.0, 1.0 - k / max(total_updates, 1)))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
