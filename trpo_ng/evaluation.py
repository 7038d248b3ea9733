"""Evaluate a saved agent: N episodes on fresh envs, all at once (one env each, as the trainer
evaluates), or one after another on one env that films them or shows them in a window.

With the default episodes and seed (the config's ``eval.episodes``, and the seeds the trainer
evaluates with), deterministic evaluation of a run's model file reproduces the run's final
``eval/return_mean``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from trpo_ng.config import ConfigError
from trpo_ng.extras import require
from trpo_ng.rollout import EpisodeCallback, play_episodes
from trpo_ng.saved_agent import SavedAgent, load_agent
from trpo_ng.trainer import EVAL_SEED_OFFSET

VIDEO_PREFIX = "eval"  # files are <VIDEO_PREFIX>-episode-<i>.mp4, i from 0


@dataclass(frozen=True)
class EvalReport:
    """Per-episode returns and lengths of an evaluation."""

    returns: list[float]
    lengths: list[int]
    deterministic: bool
    seed: int
    source: Path
    videos: list[Path] = field(default_factory=list)

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:
        return float(np.std(self.returns))

    @property
    def length_mean(self) -> float:
        return float(np.mean(self.lengths))

    @property
    def length_std(self) -> float:
        return float(np.std(self.lengths))

    def summary(self) -> str:
        """One line: episodes, return and length mean/std, policy mode, source file."""
        mode = "deterministic" if self.deterministic else "stochastic"
        return (
            f"episodes: {len(self.returns)}  return_mean: {self.return_mean:.2f}  "
            f"return_std: {self.return_std:.2f}  length_mean: {self.length_mean:.1f}  "
            f"length_std: {self.length_std:.1f}  policy: {mode}  model: {self.source}"
        )


def evaluate_agent(
    agent: SavedAgent | str | Path,
    *,
    episodes: int | None = None,
    seed: int | None = None,
    deterministic: bool = True,
    video_dir: str | Path | None = None,
    render: bool = False,
    on_episode: EpisodeCallback | None = None,
) -> EvalReport:
    """Run ``episodes`` episodes (default: the config's ``eval.episodes``) with env seeds
    ``seed, seed + 1, ...`` (default: the trainer's evaluation seeds). ``video_dir``: record
    each episode to ``eval-episode-<i>.mp4`` there (needs the ``video`` extra); ``render``:
    show a window. Stochastic actions come from torch's RNG seeded with ``seed``; the caller's
    RNG state is restored afterwards."""
    saved = agent if isinstance(agent, SavedAgent) else load_agent(agent)
    cfg = saved.config
    episodes = cfg.eval.episodes if episodes is None else episodes
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if video_dir is not None and render:
        raise ConfigError("record a video or render to a window, not both")
    seeds = range(seed, seed + episodes)
    act = partial(saved.act, deterministic=deterministic)
    with torch.random.fork_rng(devices=[]):  # sampling leaves the caller's RNG alone
        torch.manual_seed(seed)
        if render or video_dir is not None:
            returns, lengths = _film(saved, seeds, act, video_dir, render, on_episode)
        else:  # one env per episode, all playing at once, as the trainer evaluates
            envs = [saved.make_env() for _ in seeds]
            try:
                returns, lengths = play_episodes(act, envs, seeds, on_episode)
            finally:
                for env in envs:
                    env.close()
    videos = sorted(Path(video_dir).glob(f"{VIDEO_PREFIX}-episode-*.mp4")) if video_dir else []
    return EvalReport(returns, lengths, deterministic, seed, saved.source, videos)


def _film(
    saved: SavedAgent,
    seeds: Sequence[int],
    act: Callable[[np.ndarray], np.ndarray],
    video_dir: str | Path | None,
    render: bool,
    on_episode: EpisodeCallback | None,
) -> tuple[list[float], list[int]]:
    """The episodes one after another on one env that records or shows them."""
    env = _make_eval_env(saved, video_dir=video_dir, render=render)

    def reset(env: gym.Env, seed: int) -> Any:
        if seed == seeds[0]:  # opens the window or draws the first frame: fail clearly
            return _first_reset(saved, env, seed, render=render)
        return env.reset(seed=seed)[0]

    try:
        return play_episodes(act, env, seeds, on_episode, reset)
    finally:
        with warnings.catch_warnings():  # a failed first frame leaves nothing to save
            warnings.filterwarnings("ignore", message=".*zero frames to save")
            env.close()  # RecordVideo writes the last episode's file here


def _first_reset(saved: SavedAgent, env: gym.Env, seed: int, *, render: bool) -> Any:
    """The first reset, which opens the window or draws the first frame."""
    try:
        obs, _ = env.reset(seed=seed)
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"rendering {saved.env_id} needs an optional dependency: {e}") from None
    except RuntimeError as e:  # e.g. pygame.error: no video device
        raise ConfigError(f"cannot render {saved.env_id}: {_one_line(e)}") from None
    pygame = sys.modules.get("pygame")
    if render and pygame is not None and pygame.display.get_init():
        if pygame.display.get_driver() in ("offscreen", "dummy"):  # SDL found no display
            raise ConfigError(
                f"cannot open a window for {saved.env_id}: no display could be reached; "
                "record a video instead"
            )
    return obs


def _headless() -> bool:
    return sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _make_eval_env(saved: SavedAgent, *, video_dir: str | Path | None, render: bool) -> gym.Env:
    if render:
        if "human" not in saved.render_modes:
            raise ConfigError(
                f"env {saved.env_id!r} has no window to render to "
                f"(render modes: {', '.join(saved.render_modes) or 'none'})"
            )
        if _headless():
            raise ConfigError(
                "rendering to a window needs a display and none is set (DISPLAY); "
                "record a video instead"
            )
        return saved.make_env(render_mode="human")
    if video_dir is None:
        return saved.make_env()
    if "rgb_array" not in saved.render_modes:
        raise ConfigError(
            f"env {saved.env_id!r} cannot be recorded: it renders no frames "
            f"(render modes: {', '.join(saved.render_modes) or 'none'})"
        )
    require("moviepy", extra="video", purpose="recording video")
    video_dir = Path(video_dir)
    if video_dir.exists() and not video_dir.is_dir():
        raise ConfigError(f"video directory {video_dir} is a file")
    if any(video_dir.glob(f"{VIDEO_PREFIX}-episode-*.mp4")):
        raise ConfigError(f"{video_dir} already holds evaluation videos; choose another directory")
    try:
        video_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write to video directory {video_dir}: {e.strerror}") from None
    if _headless():  # pygame (classic control) draws off-screen without complaint
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = saved.make_env(render_mode="rgb_array")
    with warnings.catch_warnings():  # an existing (empty or unrelated) folder is fine
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
        return gym.wrappers.RecordVideo(
            env, str(video_dir), episode_trigger=lambda _: True, name_prefix=VIDEO_PREFIX
        )


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
