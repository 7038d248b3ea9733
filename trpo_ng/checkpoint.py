"""Model files: tensors in safetensors (no code runs on load), metadata as JSON, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save as st_save
from torch import Tensor

SEP = "/"


def flatten_state(state: dict[str, Any], prefix: str = "") -> dict[str, Tensor]:
    """{'policy': {'net.0.weight': t}} -> {'policy/net.0.weight': t}."""
    flat: dict[str, Tensor] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_state(value, prefix=f"{name}{SEP}"))
        elif isinstance(value, Tensor):
            flat[name] = value.detach().cpu().contiguous()
        else:
            raise TypeError(f"state entry {name!r} is a {type(value).__name__}, not a tensor")
    return flat


def unflatten_state(flat: dict[str, Tensor]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, tensor in flat.items():
        *parents, leaf = name.split(SEP)
        node = state
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = tensor
    return state


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_model(path: Path, state: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Save nested tensors plus JSON metadata (stored in the safetensors header) atomically."""
    blob = st_save(flatten_state(state), metadata={"trpo_ng": json.dumps(metadata)})
    atomic_write(Path(path), blob)


def load_model(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written by ``save_model``; returns (nested tensors, metadata)."""
    with safe_open(str(path), framework="pt") as f:
        flat = {name: f.get_tensor(name) for name in f.keys()}
        metadata = json.loads((f.metadata() or {}).get("trpo_ng", "{}"))
    return unflatten_state(flat), metadata
