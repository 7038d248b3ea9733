"""The ``trpo-ng`` command: ``train``, ``eval`` and ``plot``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trpo_ng.checkpoint import CheckpointError
from trpo_ng.config import ConfigError

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

    ev = sub.add_parser("eval", help="run a saved agent for some episodes")
    ev.add_argument(
        "path",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a run directory (its model.safetensors, else its newest checkpoint) "
        "or a .safetensors model or checkpoint file",
    )
    ev.add_argument(
        "--episodes", type=int, help="episodes to run (default: the run's eval.episodes)"
    )
    ev.add_argument(
        "--seed", type=int, help="seed of the first episode (default: the trainer's eval seed)"
    )
    mode = ev.add_mutually_exclusive_group()
    mode.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=True,
        help="act with the distribution's mode (default)",
    )
    mode.add_argument(
        "--stochastic",
        dest="deterministic",
        action="store_false",
        help="sample actions from the policy",
    )
    show = ev.add_mutually_exclusive_group()
    show.add_argument(
        "--video", metavar="DIR", help="record each episode as an MP4 in DIR (extra: video)"
    )
    show.add_argument("--render", action="store_true", help="show the episodes in a window")

    plot = sub.add_parser("plot", help="draw learning curves of runs, grouped by config")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or their parent")
    plot.add_argument(
        "-o", "--output", default="curves.png", help="image file (default: %(default)s)"
    )
    plot.add_argument(
        "--metric", default="eval/return_mean", help="TensorBoard scalar tag (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from trpo_ng.trainer import TrainingError

    command = {"train": _train, "eval": _eval, "plot": _plot}[args.command]
    try:
        return command(args)
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
        if args.command != "train":
            print("trpo-ng: interrupted", file=sys.stderr)
            return 130
        print("trpo-ng: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from trpo_ng.api import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    if args.resume is not None:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; give only overrides")
        result = train(overrides=overrides, resume=args.resume, quiet=args.quiet)
    else:
        if config is None and DEFAULT_CONFIG.is_file():
            config = str(DEFAULT_CONFIG)
        result = train(config, overrides, quiet=args.quiet)
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


def _eval(args: argparse.Namespace) -> int:
    from trpo_ng.evaluation import evaluate_agent
    from trpo_ng.saved_agent import load_agent

    agent = load_agent(args.path)
    for problem in agent.skipped:
        print(f"trpo-ng: skipped a broken checkpoint: {problem}", file=sys.stderr)

    def show(i: int, ret: float, length: int) -> None:
        print(f"episode {i + 1}: return {ret:.2f}  length {length}", flush=True)

    report = evaluate_agent(
        agent,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=args.deterministic,
        video_dir=args.video,
        render=args.render,
        on_episode=show,
    )
    print(report.summary())
    if args.video is not None:
        print(f"videos: {len(report.videos)} in {args.video}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from trpo_ng.plotting import plot_runs

    result = plot_runs(args.runs, output=args.output, metric=args.metric)
    for problem in result.skipped:
        print(f"trpo-ng: left out {problem}", file=sys.stderr)
    for group in result.groups:
        runs = ", ".join(str(c.run_dir) for c in group.curves)
        print(f"group {group.label}: {runs}")
    n = len(result.groups)
    print(f"wrote {result.output} ({result.metric}, {n} group{'s' if n != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
