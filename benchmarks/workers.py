"""Rollout-worker benchmark (not a test): env steps per second with 1, 2 and 4 workers on each
backend, CartPole-v1 and Hopper-v5, and how each iteration's time splits between collecting and
updating.

    .venv/bin/python benchmarks/workers.py                           # everything, ~5 min on 2 cores
    .venv/bin/python benchmarks/workers.py --tasks cartpole --backends sync ray --workers 1 2
    .venv/bin/python benchmarks/workers.py --json out.json

Every run trains with the task's config for ``--batches`` batches of 4 envs x 512 steps (the
same batch for every layout: ``rollout.num_envs`` stays 4, split over the workers), one torch
thread, evaluation only at the end, each run in a fresh process. Ray runs start their own local
Ray instance (``rollout.worker_cpus=1``: Ray is told of as many CPUs as there are workers).

Timed: from the start of the second batch's collection to the end of the last update (the first
iteration warms up caches and Ray's actors). ``steps/s`` is env steps over that span;
``collect steps/s`` is one batch over its median collection time; ``collect %`` is the share of
the span spent collecting (the rest: the update, GAE and logging, all in the driver).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TASKS = {"cartpole": "configs/cartpole.yaml", "hopper": "configs/hopper.yaml"}
NUM_ENVS, STEPS_PER_ENV = 4, 512


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    import trpo_ng.trainer as trainer
    from trpo_ng.config import load_config
    from trpo_ng.rollout import RolloutWorker

    starts: list[float] = []
    collects: list[float] = []
    end: list[float] = []
    collect, evaluate = RolloutWorker.collect, trainer.evaluate

    def timed_collect(self: Any, agent: Any) -> Any:
        starts.append(time.perf_counter())
        try:
            return collect(self, agent)
        finally:
            collects.append(time.perf_counter() - starts[-1])

    def final_evaluate(*args: Any, **kwargs: Any) -> Any:
        end.append(time.perf_counter())
        return evaluate(*args, **kwargs)

    RolloutWorker.collect = timed_collect  # type: ignore[method-assign]
    trainer.evaluate = final_evaluate
    batch = NUM_ENVS * STEPS_PER_ENV
    overrides = [
        f"rollout.backend={spec['backend']}",
        f"rollout.num_workers={spec['workers']}",
        f"rollout.num_envs={NUM_ENVS}",
        f"rollout.steps_per_env={STEPS_PER_ENV}",
        "rollout.envs_per_worker=0",
        f"total_steps={spec['batches'] * batch}",
        "eval.every=0",
        "eval.episodes=1",
        "checkpoint.every=0",
        "torch_threads=1",
        f"log_dir={spec['log_dir']}",
        "run_name=run",
    ]
    cfg = load_config(ROOT / TASKS[spec["task"]], overrides)
    t0 = time.perf_counter()
    trainer.train(cfg, quiet=True)
    span = end[0] - starts[1]
    return {
        **spec,
        "steps_per_s": batch * (len(starts) - 1) / span,
        "collect_steps_per_s": batch / statistics.median(collects[1:]),
        "collect_share": sum(collects[1:]) / span,
        "iteration_s": span / (len(starts) - 1),
        "collect_s": statistics.median(collects[1:]),
        "first_iteration_s": starts[1] - starts[0],
        "call_s": time.perf_counter() - t0,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as log_dir:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps({**spec, "log_dir": log_dir})],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| task | backend | workers x envs | steps/s | collect steps/s | collect % | "
        "update+other s/batch |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        update = r["iteration_s"] * (1 - r["collect_share"])
        rows.append(
            f"| {r['task']} | {r['backend']} | {r['workers']} x {NUM_ENVS // r['workers']} | "
            f"{r['steps_per_s']:.0f} | {r['collect_steps_per_s']:.0f} | "
            f"{100 * r['collect_share']:.0f} | {update:.2f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["sync", "subprocess", "ray"],
        choices=["sync", "subprocess", "ray"],
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--batches", type=int, default=6, help="batches per run (default 6)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    results = []
    for task in args.tasks:
        for backend in args.backends:
            for workers in args.workers:
                spec = {"task": task, "backend": backend, "workers": workers}
                results.append(run({**spec, "batches": args.batches}))
                r = results[-1]
                print(
                    f"{task} {backend} {workers}: {r['steps_per_s']:.0f} steps/s, "
                    f"collect {100 * r['collect_share']:.0f}%",
                    file=sys.stderr,
                    flush=True,
                )
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
