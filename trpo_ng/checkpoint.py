"""Safe, atomic files for models and checkpoints.

A file is one safetensors blob: every tensor of a nested state under a ``/``-joined name, and
everything else (numbers, strings, lists; dict keys that are ints) as JSON in the header's
metadata. Loading parses JSON and raw tensor bytes only: no pickle, so no code can run.
Writes go to a temporary file in the same directory, are fsynced, then renamed over the target,
so a crash or a kill mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor

FORMAT = "trpo-ng/1"
CHECKPOINT_GLOB = "ckpt-*.safetensors"
_TENSOR, _INT_KEY = "__tensor__", "__int__:"


class CheckpointError(ValueError):
    """A model or checkpoint file that is missing, unreadable, tampered with or mismatched."""


# --------------------------------------------------------------------------- encoding


def _encode(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """Tensors out into ``tensors`` by path; everything else into a JSON-able tree."""
    if isinstance(obj, Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {_TENSOR: path}
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            name = f"{_INT_KEY}{key}" if isinstance(key, int) else str(key)
            out[name] = _encode(value, f"{path}/{name}" if path else name, tensors)
        return out
    if isinstance(obj, list | tuple):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot save {type(obj).__name__} at {path!r}: not a tensor or JSON value")


def _decode(tree: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {_TENSOR}:
            return tensors[tree[_TENSOR]]
        return {
            (int(k[len(_INT_KEY) :]) if k.startswith(_INT_KEY) else k): _decode(v, tensors)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    return tree


# --------------------------------------------------------------------------- files


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


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Save a nested state (tensors and JSON values) atomically."""
    tensors: dict[str, Tensor] = {}
    tree = _encode(state, "", tensors)
    if not tensors:  # safetensors needs at least one tensor
        tensors["__empty__"] = torch.zeros(0)
    meta = {"format": FORMAT, "tree": json.dumps(tree)}
    atomic_write(Path(path), st_save(tensors, metadata=meta))


def load_state(path: Path) -> dict[str, Any]:
    """Load a file written by ``save_state``; CheckpointError if it is not one, intact."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such model or checkpoint file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a trpo-ng file (format {meta.get('format')!r})")
        return _decode(json.loads(meta["tree"]), tensors)
    except (SafetensorError, json.JSONDecodeError, KeyError, OSError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path} is truncated or corrupt ({_one_line(e)})") from None


def save_model(path: Path, state: dict[str, Any], metadata: dict[str, Any]) -> None:
    """A model file: the state to act with, plus metadata (version, steps, config)."""
    save_state(path, {"state": state, "metadata": metadata})


def load_model(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, metadata) of a file written by ``save_model`` or a checkpoint."""
    loaded = load_state(path)
    return loaded["state"], loaded["metadata"]


# --------------------------------------------------------------------------- checkpoints


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return Path(directory) / f"ckpt-{iteration:08d}.safetensors"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first (by iteration number)."""
    pattern = re.compile(r"ckpt-(\d+)\.safetensors$")
    found = [p for p in Path(directory).glob(CHECKPOINT_GLOB) if pattern.search(p.name)]
    return sorted(found, key=lambda p: int(pattern.search(p.name).group(1)))


def write_checkpoint(directory: Path, iteration: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write checkpoint ``iteration`` atomically, then delete all but the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, iteration)
    save_state(path, state)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The newest checkpoint that loads; also the problems met with newer, broken ones."""
    problems: list[str] = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_state(path), problems
        except CheckpointError as e:
            problems.append(str(e))
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"no loadable checkpoint in {directory}{detail}")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
