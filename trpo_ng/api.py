"""Training from Python as from the command line: a config path or object plus overrides.

``from trpo_ng import train, load_agent, evaluate_agent, plot_runs`` is the whole API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trpo_ng.checkpoint import CheckpointError
from trpo_ng.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
)

if TYPE_CHECKING:
    from trpo_ng.trainer import TrainResult

Overrides = Mapping[str, Any] | Sequence[str] | None


def make_config(config: str | Path | Config | None = None, overrides: Overrides = None) -> Config:
    """A validated Config from a YAML path, a Config (copied, never changed) or the defaults,
    with ``overrides`` applied: ``{"policy.max_kl": 0.02}`` or ``["policy.max_kl=0.02"]``."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(config, Config) and not isinstance(overrides, Mapping):
        return load_config(config, list(overrides or []))  # exactly the command line's rules
    raw = config_to_dict(config if isinstance(config, Config) else load_config(config))
    items = (
        dict(overrides)
        if isinstance(overrides, Mapping)
        else dict(map(parse_override, overrides or []))
    )
    return config_from_dict(raw, items)


def train(
    config: str | Path | Config | None = None,
    overrides: Overrides = None,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train from a YAML path, a Config or the defaults, with ``overrides``; or continue the
    run in ``resume`` (its own config.yaml plus ``overrides``). Returns the TrainResult:
    ``run_dir``, ``steps``, ``eval_history``, ``final_eval``."""
    from trpo_ng import trainer  # imported late: it pulls in gymnasium and tensorboard

    if resume is not None:
        if config is not None:
            raise ConfigError("resume takes the run's own config.yaml; give only overrides")
        run_dir = Path(resume)
        if not (run_dir / trainer.CONFIG_FILE).is_file():
            raise CheckpointError(
                f"{run_dir} is not a trpo-ng run directory (no {trainer.CONFIG_FILE})"
            )
        cfg = make_config(run_dir / trainer.CONFIG_FILE, overrides)
        return trainer.train(cfg, quiet=quiet, resume=run_dir)
    cfg = make_config(config, overrides)
    name = Path(config).stem if isinstance(config, str | Path) else "run"
    return trainer.train(cfg, config_name=name, quiet=quiet)
