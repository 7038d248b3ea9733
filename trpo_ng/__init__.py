"""trpo-ng: natural-gradient policy optimisation for PyTorch and Gymnasium.

The API, as short as the command line (each name is imported on first use, so that
``import trpo_ng.natural_gradient`` pulls in nothing but torch)::

    from trpo_ng import train, load_agent, evaluate_agent, plot_runs
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "train": "trpo_ng.api",
    "make_config": "trpo_ng.api",
    "load_agent": "trpo_ng.saved_agent",
    "SavedAgent": "trpo_ng.saved_agent",
    "evaluate_agent": "trpo_ng.evaluation",
    "EvalReport": "trpo_ng.evaluation",
    "plot_runs": "trpo_ng.plotting",
    "TrainResult": "trpo_ng.trainer",
}

__all__ = [
    "EvalReport",
    "SavedAgent",
    "TrainResult",
    "__version__",
    "evaluate_agent",
    "load_agent",
    "make_config",
    "plot_runs",
    "train",
]

if TYPE_CHECKING:
    from trpo_ng.api import make_config, train
    from trpo_ng.evaluation import EvalReport, evaluate_agent
    from trpo_ng.plotting import plot_runs
    from trpo_ng.saved_agent import SavedAgent, load_agent
    from trpo_ng.trainer import TrainResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
