"""Optional dependencies: import one, or fail with the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from trpo_ng.config import ConfigError


class MissingExtraError(ConfigError):
    """An optional dependency is missing; the message says what to install."""


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """``import module``, or raise MissingExtraError naming ``pip install 'trpo-ng[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'trpo-ng[{extra}]'"
        ) from None
