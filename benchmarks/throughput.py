"""Throughput benchmark: env steps per second over a whole training run, three systems.

    .venv/bin/python benchmarks/throughput.py                       # Hopper-v5 and CartPole-v1
    .venv/bin/python benchmarks/throughput.py --task hopper --steps 4096 --no-sb3
    .venv/bin/python benchmarks/throughput.py --repeats 3 --json out.json --markdown

For each task, at matched hyper-parameters, it times (a) the bare env stepped with random
actions (1 env, the ceiling), (b) trpo-ng's ``train`` and (c) sb3-contrib TRPO (run by the
python of ``benchmarks/.venv-sb3``, skipped when that is missing or with ``--no-sb3``). Each run
is a fresh subprocess with one torch/BLAS thread that reports its own peak resident memory
(VmHWM, plus its env or value-fit processes' where it has them) and the peak proportional set
size of it and its children (``PssSampler``); the systems alternate ``--repeats`` times and
medians are reported.

Timed span: first rollout to the end of the last update, so collection, update and logging
count and set-up and the final evaluation do not. trpo-ng's breakdown comes from the scalars
its trainer logs to TensorBoard (``time/collect_s``, ``time/policy_update_s``,
``time/value_update_s``); "other" is the rest of the span (GAE, the old-policy pass, logging).
Last, the policy update alone (Hopper policy, configs/hopper.yaml) is timed at batch sizes
2048, 8192 and 32768 so its scaling can be judged.

This file is also the child of each run (``--child``): it imports only the standard library at
module level, so the sb3-contrib venv can run it too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from versions import installed

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_SB3_PYTHON = HERE / ".venv-sb3" / "bin" / "python"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
RESULT_PREFIX = "THROUGHPUT_RESULT "
SEED = 0
POLICY_BATCH_SIZES = (2048, 8192, 32768)
POLICY_CALLS = 3
ENVS_IN = {  # trpo-ng's rollout.backend -> where its envs step
    "sync": "this process",
    "subprocess": "one process per env",
    "hybrid": "env 0 here, the other in a process",
    "process": "one worker of one env here, each other in a process",
}


@dataclass(frozen=True)
class Task:
    env_id: str
    config: str  # trpo-ng config, relative to the repository root
    overrides: tuple[str, ...]  # trpo-ng overrides matching sb3-contrib's settings
    sb3_settings: str  # what sb3_runner.hyperparams picks for env_id


# Matched hyper-parameters. sb3-contrib runs with benchmarks/sb3_runner.py's `hyperparams`
# (rl-baselines3-zoo for Hopper, class defaults for CartPole); trpo-ng gets the same values as
# overrides, so a later edit of the YAML cannot unmatch them (for Hopper they equal the YAML
# but for its annealed trust region, held constant here as sb3-contrib's is).
# Both line searches shrink by 0.8 at most 10 times; both normalise advantages and take the
# policy step on the whole batch (sb3 sub_sampling_factor 1).
TASKS = {
    "hopper": Task(
        "Hopper-v5",
        "configs/hopper.yaml",
        (
            "agent=trpo",
            "gamma=0.99",
            "gae_lambda=0.95",
            "normalize_advantages=true",
            "policy.max_kl=0.03",  # the zoo's 0.01 and 0.1 per action dimension (3)
            "policy.schedule=constant",  # configs/hopper.yaml anneals; sb3-contrib cannot
            "policy.cg_iters=25",
            "policy.damping=0.3",
            "policy.backtrack_coeff=0.8",
            "policy.max_backtracks=10",
            "value.epochs=20",
            "value.minibatch_size=128",
            "value.lr=0.001",
            "rollout.backend=sync",
            "rollout.num_envs=2",
            "rollout.steps_per_env=1024",
            "normalize.observations=true",
            "normalize.rewards=true",
            "normalize.clip_observations=10",
            "normalize.clip_rewards=10",
            "network.hidden_sizes=[64, 64]",
            "network.activation=tanh",
        ),
        "rl-baselines3-zoo",
    ),
    "cartpole": Task(
        "CartPole-v1",
        "configs/cartpole.yaml",
        (
            "agent=trpo",
            "gamma=0.99",
            "gae_lambda=0.95",
            "normalize_advantages=true",
            "policy.max_kl=0.01",
            "policy.schedule=constant",
            "policy.cg_iters=15",
            "policy.damping=0.1",
            "policy.backtrack_coeff=0.8",
            "policy.max_backtracks=10",
            "value.epochs=10",
            "value.minibatch_size=128",
            "value.lr=0.001",
            "rollout.backend=sync",
            "rollout.num_envs=1",
            "rollout.steps_per_env=2048",
            "normalize.observations=false",
            "normalize.rewards=false",
            "network.hidden_sizes=[64, 64]",
            "network.activation=tanh",
        ),
        "sb3-contrib class defaults",
    ),
}
SYSTEMS = ("bare env", "trpo-ng", "sb3-contrib")


# =========================================================================== children
# Each prints one line RESULT_PREFIX + JSON. Heavy imports happen inside the functions.


def _proc_mib(path: str, field: str) -> float | None:
    """A "Field:  N kB" line of a /proc file in MiB; None where the file or field is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mib(pid: int | str = "self") -> float:
    """A process's peak resident memory: VmHWM, else (this process) ru_maxrss (KiB on Linux)."""
    hwm = _proc_mib(f"/proc/{pid}/status", "VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PssSampler:
    """Peak proportional set size (PSS) of this process and its descendants, sampled every
    ``every_s`` seconds by a thread while the ``with`` block runs (Linux; 0 elsewhere).

    Unlike summed peak RSS, PSS splits a page shared by n processes n ways, so a trainer and
    the processes it forks are not charged twice for the libraries and pages they share."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s, self.peak_mib = every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            total = sum(_pss_mib(pid) for pid in _process_tree(os.getpid()))
            self.peak_mib = max(self.peak_mib, total)


def _process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += map(int, Path(f"/proc/{p}/task/{task}/children").read_text().split())
        except OSError:
            pass
    return tree


def _pss_mib(pid: int) -> float:
    return _proc_mib(f"/proc/{pid}/smaps_rollup", "Pss") or 0.0  # 0: ended meanwhile, no /proc


def child_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """Random actions on one env, as ../shared/bench/raw_env.py (actions drawn beforehand)."""
    import gymnasium as gym

    env = gym.make(spec["env_id"])
    env.reset(seed=SEED)
    env.action_space.seed(SEED)
    actions = [env.action_space.sample() for _ in range(1000)]
    n = spec["steps"]
    with PssSampler() as pss:
        start = time.perf_counter()
        for i in range(n):
            _, _, term, trunc, _ = env.step(actions[i % 1000])
            if term or trunc:
                env.reset()
        wall = time.perf_counter() - start
    env.close()
    return {
        "steps": n,
        "wall_s": wall,
        "peak_rss_mib": _peak_rss_mib(),
        "peak_pss_mib": pss.peak_mib,
    }


def child_trpo(spec: dict[str, Any]) -> dict[str, Any]:
    """trpo-ng's ``train``; the span runs from the first ``collect`` to the final evaluation.

    Hooks (wrappers, no behaviour change) mark the span and time GAE and TensorBoard logging.
    """
    import torch

    torch.set_num_threads(1)
    import trpo_ng.trainer as trainer
    from trpo_ng import __version__
    from trpo_ng.config import load_config
    from trpo_ng.rollout import RolloutWorker
    from trpo_ng.value_fit import BackgroundFit
    from trpo_ng.vector import SubprocessVectorEnv

    marks: dict[str, float] = {}
    spent = {"gae_s": 0.0, "log_s": 0.0, "checkpoint_s": 0.0}

    def timed(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if "end" not in marks:  # only within the timed span
                    spent[key] += time.perf_counter() - t

        return wrapper

    collect, evaluate = RolloutWorker.collect, trainer.evaluate

    def first_collect(self: Any, agent: Any) -> Any:
        marks.setdefault("start", time.perf_counter())
        return collect(self, agent)

    def final_evaluate(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault("end", time.perf_counter())
        return evaluate(*args, **kwargs)

    # env processes (rollout.backend=subprocess|hybrid) and the value fit's process
    # (value.background): their peaks, read before they exit
    env_peaks: list[float] = []
    close_envs = SubprocessVectorEnv.close

    def close_and_measure(self: Any, *, terminate: bool = False) -> None:
        env_peaks.extend(_peak_rss_mib(proc.pid) for proc in self._procs)
        close_envs(self, terminate=terminate)

    close_fit = BackgroundFit.close

    def close_fit_and_measure(self: Any) -> None:  # value.background: the fit's process
        if self._process is not None:
            env_peaks.append(_peak_rss_mib(self._process.pid))
        close_fit(self)

    SubprocessVectorEnv.close = close_and_measure  # type: ignore[method-assign]
    BackgroundFit.close = close_fit_and_measure  # type: ignore[method-assign]
    RolloutWorker.collect = first_collect  # type: ignore[method-assign]
    trainer.evaluate = final_evaluate
    trainer.gae = timed(trainer.gae, "gae_s")
    trainer.Logger.scalars = timed(trainer.Logger.scalars, "log_s")  # type: ignore[method-assign]
    if hasattr(trainer, "write_checkpoint"):  # periodic checkpoints, where the trainer has them
        trainer.write_checkpoint = timed(trainer.write_checkpoint, "checkpoint_s")

    overrides = [
        *spec["overrides"],
        f"seed={SEED}",
        f"total_steps={spec['steps']}",
        "eval.every=0",
        "eval.episodes=1",
        "torch_threads=1",
        f"log_dir={spec['log_dir']}",
        f"run_name={spec['run_name']}",
    ]
    cfg = load_config(ROOT / spec["config"], overrides)
    with PssSampler() as pss:
        t0 = time.perf_counter()
        result = trainer.train(cfg, config_name=Path(spec["config"]).stem, quiet=True)
        train_wall = time.perf_counter() - t0
    peak = _peak_rss_mib() + sum(env_peaks)  # shared pages count once per process
    hooked = "start" in marks and "end" in marks
    sums, last_sps = _read_scalars(result.run_dir)
    c, v, p = cfg.rollout, cfg.value, cfg.policy
    n = cfg.normalize
    return {
        "steps": result.steps,
        "wall_s": marks["end"] - marks["start"] if hooked else train_wall,
        "span": "first collect to final eval" if hooked else "whole train() call (hooks missed)",
        "train_call_s": train_wall,
        "peak_rss_mib": peak,
        "peak_pss_mib": pss.peak_mib,
        "collect_s": sums.get("time/collect_s", float("nan")),
        "policy_update_s": sums.get("time/policy_update_s", float("nan")),
        "value_update_s": sums.get("time/value_update_s", float("nan")),
        "gae_s": spent["gae_s"],
        "log_s": spent["log_s"],
        "checkpoint_s": spent["checkpoint_s"],
        "trainer_steps_per_second": last_sps,
        "version": __version__,
        "settings": {
            "rollout": f"{c.num_envs} x {c.steps_per_env}",
            "envs_in": ENVS_IN[c.backend],
            "critic_in": "a second process, beside the policy step and the next collection"
            if v.background
            else "this process, after the policy step",
            "gamma": f"{cfg.gamma:g}",
            "gae_lambda": f"{cfg.gae_lambda:g}",
            "max_kl": f"{p.max_kl:g}",
            "max_kl_schedule": p.schedule,
            "cg_iters": str(p.cg_iters),
            "cg_damping": f"{p.damping:g}",
            "line_search": f"x{p.backtrack_coeff:g}, {p.max_backtracks} max",
            "policy_batch": "whole batch",
            "critic": f"{v.epochs} epochs x {v.minibatch_size}, Adam {v.lr:g}",
            "norm_adv": str(cfg.normalize_advantages).lower(),
            "network": "x".join(map(str, cfg.network.hidden_sizes)) + f" {cfg.network.activation}",
            "normalize": (
                f"obs {str(n.observations).lower()} (clip {n.clip_observations:g}), "
                f"reward {str(n.rewards).lower()} (clip {n.clip_rewards:g})"
                if n.observations or n.rewards
                else "none"
            ),
        },
    }


def _read_scalars(run_dir: Path) -> tuple[dict[str, float], float]:
    """Per-tag sums of the time/ scalars in the run's TensorBoard events, and the last
    ``time/steps_per_second``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("time/")]
    sums = {t: sum(e.value for e in acc.Scalars(t)) for t in tags}
    sps = acc.Scalars("time/steps_per_second") if "time/steps_per_second" in tags else []
    return sums, (sps[-1].value if sps else float("nan"))


