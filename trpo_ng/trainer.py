"""The training loop: collect -> advantages -> update -> log -> evaluate -> checkpoint.

A run lives in ``log_dir/run_name``: ``config.yaml``, TensorBoard events, ``checkpoints/`` and
the final ``model.safetensors``. ``train(cfg, resume=run_dir)`` continues a run from its newest
loadable checkpoint with every piece of state restored; episodes in flight at the checkpoint
restart from env seeds derived from the run seed and the iteration, so two resumes from one
checkpoint are identical.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

import envs as _custom_envs  # noqa: F401  (registers the custom environments)
from envs.wrappers import make_env, make_wrappers
from trpo_ng import __version__
from trpo_ng.advantages import gae
from trpo_ng.background_eval import BackgroundEvaluation, Evaluation
from trpo_ng.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    save_model,
    write_checkpoint,
)
from trpo_ng.config import Config, ConfigError, config_to_dict, dump_config
from trpo_ng.encoders import is_image_space
from trpo_ng.extras import require
from trpo_ng.logging import Logger
from trpo_ng.normalization import ObservationNormalizer, RewardScaler
from trpo_ng.rollout import (
    Actor,
    Batch,
    RolloutWorker,
    WorkerError,
    Workers,
    evaluate,
    film_episode,
    make_workers,
)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never reuse a training seed


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. repeated numerical faults); the last checkpoint is kept."""


class Stats(Protocol):
    skipped: bool  # the update changed nothing (a NaN or inf in the batch or the step)

    def scalars(self) -> dict[str, float]:
        """Values to log, by full TensorBoard tag (train/..., time/...)."""
        ...

    def histograms(self) -> dict[str, torch.Tensor]:
        """Distributions to log, by full TensorBoard tag (e.g. the policy's log-std)."""
        ...


class Agent(Actor, Protocol):
    """All the trainer knows of an agent."""

    def update(self, batch: Batch, adv_TN: torch.Tensor, ret_TN: torch.Tensor) -> Stats: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None:
        """Release what the agent runs besides the trainer (a background value fit)."""
        ...


@dataclass
class Progress:
    """Counters of a run; saved in every checkpoint."""

    iteration: int = 0
    steps: int = 0
    next_eval: int = 0
    next_video: int = 0
    skipped_updates: int = 0
    worker_restarts: int = 0  # rollout workers replaced after a fault
    consecutive_skips: int = 0
    eval_history: list[list[float]] = field(default_factory=list)  # [steps, mean return]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    eval_history: list[tuple[int, float]]  # (env steps, deterministic eval mean return)
    signal: int | None = None  # the signal that stopped the run early, if any
    eval_s: float = 0.0  # wall seconds this call spent in the periodic evaluations

    @property
    def final_eval(self) -> float:
        return self.eval_history[-1][1]


# --------------------------------------------------------------------------- building


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def env_seed(seed: int, iteration: int) -> int:
    """Seed for the envs when (re)starting at ``iteration``: the run seed itself at the start."""
    if iteration == 0:
        return seed
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0])


