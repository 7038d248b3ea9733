"""Tables and learning curves from the per-run results that learn.py collects.

A run result is a dict with system, task, config, seed, steps, eval_history [(step, return)],
final_eval and wall_s (see trpo_runner.py and sb3_runner.py). Run as a script, it assembles one
table and plot from the results of separate invocations (learn.py's runs.jsonl, sb3_runner.py's
JSON line):

    python benchmarks/report.py A/runs.jsonl sb3-s0.json sb3-s1.json --budget 1000000 \
        --out benchmarks/results/assembled --title "Ant-v5 at 1M" --note "how each was run"
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SYSTEMS = ("trpo-ng", "sb3-contrib")  # row and colour order
SYSTEM_COLOURS = {"trpo-ng": "C0", "sb3-contrib": "C1"}
BAND = "min–max over seeds"
RESULT_KEYS = {"system", "task", "config", "seed", "steps", "eval_history", "final_eval", "wall_s"}


@dataclass(frozen=True)
class Row:
    system: str
    task: str
    config: str
    budget: int
    trained: int  # env steps actually trained (whole batches within the budget)
    seeds: list[int]
    finals: list[float]
    wall_s: float  # mean over seeds
    eval_s: float | None = None  # of wall_s, the periodic evaluations; None: not recorded

    @property
    def mean(self) -> float:
        return float(np.mean(self.finals))

    @property
    def median(self) -> float:  # returns are often bimodal over seeds (a run takes off or not)
        return float(np.median(self.finals))

    @property
    def std(self) -> float:  # over seeds, ddof=0 as in rl-baselines3-zoo's tables
        return float(np.std(self.finals))


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return r["task"], r["system"], r["config"]


def _order(key: tuple[str, str, str]) -> tuple[str, int, str]:
    task, system, config = key
    return task, SYSTEMS.index(system) if system in SYSTEMS else len(SYSTEMS), config


def summarize(results: Iterable[dict[str, Any]], budget: int) -> list[Row]:
    """One row per (task, system, config), seeds in ascending order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[_key(r)].append(r)
    rows = []
    for key in sorted(groups, key=_order):
        runs = sorted(groups[key], key=lambda r: r["seed"])
        task, system, config = key
        rows.append(
            Row(
                system=system,
                task=task,
                config=config,
                budget=budget,
                trained=max(r["steps"] for r in runs),
                seeds=[r["seed"] for r in runs],
                finals=[float(r["final_eval"]) for r in runs],
                wall_s=float(np.mean([r["wall_s"] for r in runs])),
                eval_s=(
                    float(np.mean([r["eval_s"] for r in runs]))
                    if all("eval_s" in r for r in runs)
                    else None
                ),
            )
        )
    return rows


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def write_results_csv(path: Path, rows: list[Row]) -> None:
    header = [
        "system",
        "task",
        "config",
        "budget",
        "trained_steps",
        "seeds",
        "mean",
        "median",
        "std",
        "per_seed_final",
        "mean_wall_s",
        "mean_eval_s",
    ]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(
                [
                    r.system,
                    r.task,
                    r.config,
                    r.budget,
                    r.trained,
                    " ".join(map(str, r.seeds)),
                    _fmt(r.mean),
                    _fmt(r.median),
                    _fmt(r.std),
                    " ".join(_fmt(x) for x in r.finals),
                    _fmt(r.wall_s),
                    _fmt(r.eval_s),
                ]
            )


def write_results_md(
    path: Path, rows: list[Row], *, header: str, failures: list[str], wall_ratios: bool = True
) -> None:
    """The table under ``header``; ``wall_ratios``: add trpo-ng's mean wall time over
    sb3-contrib's per task (only for runs that shared the machine alike)."""
    lines = [
        header,
        "",
        "| system | task | config | budget | trained | seeds | mean | median | std "
        "| per-seed final | mean wall (s) | of which evals (s) |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.system} | {r.task} | {r.config} | {r.budget:,} | {r.trained:,} "
            f"| {' '.join(map(str, r.seeds))} | {_fmt(r.mean)} | {_fmt(r.median)} | {_fmt(r.std)} "
            f"| {' / '.join(_fmt(x) for x in r.finals)} | {_fmt(r.wall_s)} | {_fmt(r.eval_s)} |"
        )
    ratios = _wall_ratios(rows) if wall_ratios else []
    if ratios:
        lines += ["", "Mean wall time, trpo-ng / sb3-contrib: " + "; ".join(ratios) + "."]
    if failures:
        lines += ["", "Failed runs (see logs/):", "", *(f"- {f}" for f in failures)]
    path.write_text("\n".join(lines) + "\n")