def child_sb3(spec: dict[str, Any]) -> dict[str, Any]:
    """sb3-contrib TRPO with sb3_runner.py's settings; span: first rollout to training end."""
    import torch

    torch.set_num_threads(1)
    import numpy as np
    import sb3_contrib
    from gymnasium.spaces import Box
    from sb3_runner import make_model  # benchmarks/ is this script's directory
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start = self.end = float("nan")
            self.collect_s, self._t = 0.0, 0.0

        def _on_rollout_start(self) -> None:
            self._t = time.perf_counter()
            if self.start != self.start:  # nan: the first rollout
                self.start = self._t

        def _on_rollout_end(self) -> None:
            self.collect_s += time.perf_counter() - self._t

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self.end = time.perf_counter()

    model, _ = make_model(spec["env_id"], SEED)
    env = model.get_env()
    rollout = model.n_steps * env.num_envs
    clock = Clock()
    with PssSampler() as pss:
        t0 = time.perf_counter()
        model.learn(max(1, spec["steps"] // rollout) * rollout, callback=clock)
        learn_wall = time.perf_counter() - t0
    peak = _peak_rss_mib()
    arch = model.policy.net_arch
    pi = arch["pi"] if isinstance(arch, dict) else arch
    act = model.policy.activation_fn.__name__.lower()
    lr = model.learning_rate
    if isinstance(env, VecNormalize):
        normalize = (
            f"obs {str(env.norm_obs).lower()} (clip {env.clip_obs:g}), "
            f"reward {str(env.norm_reward).lower()} (clip {env.clip_reward:g})"
        )
    else:
        normalize = "none"
    ss = model.sub_sampling_factor
    # sb3-contrib averages a Gaussian policy's KL over the action dimensions (trpo-ng sums
    # it): its target_kl and cg_damping in trpo-ng's units (benchmarks/sb3_parity.py)
    per_dim = int(np.prod(env.action_space.shape)) if isinstance(env.action_space, Box) else 1
    env.close()
    return {
        "steps": int(model.num_timesteps),
        "wall_s": clock.end - clock.start,
        "span": "first rollout to training end",
        "train_call_s": learn_wall,
        "collect_s": clock.collect_s,
        "peak_rss_mib": peak,
        "peak_pss_mib": pss.peak_mib,
        "version": sb3_contrib.__version__,
        "settings": {
            "rollout": f"{env.num_envs} x {model.n_steps}",
            "envs_in": (
                "one process per env"
                if type(getattr(env, "venv", env)).__name__ == "SubprocVecEnv"
                else "this process"
            ),
            "critic_in": "this process, after the policy step",
            "gamma": f"{model.gamma:g}",
            "gae_lambda": f"{model.gae_lambda:g}",
            "max_kl": f"{model.target_kl * per_dim:g}",
            "max_kl_schedule": "constant",
            "cg_iters": str(model.cg_max_steps),
            "cg_damping": f"{model.cg_damping * per_dim:g}",
            "line_search": (
                f"x{model.line_search_shrinking_factor:g}, {model.line_search_max_iter} max"
            ),
            "policy_batch": "whole batch" if ss == 1 else f"1/{ss} of the batch",
            "critic": (
                f"{model.n_critic_updates} epochs x {model.batch_size}, Adam "
                + (f"{lr:g}" if isinstance(lr, float | int) else "schedule")
            ),
            "norm_adv": str(model.normalize_advantage).lower(),
            "network": "x".join(map(str, pi)) + f" {act}",
            "normalize": normalize,
        },
    }


def child_policy_update(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the policy part of ``agent.update`` on synthetic batches (value fit skipped)."""
    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    from agents import make_agent
    from trpo_ng.config import load_config
    from trpo_ng.rollout import Batch

    cfg = load_config(ROOT / spec["config"], [*spec["overrides"], "value.epochs=0"])
    env = gym.make(cfg.env_id)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    obs_dim = env.observation_space.shape[0]
    env.close()
    n_envs = cfg.rollout.num_envs

    def batch_of(size: int) -> tuple[Any, Any, Any]:
        T = size // n_envs
        obs = torch.randn(T, n_envs, obs_dim)  # like normalised observations
        act = agent.act(obs.flatten(0, 1)).view(T, n_envs, -1)
        zeros = torch.zeros(T, n_envs)
        flags = torch.zeros(T, n_envs, dtype=torch.bool)
        batch = Batch(
            obs_TND=obs,
            act_TN=act,
            rew_TN=zeros,
            term_TN=flags,
            trunc_TN=flags,
            values_TN=torch.randn(T, n_envs),
            next_values_TN=torch.randn(T, n_envs),
        )
        return batch, torch.randn(T, n_envs), torch.randn(T, n_envs)

    agent.update(*batch_of(spec["sizes"][0]))  # warm-up
    rows = []
    for size in spec["sizes"]:
        batch, adv, ret = batch_of(size)
        times, backtracks = [], []
        for _ in range(POLICY_CALLS):
            s = agent.update(batch, adv, ret).scalars()
            times.append(s["time/policy_update_s"])
            backtracks.append(int(s["train/line_search_backtracks"]))
        rows.append({"batch": size, "times_s": times, "backtracks": backtracks})
    return {
        "env_id": cfg.env_id,
        "cg_iters": cfg.policy.cg_iters,
        "rows": rows,
        "peak_rss_mib": _peak_rss_mib(),
    }


CHILDREN = {
    "bare": child_bare,
    "trpo": child_trpo,
    "sb3": child_sb3,
    "policy_update": child_policy_update,
}


# =========================================================================== parent


class RunFailed(Exception):
    pass


def run_child(python: Path | str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    argv = [str(python), str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **ONE_THREAD}
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RunFailed(f"{kind} exit code {proc.returncode}: {tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def sb3_problem(python: Path) -> str | None:
    """Why sb3-contrib cannot run from ``python``, or None."""
    if not python.is_file():
        return f"no sb3-contrib venv at {python} (see benchmarks/README.md)"
    probe = subprocess.run([str(python), "-c", "import sb3_contrib"], capture_output=True)
    return None if probe.returncode == 0 else f"{python} cannot import sb3_contrib"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", choices=["hopper", "cartpole", "both"], default="both")
    p.add_argument(
        "--steps", type=int, help="env steps per run (default 50000; whole batches within it)"
    )
    p.add_argument("--repeats", type=int, default=1, help="runs per system, interleaved")
    p.add_argument(
        "--backend",
        choices=list(ENVS_IN),
        default="sync",
        help="trpo-ng's rollout.backend: envs in its process, one process per env, env 0 "
        "in its process and the others one process each, or one worker per env (same n_envs) "
        "with worker 0 in its process and the others one process each",
    )
    p.add_argument(
        "--value-background",
        action="store_true",
        help="trpo-ng's value.background=true: the critic fitted in a second process beside the "
        "policy step and the next collection (same weights; peak RSS then adds that process's)",
    )
    p.add_argument("--no-sb3", action="store_true", help="skip sb3-contrib TRPO")
    p.add_argument("--sb3-python", type=Path, default=DEFAULT_SB3_PYTHON, metavar="PATH")
    p.add_argument("--no-policy-update", action="store_true", help="skip the batch-size sweep")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers as JSON")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    return p


DEFAULT_STEPS = {"hopper": 50_000, "cartpole": 50_000}


def _one_worker_per_env(task: Task) -> list[str]:
    """The process backend's layout: as many workers as envs, one env each."""
    envs = next(o.split("=")[1] for o in task.overrides if o.startswith("rollout.num_envs="))
    return [f"rollout.num_workers={envs}"]


def measure(args: argparse.Namespace, sb3: bool, log_dir: Path) -> dict[str, Any]:
    tasks = ["hopper", "cartpole"] if args.task == "both" else [args.task]
    out: dict[str, Any] = {"tasks": {}, "failures": []}
    for name in tasks:
        task = TASKS[name]
        steps = args.steps or DEFAULT_STEPS[name]
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
        plan: list[tuple[str, Path | str, str, dict[str, Any]]] = []
        for r in range(args.repeats):
            common = {"env_id": task.env_id, "steps": steps}
            plan.append(("bare env", sys.executable, "bare", common))
            trpo = {
                **common,
                "config": task.config,
                "overrides": [
                    *task.overrides,
                    f"rollout.backend={args.backend}",
                    *(_one_worker_per_env(task) if args.backend == "process" else []),
                    f"value.background={str(args.value_background).lower()}",
                ],
                "log_dir": str(log_dir),
                "run_name": f"{name}-r{r}",
            }
            plan.append(("trpo-ng", sys.executable, "trpo", trpo))
            if sb3:
                plan.append(("sb3-contrib", args.sb3_python, "sb3", common))
        for i, (system, python, kind, spec) in enumerate(plan, start=1):
            label = f"[{task.env_id} {i}/{len(plan)}] {system}"
            try:
                res = run_child(python, kind, spec)
            except RunFailed as e:
                out["failures"].append(f"{label}: {e}")
                print(f"{label}: FAILED ({e})", file=sys.stderr, flush=True)
                continue
            res["steps_per_s"] = res["steps"] / res["wall_s"]
            runs[system].append(res)
            print(
                f"{label}: {res['steps_per_s']:,.0f} steps/s "
                f"({res['steps']:,} steps, {res['wall_s']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        out["tasks"][name] = {"env_id": task.env_id, "budget": steps, "runs": runs}
    if not args.no_policy_update:
        task = TASKS["hopper"]
        spec = {
            "config": task.config,
            "overrides": list(task.overrides),
            "sizes": list(POLICY_BATCH_SIZES),
        }
        label = "[policy update] batch sizes " + ", ".join(map(str, POLICY_BATCH_SIZES))
        try:
            out["policy_update"] = run_child(sys.executable, "policy_update", spec)
            print(f"{label}: done", file=sys.stderr, flush=True)
        except RunFailed as e:
            out["failures"].append(f"policy update: {e}")
            print(f"{label}: FAILED ({e})", file=sys.stderr, flush=True)
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the median rate (the lower middle one for an even count)."""
    if not runs:
        return None
    ordered = sorted(runs, key=lambda r: r["steps_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    for task in raw["tasks"].values():
        med: dict[str, Any] = {}
        for system, runs in task["runs"].items():
            if runs:
                med[system] = {
                    "steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
                    "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                    "peak_pss_mib": statistics.median(
                        r.get("peak_pss_mib", float("nan")) for r in runs
                    ),
                    "all_steps_per_s": [round(r["steps_per_s"], 1) for r in runs],
                }
        a, b, c = (med.get(s, {}).get("steps_per_s") for s in SYSTEMS)
        task["median"] = med
        task["ratios"] = {
            "trpo-ng / sb3-contrib": b / c if b and c else None,
            "trpo-ng / bare env": b / a if b and a else None,
            "sb3-contrib / bare env": c / a if c and a else None,
        }
        run = median_run(task["runs"]["trpo-ng"])
        if run:
            total = run["wall_s"]
            parts = {
                "collect": run["collect_s"],
                "policy update": run["policy_update_s"],
                "value update": run["value_update_s"],
            }
            parts["other"] = total - sum(parts.values())
            task["trpo_breakdown"] = {
                "total_s": total,
                "parts_s": parts,
                "of_other_s": {
                    "GAE": run["gae_s"],
                    "TensorBoard scalars": run["log_s"],
                    "checkpoints": run.get("checkpoint_s", 0.0),
                },
                "trainer_steps_per_second": run["trainer_steps_per_second"],
            }
        run = median_run(task["runs"]["sb3-contrib"])
        if run:
            task["sb3_breakdown"] = {
                "total_s": run["wall_s"],
                "parts_s": {
                    "collect": run["collect_s"],
                    "update + rest": run["wall_s"] - run["collect_s"],
                },
            }
    pu = raw.get("policy_update")
    if pu:
        base = None
        for row in pu["rows"]:
            row["median_s"] = statistics.median(row["times_s"])
            row["us_per_sample"] = row["median_s"] / row["batch"] * 1e6
            base = base or row["us_per_sample"]
            row["per_sample_vs_first"] = row["us_per_sample"] / base
    return raw


# --------------------------------------------------------------------------- printing


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, *, left: int = 1
) -> str:
    """Aligned text or a markdown table; the first ``left`` columns flush left, the rest right."""
    if markdown:
        rule = ["---" if i < left else "---:" for i in range(len(headers))]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def fmt(r: Sequence[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in pairs]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(headers), *(fmt(r) for r in rows)])


def settings_table(task: dict[str, Any], markdown: bool) -> str | None:
    labels = {
        "rollout": "envs x steps per env",
        "envs_in": "envs stepped in",
        "critic_in": "critic fitted in",
        "gamma": "gamma",
        "gae_lambda": "GAE lambda",
        "max_kl": "max KL (sb3: target_kl x action dims)",
        "max_kl_schedule": "max KL schedule",
        "cg_iters": "CG iterations",
        "cg_damping": "CG damping (sb3: x action dims)",
        "line_search": "line search",
        "policy_batch": "policy step on",
        "critic": "critic",
        "norm_adv": "normalise advantages",
        "network": "networks",
        "normalize": "VecNormalize",
    }
    trpo = median_run(task["runs"]["trpo-ng"])
    sb3 = median_run(task["runs"]["sb3-contrib"])
    if not trpo and not sb3:
        return None
    rows = []
    for key, label in labels.items():
        t = trpo["settings"].get(key, "-") if trpo else "-"
        s = sb3["settings"].get(key, "-") if sb3 else "-"
        same = "yes" if trpo and sb3 and t == s else ("-" if not (trpo and sb3) else "NO")
        rows.append([label, t, s, same])
    return table(["setting", "trpo-ng", "sb3-contrib", "same"], rows, markdown, left=4)


def render(result: dict[str, Any], markdown: bool) -> str:
    meta = result["meta"]
    out = []
    h = "## " if markdown else "== "
    out.append(
        f"{'# ' if markdown else ''}Throughput: env steps/s over the whole training run "
        f"(collection + update + logging); {meta['repeats']} run(s) per system, median"
    )
    out.append("")
    out.append(
        f"{meta['date']}, {meta['host']}: {meta['cpus']} CPUs, one torch/BLAS thread per "
        f"process, runs one at a time; load average {meta['load_start']} at start, "
        f"{meta['load_end']} at end; {meta['versions']}."
    )
    out.append(f"Command: `{meta['command']}`")
    for name, task in result["tasks"].items():
        med = task["median"]
        trained = {s: r[0]["steps"] for s, r in task["runs"].items() if r}
        out += ["", f"{h}{task['env_id']} ({TASKS[name].sb3_settings} settings)", ""]
        settings = settings_table(task, markdown)
        if settings:
            out += [settings, ""]
        rows = []
        for label, system in zip(("(a)", "(b)", "(c)"), SYSTEMS, strict=True):
            m = med.get(system)
            if not m:
                rows.append([f"{label} {system}", "-", "-", "-", "-", "not run"])
                continue
            rows.append(
                [
                    f"{label} {system}",
                    f"{m['steps_per_s']:,.0f}",
                    f"{trained[system]:,}",
                    f"{m['peak_rss_mib']:,.0f}",
                    f"{m['peak_pss_mib']:,.0f}",
                    ", ".join(f"{x:,.0f}" for x in m["all_steps_per_s"]),
                ]
            )
        headers = ["system", "steps/s", "steps", "peak RSS MiB", "peak PSS MiB", "runs"]
        out.append(table(headers, rows, markdown))
        ratios = [f"{k} {v:.3f}" for k, v in task["ratios"].items() if v is not None]
        if ratios:
            out += ["", "ratios: " + "; ".join(ratios)]
        bd = task.get("trpo_breakdown")
        if bd:
            total = bd["total_s"]
            rows = [[k, f"{v:.2f}", f"{100 * v / total:.1f}%"] for k, v in bd["parts_s"].items()]
            rows += [
                [f"  of which {k}", f"{v:.2f}", f"{100 * v / total:.1f}%"]
                for k, v in bd["of_other_s"].items()
            ]
            rows.append(["total", f"{total:.2f}", "100%"])
            out += ["", "trpo-ng time breakdown (median run):", ""]
            out.append(table(["phase", "s", "share"], rows, markdown))
            out.append("")
            out.append(
                "trainer's own time/steps_per_second (last value): "
                f"{bd['trainer_steps_per_second']:,.0f}"
            )
        sb = task.get("sb3_breakdown")
        if sb:
            parts = ", ".join(
                f"{k} {v:.2f} s ({100 * v / sb['total_s']:.1f}%)" for k, v in sb["parts_s"].items()
            )
            out += ["", f"sb3-contrib (median run): {parts}; total {sb['total_s']:.2f} s"]
    pu = result.get("policy_update")
    if pu:
        out += [
            "",
            f"{h}policy update alone ({pu['env_id']} policy, configs/hopper.yaml, "
            f"CG {pu['cg_iters']}; median of {POLICY_CALLS} calls)",
            "",
        ]
        rows = [
            [
                f"{r['batch']:,}",
                f"{1000 * r['median_s']:.1f}",
                f"{r['us_per_sample']:.2f}",
                f"{r['per_sample_vs_first']:.2f}",
                ", ".join(map(str, r["backtracks"])),
            ]
            for r in pu["rows"]
        ]
        heads = [
            "batch",
            "ms",
            "µs/sample",
            f"per sample vs {pu['rows'][0]['batch']}",
            "backtracks",
        ]
        out.append(table(heads, rows, markdown))
    if result["failures"]:
        out += ["", "FAILED:"] + [f"- {f}" for f in result["failures"]]
    return "\n".join(out)


def _versions(sb3_version: str | None) -> str:
    import gymnasium
    import torch

    from trpo_ng import __version__

    v = f"trpo-ng {__version__}, torch {torch.__version__}, gymnasium {gymnasium.__version__}"
    v += f", numpy {installed('numpy')}, mujoco {installed('mujoco')}"
    return v + (f", sb3-contrib {sb3_version}" if sb3_version else "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.child:
        kind, spec = args.child
        print(RESULT_PREFIX + json.dumps(CHILDREN[kind](json.loads(spec))), flush=True)
        return 0
    if (args.steps is not None and args.steps <= 0) or args.repeats < 1:
        print("throughput.py: error: --steps and --repeats must be >= 1", file=sys.stderr)
        return 2
    sb3 = not args.no_sb3
    if sb3 and (problem := sb3_problem(args.sb3_python)):
        print(f"throughput.py: skipping sb3-contrib: {problem}", file=sys.stderr)
        sb3 = False
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="trpo-ng-throughput-") as tmp:
        raw = measure(args, sb3, Path(tmp))
    result = summarize(raw)
    sb3_version = next(
        (r[0]["version"] for t in result["tasks"].values() if (r := t["runs"]["sb3-contrib"])),
        None,
    )
    result["meta"] = {
        "date": f"{datetime.now():%Y-%m-%d %H:%M}",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "load_start": load_start,
        "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": _versions(sb3_version),
        "command": shlex.join(["python", "benchmarks/throughput.py", *argv]),
    }
    print(render(result, args.markdown))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