def make_run_dir(cfg: Config, config_name: str) -> Path:
    """A fresh directory under ``log_dir``; never reuses one that already holds files."""
    name = cfg.run_name or f"{config_name}-s{cfg.seed}-{datetime.now():%Y%m%d-%H%M%S-%f}"
    run_dir = Path(cfg.log_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"run directory {run_dir} already holds files; choose another run_name "
            "or continue it with --resume"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(dump_config(cfg))
    except OSError as e:
        raise ConfigError(f"cannot write to run directory {run_dir}: {e.strerror}") from None
    return run_dir


@contextmanager
def _env_errors(env_id: str) -> Iterator[None]:
    """Gymnasium's errors for a bad env id or a missing extra, and a ValueError (a space no
    rollout supports, a wrapper that does not fit the env, a keyword argument it does not
    take) become one-line config errors."""
    try:
        yield
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(
            f"env {env_id!r} needs an optional dependency ({e}); for MuJoCo tasks: "
            "pip install 'trpo-ng[mujoco]', for Atari: pip install 'trpo-ng[atari]'"
        ) from None
    except gym.error.Error as e:
        hint = ""
        if "NoFrameskip" in env_id or env_id.startswith("ALE/"):
            hint = " (Atari envs need: pip install 'trpo-ng[atari]')"
        raise ConfigError(f"config key 'env_id': cannot make {env_id!r}: {e}{hint}") from None
    except ConfigError:  # a ValueError too, already one line (a missing extra)
        raise
    except ValueError as e:
        raise ConfigError(f"env {env_id!r}: {e}") from None


def make_normalizers(
    cfg: Config, vec_env: Workers
) -> tuple[ObservationNormalizer | None, RewardScaler | None]:
    n = cfg.normalize
    obs_norm = (
        ObservationNormalizer(
            vec_env.single_observation_space.shape,
            clip=n.clip_observations,
            freeze_after=n.freeze_observations_after,
        )
        if n.observations
        else None
    )
    rew_scale = (
        RewardScaler(vec_env.num_envs, gamma=cfg.gamma, clip=n.clip_rewards) if n.rewards else None
    )
    return obs_norm, rew_scale


def hparams_of(cfg: Config) -> dict[str, Any]:
    """The config's scalar settings under dotted names, for TensorBoard's HPARAMS tab."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, bool | int | float | str):
                flat[f"{prefix}{key}"] = value
            else:
                flat[f"{prefix}{key}"] = str(value)

    walk(config_to_dict(cfg), "")
    return flat


def model_state(agent: Agent, obs_norm: ObservationNormalizer | None) -> dict[str, Any]:
    """What a model file holds: the agent and the observation statistics it acts with."""
    state: dict[str, Any] = {"agent": agent.state_dict()}
    if obs_norm is not None:
        state["obs_normalizer"] = obs_norm.state_dict()
    return state


def load_model_state(
    state: dict[str, Any], agent: Agent, obs_norm: ObservationNormalizer | None, *, source: Path
) -> None:
    """Restore ``model_state``; a file from another task is a CheckpointError, not a crash."""
    try:
        agent.load_state_dict(state["agent"])
        if obs_norm is not None:
            obs_norm.load_state_dict(state["obs_normalizer"])
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{source} does not fit this config's task and network ({first})"
        ) from None


def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])


# --------------------------------------------------------------------------- signals


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM ask the loop to stop after the current iteration (the list gets the
    signal number); a second one stops at once with KeyboardInterrupt."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals to the caller
        yield received
        return
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- the loop


def train(
    cfg: Config,
    *,
    config_name: str = "run",
    quiet: bool = False,
    resume: Path | None = None,
) -> TrainResult:
    """Train ``cfg.agent`` on ``cfg.env_id`` for whole batches within ``cfg.total_steps``,
    or continue the run in ``resume`` from its newest loadable checkpoint."""
    torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    checkpoint: dict[str, Any] | None = None
    if resume is not None:
        path, checkpoint, problems = load_latest_checkpoint(Path(resume) / CHECKPOINT_DIR)
        for problem in problems:
            print(f"trpo-ng: skipped a broken checkpoint: {problem}", file=sys.stderr)
    progress = Progress(next_eval=cfg.eval.every, next_video=cfg.eval.video_every)
    if checkpoint is not None:
        progress = Progress(**checkpoint["progress"])
    from agents import make_agent  # agents are built from trpo_ng, so imported late

    if cfg.eval.video_every:  # evaluation videos are GIFs encoded with Pillow
        require("PIL", extra="video", purpose="eval.video_every")
    with _env_errors(cfg.env_id):  # the eval env sees what the training envs see
        wrappers = make_wrappers(atari=cfg.wrappers.atari, frame_stack=cfg.wrappers.frame_stack)
        # one env per evaluation episode: they play at once (rollout.evaluate)
        eval_envs = [
            make_env(cfg.env_id, wrappers, **cfg.env_kwargs) for _ in range(cfg.eval.episodes)
        ]
        eval_env = eval_envs[0]
        video_env = (
            make_env(cfg.env_id, wrappers, render_mode="rgb_array", **cfg.env_kwargs)
            if cfg.eval.video_every
            else None
        )
    vec_env: Workers | None = None
    try:
        if cfg.normalize.observations and is_image_space(eval_env.observation_space):
            raise ConfigError(
                "config key 'normalize.observations' must be false for image observations "
                "(the CNN scales pixels by 1/255)"
            )
        try:  # before any worker starts: spaces no policy supports are a config error
            agent: Agent = make_agent(cfg, eval_env.observation_space, eval_env.action_space)
        except ValueError as e:
            raise ConfigError(f"env {cfg.env_id!r}: {e}") from None
        with _env_errors(cfg.env_id):  # envs, subprocesses or Ray actors (each its own agent)
            vec_env = make_workers(cfg, agent_factory=partial(make_agent, cfg))
        obs_norm, rew_scale = make_normalizers(cfg, vec_env)
        if checkpoint is not None:
            load_model_state(checkpoint["model"], agent, obs_norm, source=path)
            if rew_scale is not None:
                rew_scale.load_state_dict(checkpoint["reward_scaler"])
            _set_rng_state(checkpoint["rng"])
            run_dir = Path(resume)
            (run_dir / CONFIG_FILE).write_text(dump_config(cfg))
        else:
            run_dir = make_run_dir(cfg, config_name)
        worker = RolloutWorker(
            vec_env,
            steps_per_env=cfg.rollout.steps_per_env,
            seed=env_seed(cfg.seed, progress.iteration),
            obs_normalizer=obs_norm,
            reward_scaler=rew_scale,
            max_restarts=cfg.rollout.max_worker_restarts,
        )
        # purge_step: TensorBoard drops points a crashed run logged after its last checkpoint
        logger = Logger(
            run_dir,
            stream=None if quiet else sys.stdout,
            purge_step=progress.steps + 1 if checkpoint is not None else None,
        )
    except BaseException:
        if vec_env is not None:
            vec_env.close()
        for env in eval_envs:
            env.close()
        if video_env is not None:
            video_env.close()
        raise

    def save_checkpoint() -> None:
        state = {
            "model": model_state(agent, obs_norm),
            "progress": asdict(progress),
            "rng": _rng_state(),
            "config": config_to_dict(cfg),
            "version": __version__,
        }
        if rew_scale is not None:
            state["reward_scaler"] = rew_scale.state_dict()
        write_checkpoint(
            run_dir / CHECKPOINT_DIR, progress.iteration, state, keep=cfg.checkpoint.keep
        )

    def record_video() -> None:
        """One deterministic episode on the rgb_array env, into TensorBoard's video tab."""
        frames = film_episode(
            agent, video_env, seed=cfg.seed + EVAL_SEED_OFFSET, obs_normalizer=obs_norm
        )
        fps = int(video_env.metadata.get("render_fps") or 30)
        logger.video("eval/video", frames, progress.steps, fps=fps)
        while progress.next_video <= progress.steps:
            progress.next_video += cfg.eval.video_every

    evaluation = partial(
        evaluate,
        agent,
        eval_envs,
        episodes=cfg.eval.episodes,
        seed=cfg.seed + EVAL_SEED_OFFSET,
        obs_normalizer=obs_norm,
    )
    background = BackgroundEvaluation(evaluation) if cfg.eval.background else None
    eval_s = 0.0  # the time training stood still for evaluations

    def log_evaluations(finished: list[Evaluation], since: float) -> None:
        nonlocal eval_s
        for done in finished:
            mean = float(np.mean(done.returns))
            logger.scalars(
                {
                    "eval/return_mean": mean,
                    "eval/return_std": float(np.std(done.returns)),
                    "eval/return_min": float(np.min(done.returns)),
                    "eval/return_max": float(np.max(done.returns)),
                },
                done.step,
            )
            progress.eval_history.append([done.step, mean])
        elapsed = time.perf_counter() - since
        eval_s += elapsed
        logger.scalars({"time/eval_s": elapsed}, progress.steps)

    def run_eval(*, here: bool = False) -> float | None:
        """Evaluate the current weights, here or, with ``eval.background``, in a forked process
        while training goes on (logged once it has finished: at the next evaluation or the
        end); returns the mean return of the evaluation this call logged, if any."""
        since = time.perf_counter()
        if background is None or here:
            finished = [Evaluation(progress.steps, evaluation())]
        else:
            finished = background.start(progress.steps)
        log_evaluations(finished, since)
        return progress.eval_history[-1][1] if finished else None

    if checkpoint is None:
        logger.text("config", "```yaml\n" + dump_config(cfg) + "```")
        logger.layout()
    batch_steps = cfg.rollout.batch_steps
    iterations = max(1, cfg.total_steps // batch_steps)  # never past the budget
    stopped_by: int | None = None
    start, start_steps = time.perf_counter(), progress.steps
    logger.start_progress(iterations * batch_steps, initial=progress.steps)
    try:
        with stop_on_signals() as received:
            while progress.iteration < iterations and not received:
                try:
                    _iteration(cfg, agent, worker, logger, progress, start, start_steps, run_eval)
                    if video_env is not None and progress.steps >= progress.next_video:
                        record_video()
                except WorkerError as e:  # raised while collecting: the agent is untouched
                    save_checkpoint()
                    raise TrainingError(
                        f"{e}; stopped at {progress.steps} steps, checkpoint kept in "
                        f"{run_dir / CHECKPOINT_DIR}"
                    ) from None
                if progress.consecutive_skips >= cfg.max_skipped_updates:
                    save_checkpoint()
                    raise TrainingError(
                        f"{progress.consecutive_skips} updates in a row were skipped for NaN or "
                        f"inf values (observations, rewards, advantages or the step); stopped at "
                        f"{progress.steps} steps, checkpoint kept in {run_dir / CHECKPOINT_DIR}"
                    )
                if cfg.checkpoint.every and progress.iteration % cfg.checkpoint.every == 0:
                    save_checkpoint()
            if background is not None and background.running:  # logged before the checkpoint
                since = time.perf_counter()
                log_evaluations(background.wait(), since)
            if received:
                stopped_by = received[0]
            elif not progress.eval_history or progress.eval_history[-1][0] != progress.steps:
                run_eval(here=True)  # nothing is left to overlap it
            save_checkpoint()
            if stopped_by is None:
                save_model(
                    run_dir / MODEL_FILE,
                    model_state(agent, obs_norm),
                    {
                        "version": __version__,
                        "steps": progress.steps,
                        "config": config_to_dict(cfg),
                    },
                )
                logger.hparams(
                    hparams_of(cfg),
                    {"hparam/final_eval_return": progress.eval_history[-1][1]},
                )
    finally:
        if background is not None:
            background.close()
        logger.close()
        agent.close()
        worker.close()
        for env in eval_envs:
            env.close()
        if video_env is not None:
            video_env.close()
    history = [(int(s), float(r)) for s, r in progress.eval_history]
    return TrainResult(
        run_dir=run_dir,
        steps=progress.steps,
        eval_history=history,
        signal=stopped_by,
        eval_s=eval_s,
    )


def _iteration(
    cfg: Config,
    agent: Agent,
    worker: RolloutWorker,
    logger: Logger,
    progress: Progress,
    start: float,
    start_steps: int,
    run_eval: Any,
) -> None:
    """collect -> advantages -> update -> log (-> evaluate)."""
    t0 = time.perf_counter()
    batch = worker.collect(agent)
    t1 = time.perf_counter()
    adv, ret = gae(
        batch.rew_TN.numpy(),
        batch.values_TN.numpy(),
        batch.next_values_TN.numpy(),
        batch.term_TN.numpy(),
        batch.trunc_TN.numpy(),
        gamma=cfg.gamma,
        lam=cfg.gae_lambda,
    )
    stats = agent.update(batch, torch.from_numpy(adv), torch.from_numpy(ret))
    progress.iteration += 1
    progress.steps += batch.num_steps
    progress.consecutive_skips = progress.consecutive_skips + 1 if stats.skipped else 0
    progress.skipped_updates += int(stats.skipped)
    scalars = stats.scalars()
    scalars["train/skipped_updates"] = float(progress.skipped_updates)
    for fault in worker.faults:
        print(f"trpo-ng: {fault}", file=sys.stderr)
    progress.worker_restarts += worker.restarts
    scalars["rollout/worker_restarts"] = float(progress.worker_restarts)
    if batch.episode_returns:
        scalars["rollout/ep_return"] = float(np.mean(batch.episode_returns))
        scalars["rollout/ep_length"] = float(np.mean(batch.episode_lengths))
        scalars["rollout/ep_return_min"] = float(np.min(batch.episode_returns))
        scalars["rollout/ep_return_max"] = float(np.max(batch.episode_returns))
    scalars["time/collect_s"] = t1 - t0
    elapsed = time.perf_counter() - start
    scalars["time/steps_per_second"] = (progress.steps - start_steps) / elapsed
    logger.scalars(scalars, progress.steps)
    logger.histograms(
        {"rollout/actions": batch.act_TN, "train/advantages": adv, **stats.histograms()},
        progress.steps,
    )
    shown = {
        "return": scalars.get("rollout/ep_return", float("nan")),
        "kl": scalars["train/kl"],
        "steps/s": scalars["time/steps_per_second"],
    }
    if progress.next_eval and progress.steps >= progress.next_eval:
        if (mean := run_eval()) is not None:  # in the background: the evaluation before
            shown["eval"] = mean
        while progress.next_eval <= progress.steps:
            progress.next_eval += cfg.eval.every
    logger.progress(progress.steps, shown)