def _wall_ratios(rows: list[Row]) -> list[str]:
    out = []
    for task in dict.fromkeys(r.task for r in rows):
        ours = [r for r in rows if r.task == task and r.system == "trpo-ng"]
        ref = [r for r in rows if r.task == task and r.system == "sb3-contrib"]
        if len(ours) == 1 and len(ref) == 1 and ref[0].wall_s > 0:
            (a,), (b,) = ours, ref
            ratio = f"{task} {a.wall_s / b.wall_s:.2f}"
            if a.eval_s is not None and b.eval_s is not None and b.wall_s > b.eval_s:
                ratio += f" ({(a.wall_s - a.eval_s) / (b.wall_s - b.eval_s):.2f} without evals)"
            out.append(ratio)
    return out


def write_curves_csv(path: Path, results: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "task", "config", "seed", "step", "return"])
        for r in sorted(results, key=lambda r: (*_order(_key(r)), r["seed"])):
            for step, ret in r["eval_history"]:
                w.writerow([r["system"], r["task"], r["config"], r["seed"], step, _fmt(ret)])


def _curve(runs: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    """Steps and the mean, min and max return over the seeds evaluated at each step."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        for step, ret in r["eval_history"]:
            by_step[int(step)].append(float(ret))
    steps = np.array(sorted(by_step))
    values = [by_step[s] for s in steps]
    return (
        steps,
        np.array([np.mean(v) for v in values]),
        np.array([min(v) for v in values]),
        np.array([max(v) for v in values]),
    )


def plot_curves(path: Path, results: list[dict[str, Any]], *, episodes: int) -> None:
    """One subplot per task: mean eval return over seeds, shaded min–max, per system/config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[_key(r)].append(r)
    tasks = list(dict.fromkeys(k[0] for k in sorted(groups, key=_order)))
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    size = (max(6.4, 5.2 * ncols), 3.8 * nrows + 0.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    extra: dict[tuple[str, str], str] = {}  # colours for a second config of one system
    for ax, task in zip(axes.flat, tasks, strict=False):
        used: set[str] = set()
        for key in sorted((k for k in groups if k[0] == task), key=_order):
            _, system, config = key
            colour = SYSTEM_COLOURS.get(system, "")
            if not colour or colour in used:
                colour = extra.setdefault((system, config), f"C{len(SYSTEMS) + len(extra)}")
            used.add(colour)
            steps, mean, lo, hi = _curve(groups[key])
            n = len(groups[key])
            ax.plot(steps, mean, "o-", ms=3, color=colour, label=f"{system} ({config}), n={n}")
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("eval return")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Deterministic eval return ({episodes} episodes)\nline: mean over seeds; band: {BAND}",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_results(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The run results in JSON-lines files, in order (blank lines skipped); a run (system, task,
    config, seed) given twice is an error."""
    results: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from e
            missing = RESULT_KEYS - set(r)
            if missing:
                raise ValueError(f"{path}:{n}: not a run result, no {', '.join(sorted(missing))}")
            run = (*_key(r), r["seed"])
            if run in seen:
                raise ValueError(f"{path}:{n}: {' '.join(map(str, run))} given twice")
            seen.add(run)
            results.append(r)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One table and plot from separate invocations' runs.")
    p.add_argument("runs", nargs="+", type=Path, help="runs.jsonl / JSON-line run results")
    p.add_argument("--budget", type=int, required=True, help="env-step budget of the runs")
    p.add_argument("--out", type=Path, required=True, help="directory for the table and plot")
    p.add_argument("--title", default="Learning benchmark")
    p.add_argument("--note", default="", help="markdown under the title: how each was run")
    p.add_argument("--episodes", type=int, default=10, help="eval episodes, for the plot title")
    args = p.parse_args(argv)
    try:
        results = read_results(args.runs)
    except (OSError, ValueError) as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 2
    if not results:
        print("report.py: error: no run results in the files given", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = summarize(results, args.budget)
    header = "\n".join(
        [
            f"# {args.title}",
            "",
            *([args.note, ""] if args.note else []),
            "Assembled with `benchmarks/report.py` from the runs of separate invocations; their "
            "wall times are not comparable across invocations.",
            "",
            f"Final eval: deterministic mean return over {args.episodes} episodes on a separate "
            "env after the last update; mean, median and std (ddof=0) over seeds.",
        ]
    )
    with (args.out / "runs.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    write_results_csv(args.out / "results.csv", rows)
    write_results_md(args.out / "results.md", rows, header=header, failures=[], wall_ratios=False)
    write_curves_csv(args.out / "curves.csv", results)
    try:
        plot_curves(args.out / "curves.png", results, episodes=args.episodes)
    except ImportError:
        print("report.py: matplotlib missing, no curves.png (pip install matplotlib)")
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
