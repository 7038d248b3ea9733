"""Learning curves from runs' TensorBoard event files: runs grouped by config, each group drawn
as the mean across its seeds with a min–max band.

Two runs belong to one group when their ``config.yaml`` files agree on every key but ``seed``,
``run_name`` and ``log_dir``. A group is named by its runs' common name before ``-s<seed>``
(``cartpole-s0-<timestamp>``, ``kl02-s3`` -> ``cartpole``, ``kl02``), else by env and agent;
groups that would share a name get the config keys that tell them apart.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trpo_ng.checkpoint import CheckpointError
from trpo_ng.config import ConfigError
from trpo_ng.extras import require
from trpo_ng.trainer import CONFIG_FILE

DEFAULT_METRIC = "eval/return_mean"
IGNORED_KEYS = ("seed", "run_name", "log_dir")  # keys that do not split runs into groups
_SEED_SUFFIX = re.compile(r"^(?P<name>.+?)-s\d+(?:-\d{8}-\d{6}-\d{6})?$")


@dataclass(frozen=True)
class Curve:
    run_dir: Path
    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Group:
    label: str
    config: dict[str, Any]  # flattened to dotted keys, without IGNORED_KEYS
    curves: list[Curve]

    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(steps, mean, min, max) across runs, each interpolated linearly onto the steps any
        run logged, within the range that every run covers."""
        first = max(c.steps[0] for c in self.curves)
        last = min(c.steps[-1] for c in self.curves)
        steps = np.unique(np.concatenate([c.steps for c in self.curves]))
        steps = steps[(steps >= first) & (steps <= last)]
        values = np.stack([np.interp(steps, c.steps, c.values) for c in self.curves])
        return steps, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


@dataclass(frozen=True)
class PlotResult:
    output: Path
    metric: str
    groups: list[Group]
    skipped: list[str]  # runs left out, and why


def plot_runs(
    paths: Iterable[str | Path],
    *,
    output: str | Path = "curves.png",
    metric: str = DEFAULT_METRIC,
) -> PlotResult:
    """Draw ``metric`` against environment steps for the runs in ``paths`` (run directories,
    or folders of them) into ``output`` (PNG, or any format matplotlib writes)."""
    require("matplotlib", extra="plot", purpose="plotting")
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    groups, skipped = group_runs(find_runs(paths), metric)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for group in groups:
        steps, mean, low, high = group.band()
        n = len(group.curves)
        label = group.label if n == 1 else f"{group.label} ({n} seeds)"
        (line,) = ax.plot(steps, mean, label=label, marker="o" if len(steps) < 2 else None)
        if n > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, dpi=100)
    except ValueError as e:  # e.g. an unknown file extension
        raise ConfigError(f"cannot write {output}: {e}") from None
    return PlotResult(output, metric, groups, skipped)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories (holding a config.yaml): the paths themselves, or their children."""
    runs: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.is_dir():
            raise CheckpointError(f"no such run directory: {path}")
        if (path / CONFIG_FILE).is_file():
            runs[path] = None
            continue
        children = sorted(c for c in path.iterdir() if (c / CONFIG_FILE).is_file())
        if not children:
            raise CheckpointError(
                f"{path} is not a trpo-ng run directory (no {CONFIG_FILE}) nor a folder of runs"
            )
        runs.update(dict.fromkeys(children))
    return list(runs)


def read_curve(run_dir: Path, metric: str) -> tuple[Curve | None, list[str]]:
    """The run's ``metric`` by step (the last value where a step repeats) and all its scalar
    tags; None when it has no value of ``metric``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = list(events.Tags().get("scalars", []))
    if metric not in tags:
        return None, tags
    by_step = {e.step: e.value for e in events.Scalars(metric)}
    steps = np.array(sorted(by_step), dtype=np.float64)
    values = np.array([by_step[s] for s in sorted(by_step)], dtype=np.float64)
    return Curve(run_dir, steps, values), tags


def group_runs(run_dirs: list[Path], metric: str) -> tuple[list[Group], list[str]]:
    """Curves of ``metric`` grouped by config, in the order runs were given; and the runs left
    out, with why. ConfigError when no run has the metric."""
    members: dict[str, tuple[dict[str, Any], list[Curve]]] = {}
    skipped: list[str] = []
    all_tags: set[str] = set()
    for run_dir in run_dirs:
        config = _run_config(run_dir)
        curve, tags = read_curve(run_dir, metric)
        all_tags.update(tags)
        if curve is None:
            skipped.append(f"{run_dir}: no {metric!r} values")
            continue
        key = yaml.safe_dump(config, sort_keys=True)
        members.setdefault(key, (config, []))[1].append(curve)
    if not members:
        guess = difflib.get_close_matches(metric, sorted(all_tags), n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        raise ConfigError(f"no run has values of metric {metric!r}{hint}")
    groups = [Group(_name(curves, config), config, curves) for config, curves in members.values()]
    groups = _distinguish(groups)
    kept = []
    for group in groups:
        if len(group.band()[0]):
            kept.append(group)
        else:
            skipped.append(f"group {group.label!r}: its runs share no range of steps")
    return kept, skipped


def _run_config(run_dir: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except yaml.YAMLError:
        raise CheckpointError(f"{run_dir / CONFIG_FILE} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{run_dir / CONFIG_FILE} is not a trpo-ng config")
    flat = _flatten(raw)
    for key in IGNORED_KEYS:
        flat.pop(key, None)
    return flat


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _name(curves: list[Curve], config: dict[str, Any]) -> str:
    names = {
        (m.group("name") if (m := _SEED_SUFFIX.match(c.run_dir.name)) else c.run_dir.name)
        for c in curves
    }
    if len(names) == 1:
        return names.pop()
    return f"{config.get('env_id', '?')} {config.get('agent', '?')}"


def _distinguish(groups: list[Group], shown: int = 3) -> list[Group]:
    """Groups sharing a label get up to ``shown`` of the config keys that differ among them."""
    out = []
    for group in groups:
        twins = [g for g in groups if g.label == group.label]
        if len(twins) == 1:
            out.append(group)
            continue
        keys = sorted({k for g in twins for k in g.config})
        differ = [k for k in keys if len({repr(g.config.get(k)) for g in twins}) > 1]
        detail = ", ".join(f"{k}={group.config.get(k)}" for k in differ[:shown])
        out.append(Group(f"{group.label} ({detail})", group.config, group.curves))
    return out
