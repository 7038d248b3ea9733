"""Short training runs that a setting should leave the same run, and the check that they are."""

from pathlib import Path
from typing import Any

import torch

from trpo_ng.api import train
from trpo_ng.checkpoint import load_model
from trpo_ng.trainer import MODEL_FILE, TrainResult


def train_and_load(
    config: str, overrides: dict[str, Any], log_dir: Path, name: str
) -> tuple[TrainResult, dict[str, Any]]:
    """A quiet run of ``config`` with ``overrides`` and the state its model file holds."""
    result = train(config, {**overrides, "log_dir": str(log_dir), "run_name": name}, quiet=True)
    state, _ = load_model(result.run_dir / MODEL_FILE)
    return result, state


def assert_same_model(a: dict[str, Any], b: dict[str, Any]) -> None:
    """The policy's and value function's weights, and the observation statistics if any,
    equal bit for bit."""
    for part in ("policy", "value"):
        for key, value in a["agent"][part].items():
            assert torch.equal(value, b["agent"][part][key]), (part, key)
    assert a.keys() == b.keys()
    for key, value in a.get("obs_normalizer", {}).items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["obs_normalizer"][key]))
