"""Typed run configuration: a YAML file plus ``key=value`` overrides, validated with clear errors.

Every knob of a run lives here, with its default and where that default comes from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trpo_ng.schedules import SCHEDULES


class ConfigError(ValueError):
    """A mistake in a config file or override; its message is one line for the user."""


@dataclass
class PolicyConfig:
    """Policy step (Schulman et al. 2015; damping 0.1 as in OpenAI baselines).

    ``lr`` is VPG's plain-gradient step size; NPG and TRPO use ``max_kl`` instead.
    """

    lr: float = 0.5  # plain SGD on the normalised-advantage surrogate, tuned on CartPole-v1
    max_kl: float = 0.01
    cg_iters: int = 10
    damping: float = 0.1
    backtrack_coeff: float = 0.8
    max_backtracks: int = 10
    fvp: str = "analytic"  # Fisher-vector products: analytic (J^T M J) | double_backprop
    fisher_subsample: int = 1  # use every k-th sample for the Fisher (TRPO paper, sec. 6)
    damped_step_size: bool = False  # size steps with F + damping I, as baselines/sb3 do
    schedule: str = "constant"  # constant | linear | cosine: max_kl (VPG: lr) annealed to 0
    schedule_end: float = 0.0  # linear, cosine: the fraction of the start value the anneal ends at
    init_log_std: float = 0.0  # a Gaussian policy's initial log-std
    sde: bool = False  # gSDE: noise z(s) W from the last hidden layer (Raffin et al. 2021)
    sde_sample_freq: int = 4  # gSDE: steps between fresh noise matrices W


@dataclass
class ValueConfig:
    """Value-function regression by minibatch Adam (as in sb3-contrib TRPO / Spinning Up)."""

    epochs: int = 10
    minibatch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | linear | cosine (annealed to 0 over the run)
    background: bool = False  # fit in a second process beside the policy step (same result)


@dataclass
class RolloutConfig:
    """Who steps the envs. A batch is ``num_envs`` x ``steps_per_env`` steps, whatever the
    backend: ``num_envs`` is split evenly over ``num_workers`` workers.

    backend: sync (every worker in this process), subprocess (one process per env,
    ``SubprocessVectorEnv``), hybrid (each worker's first env in this process, the others one
    process each, ``HybridVectorEnv``), process (worker 0 in this process, every other worker
    in a process of its own with a copy of the agent: a message per worker and batch, not per
    step, ``trpo_ng.process_workers``) or ray (one Ray actor per worker,
    ``pip install 'trpo-ng[ray]'``).
    """

    backend: str = "sync"
    num_envs: int = 4  # envs in the batch, over all workers
    steps_per_env: int = 512
    num_workers: int = 1
    envs_per_worker: int = 0  # 0: num_envs / num_workers; else it must be exactly that
    max_worker_restarts: int = 3  # per worker and batch, before training stops
    ray_address: str = ""  # "": start Ray on this machine; "auto" or host:port: join a cluster
    worker_cpus: float = 1.0  # CPUs Ray reserves for each worker

    @property
    def batch_steps(self) -> int:
        """Env steps in one batch: ``num_envs`` x ``steps_per_env``."""
        return self.num_envs * self.steps_per_env


@dataclass
class EvalConfig:
    every: int = 10_000  # environment steps between deterministic evaluations; 0: only at end
    episodes: int = 10
    video_every: int = 0  # env steps between evaluation videos in TensorBoard; 0: none
    background: bool = False  # play them in a forked process as training goes on (same returns)


@dataclass
class NormalizeConfig:
    """Running normalisation as in OpenAI baselines' VecNormalize (clip 10, eps 1e-8)."""

    observations: bool = False
    rewards: bool = False  # scale by the running std of the discounted return
    clip_observations: float = 10.0
    clip_rewards: float = 10.0
    freeze_observations_after: int = 0  # env steps of statistics, then fixed; 0: never


@dataclass
class CheckpointConfig:
    every: int = 10  # iterations between checkpoints (and one at the end); 0: only at the end
    keep: int = 3  # newest checkpoints kept


