"""Train trpo-ng from one config and print the result as one JSON line (run by learn.py).

Usage: ``python benchmarks/trpo_runner.py CONFIG [key=value ...]``. The overrides go to
``load_config`` unchanged; the wall time covers ``train`` (env set-up, training, periodic
evaluation, saving).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from trpo_ng import __version__
from trpo_ng.config import ConfigError, load_config
from trpo_ng.trainer import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value")
    args = parser.parse_args(argv)
    stem = Path(args.config).stem
    try:
        cfg = load_config(args.config, args.overrides)
        start = time.perf_counter()
        result = train(cfg, config_name=stem, quiet=True)
    except ConfigError as e:
        print(f"trpo_runner: error: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "system": "trpo-ng",
                "task": cfg.env_id,
                "config": stem,
                "seed": cfg.seed,
                "steps": result.steps,
                "eval_history": result.eval_history,
                "final_eval": result.final_eval,
                "wall_s": round(wall, 2),
                "eval_s": round(result.eval_s, 2),  # of wall_s, the periodic evaluations
                "version": __version__,
                "run_dir": str(result.run_dir),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
