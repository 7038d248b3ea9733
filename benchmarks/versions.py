"""Installed package versions for the benchmarks' headers and results (standard library only,
so the sb3-contrib venv imports it too): the physics and the random streams come from these, and
a run repeats its digits only with the same versions."""

from __future__ import annotations

import importlib.metadata


def installed(name: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