@dataclass
class NetworkConfig:
    """MLP on the observation's features; for uint8 image observations the features come
    from the Nature CNN (Mnih et al. 2015) when ``encoder`` is auto or cnn."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    value_hidden_sizes: list[int] | None = None  # the value network's own; None: hidden_sizes
    activation: str = "tanh"
    encoder: str = "auto"  # auto: CNN for uint8 images, else flatten | flatten | cnn
    cnn_features: int = 512  # the CNN's last linear layer (Mnih et al. 2015)


@dataclass
class WrappersConfig:
    """Per-env preprocessing, the same for the training and the evaluation envs; Dict
    observations are always flattened (gymnasium FlattenObservation)."""

    atari: bool = False  # AtariPreprocessing: 30 no-op resets, frame skip 4, 84x84 grayscale
    frame_stack: int = 1  # FrameStackObservation(k) when k > 1 (4 on Atari: Mnih et al. 2015)


@dataclass
class Config:
    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # gym.make's keyword arguments
    agent: str = "trpo"
    seed: int = 0
    total_steps: int = 100_000
    run_name: str = ""  # empty: <config name>-s<seed>-<timestamp>
    log_dir: str = "runs"
    gamma: float = 0.99
    gae_lambda: float = 0.95  # Schulman et al. 2016
    normalize_advantages: bool = True
    torch_threads: int = 1
    max_skipped_updates: int = 5  # consecutive updates skipped for NaN/inf before stopping
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    wrappers: WrappersConfig = field(default_factory=WrappersConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


AGENTS = ("trpo", "npg", "vpg")
BACKENDS = ("sync", "subprocess", "hybrid", "process", "ray")
ACTIVATIONS = ("tanh", "relu", "elu", "sigmoid")
FVPS = ("analytic", "double_backprop")
ENCODERS = ("auto", "flatten", "cnn")


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or start from the defaults), apply ``a.b=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {_one_line(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return config_from_dict(raw, dict(parse_override(item) for item in overrides or []))


def parse_override(item: str) -> tuple[str, Any]:
    """``"policy.max_kl=0.02"`` -> ``("policy.max_kl", 0.02)``, the value read as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key=value")
    return key.strip(), yaml.safe_load(text) if text.strip() else ""


def config_from_dict(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> Config:
    """A validated Config from nested ``raw`` values plus dotted-key ``overrides``."""
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"override key {key!r} is not a dotted config key")
        _set_dotted(raw, key, value)
    cfg = _build(Config, raw, prefix="")
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[leaf] = value


