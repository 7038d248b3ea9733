"""The ``trpo-ng`` command: ``trpo-ng train [CONFIG] [key=value ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trpo_ng.checkpoint import CheckpointError
from trpo_ng.config import ConfigError, load_config

DEFAULT_CONFIG = Path("configs") / "cartpole.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trpo-ng", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent from a YAML config")
    train.add_argument("config", nargs="?", help=f"YAML config (default: {DEFAULT_CONFIG})")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. policy.max_kl=0.02")
    train.add_argument("-q", "--quiet", action="store_true", help="no console progress")
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from trpo_ng.trainer import TrainingError

    try:
        return _train(args)
    except (ConfigError, CheckpointError) as e:
        print(f"trpo-ng: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"trpo-ng: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. a full disk while writing: what was written before is intact
        print(
            f"trpo-ng: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("trpo-ng: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from trpo_ng.trainer import CONFIG_FILE, train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    if args.resume is not None:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; give only overrides")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise CheckpointError(f"{run_dir} is not a trpo-ng run directory (no {CONFIG_FILE})")
        cfg = load_config(run_dir / CONFIG_FILE, overrides)
        result = train(cfg, quiet=args.quiet, resume=run_dir)
    else:
        if config is None and DEFAULT_CONFIG.is_file():
            config = str(DEFAULT_CONFIG)
        cfg = load_config(config, overrides)
        name = Path(config).stem if config else "run"
        result = train(cfg, config_name=name, quiet=args.quiet)
    if result.signal is not None:
        print(
            f"trpo-ng: stopped by signal {result.signal} at {result.steps} steps; "
            f"resume with: trpo-ng train --resume {result.run_dir}",
            file=sys.stderr,
        )
        return 128 + result.signal
    print(
        f"run: {result.run_dir}  steps: {result.steps}  eval/return_mean: {result.final_eval:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
