"""The ``trpo-ng`` command: ``trpo-ng train [CONFIG] [key=value ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trpo_ng.config import ConfigError, load_config

DEFAULT_CONFIG = Path("configs") / "cartpole.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trpo-ng", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent from a YAML config")
    train.add_argument("config", nargs="?", help=f"YAML config (default: {DEFAULT_CONFIG})")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. policy.max_kl=0.02")
    train.add_argument("-q", "--quiet", action="store_true", help="no console progress")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _train(args)
    except ConfigError as e:
        print(f"trpo-ng: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trpo-ng: interrupted", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from trpo_ng.trainer import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    if config is None and DEFAULT_CONFIG.is_file():
        config = str(DEFAULT_CONFIG)
    cfg = load_config(config, overrides)
    result = train(cfg, config_name=Path(config).stem if config else "run", quiet=args.quiet)
    print(
        f"run: {result.run_dir}  steps: {result.steps}  eval/return_mean: {result.final_eval:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