def _build(cls: type, raw: Any, *, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            guess = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{guess[0]}'?)" if guess else ""
            raise ConfigError(f"unknown config key '{dotted}'{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, prefix=f"{dotted}.")
        else:
            kwargs[key] = _coerce(value, kind, dotted)
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"config key '{key}' expects a mapping of names, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(
                f"config key '{key}' expects a list of {item.__name__}, got {value!r}"
            )
        return [_coerce(v, item, key) for v in value]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            if option is type(None) and value is None:
                return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        return _coerce(value, kind, key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"config key '{key}' expects {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


# --------------------------------------------------------------------------- validation


def validate(cfg: Config) -> None:
    """Range and choice checks; raises ConfigError naming the key."""
    batch = cfg.rollout.batch_steps
    checks: list[tuple[str, bool, str]] = [
        ("agent", cfg.agent in AGENTS, f"one of {', '.join(AGENTS)}"),
        ("env_id", bool(cfg.env_id), "a Gymnasium environment id"),
        (
            "env_kwargs",
            "render_mode" not in cfg.env_kwargs,
            "gym.make's other keyword arguments (trpo-ng sets render_mode for videos)",
        ),
        ("total_steps", cfg.total_steps > 0, "> 0"),
        ("gamma", 0 < cfg.gamma <= 1, "in (0, 1]"),
        ("gae_lambda", 0 <= cfg.gae_lambda <= 1, "in [0, 1]"),
        ("torch_threads", cfg.torch_threads >= 1, ">= 1"),
        ("max_skipped_updates", cfg.max_skipped_updates >= 1, ">= 1"),
        ("checkpoint.every", cfg.checkpoint.every >= 0, ">= 0"),
        ("checkpoint.keep", cfg.checkpoint.keep >= 1, ">= 1"),
        ("policy.lr", cfg.policy.lr > 0, "> 0"),
        ("policy.max_kl", cfg.policy.max_kl > 0, "> 0"),
        ("policy.cg_iters", cfg.policy.cg_iters >= 1, ">= 1"),
        ("policy.damping", cfg.policy.damping >= 0, ">= 0"),
        ("policy.backtrack_coeff", 0 < cfg.policy.backtrack_coeff < 1, "in (0, 1)"),
        ("policy.max_backtracks", cfg.policy.max_backtracks >= 1, ">= 1"),
        ("policy.fvp", cfg.policy.fvp in FVPS, f"one of {', '.join(FVPS)}"),
        ("policy.fisher_subsample", cfg.policy.fisher_subsample >= 1, ">= 1"),
        ("value.epochs", cfg.value.epochs >= 0, ">= 0"),
        ("value.minibatch_size", cfg.value.minibatch_size >= 1, ">= 1"),
        ("value.lr", cfg.value.lr > 0, "> 0"),
        ("policy.schedule", cfg.policy.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
        ("policy.schedule_end", 0 <= cfg.policy.schedule_end <= 1, "in [0, 1]"),
        ("policy.sde_sample_freq", cfg.policy.sde_sample_freq >= 1, ">= 1"),
        ("value.lr_schedule", cfg.value.lr_schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
        ("rollout.backend", cfg.rollout.backend in BACKENDS, f"one of {', '.join(BACKENDS)}"),
        ("rollout.num_envs", cfg.rollout.num_envs >= 1, ">= 1"),
        ("rollout.steps_per_env", cfg.rollout.steps_per_env >= 1, ">= 1"),
        ("rollout.num_workers", cfg.rollout.num_workers >= 1, ">= 1"),
        ("rollout.envs_per_worker", cfg.rollout.envs_per_worker >= 0, ">= 0 (0: derived)"),
        ("rollout.max_worker_restarts", cfg.rollout.max_worker_restarts >= 0, ">= 0"),
        ("rollout.worker_cpus", cfg.rollout.worker_cpus >= 0, ">= 0"),
        ("eval.every", cfg.eval.every >= 0, ">= 0"),
        ("eval.episodes", cfg.eval.episodes >= 1, ">= 1"),
        ("eval.video_every", cfg.eval.video_every >= 0, ">= 0"),
        ("normalize.clip_observations", cfg.normalize.clip_observations > 0, "> 0"),
        ("normalize.clip_rewards", cfg.normalize.clip_rewards > 0, "> 0"),
        (
            "normalize.freeze_observations_after",
            cfg.normalize.freeze_observations_after == 0
            or cfg.normalize.freeze_observations_after >= batch,
            f">= one batch ({batch} env steps) or 0 (never)",
        ),
        ("network.hidden_sizes", all(h >= 1 for h in cfg.network.hidden_sizes), "sizes >= 1"),
        (
            "network.value_hidden_sizes",
            all(h >= 1 for h in cfg.network.value_hidden_sizes or []),
            "sizes >= 1, or null for hidden_sizes",
        ),
        (
            "network.activation",
            cfg.network.activation in ACTIVATIONS,
            f"one of {', '.join(ACTIVATIONS)}",
        ),
        ("network.encoder", cfg.network.encoder in ENCODERS, f"one of {', '.join(ENCODERS)}"),
        ("network.cnn_features", cfg.network.cnn_features >= 1, ">= 1"),
        ("wrappers.frame_stack", cfg.wrappers.frame_stack >= 1, ">= 1"),
    ]
    for key, ok, expected in checks:
        if not ok:
            value = cfg
            for part in key.split("."):
                value = getattr(value, part)
            raise ConfigError(f"config key '{key}' must be {expected}, got {value!r}")
    _validate_rollout_layout(cfg.rollout)


def _validate_rollout_layout(r: RolloutConfig) -> None:
    """num_envs is the batch's env count; the workers split it evenly."""
    if r.envs_per_worker and r.envs_per_worker * r.num_workers != r.num_envs:
        raise ConfigError(
            f"config key 'rollout.envs_per_worker' ({r.envs_per_worker}) times "
            f"rollout.num_workers ({r.num_workers}) must equal rollout.num_envs ({r.num_envs}), "
            "the envs of the whole batch; or leave envs_per_worker at 0"
        )
    if r.num_envs % r.num_workers:
        raise ConfigError(
            f"config key 'rollout.num_envs' ({r.num_envs}) must be a multiple of "
            f"rollout.num_workers ({r.num_workers}): each worker steps num_envs / num_workers envs"
        )
    if r.backend == "hybrid" and r.num_envs // r.num_workers < 2:
        raise ConfigError(
            "rollout.backend=hybrid steps a worker's first env in the trainer and the others in "
            f"processes: it needs at least 2 envs per worker, got {r.num_envs // r.num_workers}"
        )
    if r.ray_address and r.backend != "ray":
        raise ConfigError(
            f"config key 'rollout.ray_address' is only used with rollout.backend=ray, "
            f"not {r.backend!r}"
        )


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
