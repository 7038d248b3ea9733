"""Learning benchmark: trpo-ng (optionally against sb3-contrib TRPO) over configs and seeds.

    python benchmarks/learn.py configs/cartpole.yaml --seeds 0 1 2 --steps 100000 --vs-sb3

Each (config, seed) trains in its own process, at most ``--procs`` at once; with ``--vs-sb3``
the sb3-contrib runs for the same env ids, budgets and seeds are interleaved with them in the
same pool, so both systems see the same machine load. Writes to ``--out``: results.csv,
results.md, curves.csv, curves.png, runs.jsonl (raw per-run results), logs/ and runs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from report import (
    plot_curves,
    summarize,
    write_curves_csv,
    write_results_csv,
    write_results_md,
)
from versions import installed

from trpo_ng import __version__
from trpo_ng.config import ConfigError, load_config

HERE = Path(__file__).resolve().parent
DEFAULT_SB3_PYTHON = HERE / ".venv-sb3" / "bin" / "python"
EVAL_EPISODES = 10  # BENCHMARKS.md protocol
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class HarnessError(Exception):
    """A usage mistake; reported as one line, exit code 2."""


@dataclass(frozen=True)
class Job:
    system: str
    label: str  # e.g. "trpo-ng cartpole s0"
    argv: list[str]
    log: Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="trpo-ng YAML config(s)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="default 0 1 2")
    p.add_argument("--steps", type=int, default=300_000, help="env-step budget per run")
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps; 0: only at end")
    p.add_argument("--procs", type=int, default=2, help="runs at once (default 2)")
    p.add_argument("--vs-sb3", action="store_true", help="also run sb3-contrib TRPO")
    p.add_argument(
        "--sb3-python",
        type=Path,
        default=DEFAULT_SB3_PYTHON,
        metavar="PATH",
        help="python of the sb3-contrib venv (default benchmarks/.venv-sb3/bin/python)",
    )
    p.add_argument("--out", type=Path, help="output dir (default benchmarks/results/<time>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="trpo-ng config overrides for every run, e.g. --set policy.max_kl=0.02",
    )
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.steps <= 0 or args.eval_every < 0 or args.procs < 1:
        raise HarnessError("--steps must be > 0, --eval-every >= 0 and --procs >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        raise HarnessError("--seeds must be distinct")
    stems = [Path(c).stem for c in args.configs]
    if len(set(stems)) != len(stems):
        raise HarnessError("config file names must be distinct (runs are named after them)")
    if args.out.exists() and any(args.out.iterdir()):
        raise HarnessError(f"output directory {args.out} already holds files; choose another --out")
    if args.vs_sb3:
        _check_sb3_python(args.sb3_python)


def _check_sb3_python(python: Path) -> None:
    setup = (
        "set it up with `python3 -m venv benchmarks/.venv-sb3 && benchmarks/.venv-sb3/bin/pip "
        'install torch==2.13.0 "gymnasium[mujoco]" sb3-contrib` (see benchmarks/README.md) '
        "or pass --sb3-python"
    )
    if not python.is_file():
        raise HarnessError(
            f"--vs-sb3 needs a python with sb3-contrib at {python}: not found; {setup}"
        )
    probe = subprocess.run([str(python), "-c", "import sb3_contrib"], capture_output=True)
    if probe.returncode != 0:
        raise HarnessError(f"--vs-sb3: {python} cannot import sb3_contrib; {setup}")


def _trpo_overrides(args: argparse.Namespace, stem: str, seed: int) -> list[str]:
    return [
        f"seed={seed}",
        f"total_steps={args.steps}",
        f"eval.every={args.eval_every}",
        f"eval.episodes={EVAL_EPISODES}",
        f"log_dir={args.out / 'runs'}",
        f"run_name={stem}-s{seed}",
        "torch_threads=1",
        *args.overrides,
    ]


def plan(args: argparse.Namespace) -> list[Job]:
    """Validate every config, then list the runs: per config and seed, trpo-ng then sb3.

    An env (id and keyword arguments) shared by several configs gets one sb3-contrib run per
    seed.
    """
    jobs: list[Job] = []
    sb3_planned: set[tuple[str, str, int]] = set()
    logs = args.out / "logs"
    for config in args.configs:
        stem = Path(config).stem
        try:
            cfg = load_config(config, _trpo_overrides(args, stem, args.seeds[0]))
            gym.spec(cfg.env_id)
        except ConfigError as e:
            raise HarnessError(f"{config}: {e}") from None
        except gym.error.Error as e:
            raise HarnessError(f"{config}: env_id {cfg.env_id!r}: {e}") from None
        for seed in args.seeds:
            argv = [sys.executable, str(HERE / "trpo_runner.py"), str(Path(config).resolve())]
            argv += _trpo_overrides(args, stem, seed)
            log = logs / f"{stem}-s{seed}.log"
            jobs.append(Job("trpo-ng", f"trpo-ng {stem} s{seed}", argv, log))
            task = (cfg.env_id, json.dumps(cfg.env_kwargs, sort_keys=True), seed)
            if args.vs_sb3 and task not in sb3_planned:
                sb3_planned.add(task)
                argv = [str(args.sb3_python), str(HERE / "sb3_runner.py"), cfg.env_id]
                argv += [f"--steps={args.steps}", f"--seed={seed}"]
                if cfg.env_kwargs:  # the same task: gym.make's keyword arguments too
                    argv += [f"--env-kwargs={json.dumps(cfg.env_kwargs)}"]
                argv += [f"--eval-every={args.eval_every}", f"--eval-episodes={EVAL_EPISODES}"]
                log = logs / f"sb3-{cfg.env_id}-s{seed}.log"
                jobs.append(Job("sb3-contrib", f"sb3-contrib {cfg.env_id} s{seed}", argv, log))
    return jobs


def run_job(job: Job) -> dict[str, Any]:
    """Run one job as a subprocess; its output goes to job.log, its last JSON line is returned."""
    proc = subprocess.run(
        job.argv, capture_output=True, text=True, env={**os.environ, **ONE_THREAD}
    )
    job.log.write_text(f"$ {shlex.join(job.argv)}\n{proc.stdout}\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit code {proc.returncode}: {last}")
    return json.loads(lines[-1])


def run_all(jobs: list[Job], procs: int) -> tuple[list[dict[str, Any]], list[str]]:
    results, failures = [], []
    with ThreadPoolExecutor(max_workers=procs) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            job = futures[future]
            try:
                r = future.result()
            except Exception as e:
                failures.append(f"{job.label}: {e}")
                print(f"[{done}/{len(jobs)}] {job.label}: FAILED ({e}); log {job.log}", flush=True)
                continue
            results.append(r)
            print(
                f"[{done}/{len(jobs)}] {job.label}: final eval {r['final_eval']:.1f} "
                f"at {r['steps']:,} steps, {r['wall_s']:.1f} s",
                flush=True,
            )
    return results, failures


def _header(argv: list[str], args: argparse.Namespace, sb3: dict[str, Any] | None) -> str:
    # the physics and the random streams come from these too: a run repeats its digits only
    # with the same versions (MuJoCo releases change Hopper's trajectories)
    versions = (
        f"trpo-ng {__version__}, torch {torch.__version__}, gymnasium {gym.__version__}, "
        f"mujoco {installed('mujoco')}, numpy {installed('numpy')}"
    )
    if sb3:
        versions += f", sb3-contrib {sb3['version']} (mujoco {sb3.get('mujoco', 'unknown')})"
    return "\n".join(
        [
            "# Learning benchmark",
            "",
            f"`python benchmarks/learn.py {shlex.join(argv)}`",
            "",
            f"{datetime.now():%Y-%m-%d %H:%M}, {platform.node()}: {os.cpu_count()} CPUs, "
            f"{args.procs} runs at a time, 1 torch thread each; {versions}.",
            "",
            f"Final eval: deterministic mean return over {EVAL_EPISODES} episodes on a separate "
            "env after the last update; mean, median and std (ddof=0) over seeds. Runs train "
            "whole batches within the budget (`trained`). Wall time: the training call, "
            "periodic evaluation included (its share in the last column: a policy that stays "
            "up longer plays longer evaluation episodes).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.out = (args.out or HERE / "results" / f"{datetime.now():%Y%m%d-%H%M%S}").resolve()
    try:
        _check_args(args)
        jobs = plan(args)
    except HarnessError as e:
        print(f"learn.py: error: {e}", file=sys.stderr)
        return 2
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    print(f"{len(jobs)} runs, {args.procs} at a time -> {args.out}", flush=True)
    start = time.perf_counter()
    results, failures = run_all(jobs, args.procs)
    with (args.out / "runs.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    rows = summarize(results, args.steps)
    sb3 = next((r for r in results if r["system"] == "sb3-contrib"), None)
    write_results_csv(args.out / "results.csv", rows)
    header = _header(argv, args, sb3)
    write_results_md(args.out / "results.md", rows, header=header, failures=failures)
    write_curves_csv(args.out / "curves.csv", results)
    if results:
        try:
            plot_curves(args.out / "curves.png", results, episodes=EVAL_EPISODES)
        except ImportError:
            print("learn.py: matplotlib missing, no curves.png (pip install matplotlib)")
    print((args.out / "results.md").read_text())
    print(f"{time.perf_counter() - start:.0f} s; results in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
