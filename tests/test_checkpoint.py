"""Checkpoint files: atomic, safe to load, and refusing what is not theirs."""

import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from trpo_ng.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_latest_checkpoint,
    load_state,
    save_state,
    write_checkpoint,
)


def test_round_trip_of_nested_state_with_int_keys_and_json_values(tmp_path):
    state = {
        "model": {"w": torch.randn(3, 2), "b": torch.arange(4)},
        "optimizer": {
            "state": {0: {"step": torch.tensor(5.0)}},
            "param_groups": [
                {"lr": 1e-3, "betas": [0.9, 0.999], "params": [0, 1], "amsgrad": False}
            ],
        },
        "progress": {"iteration": 7, "history": [[2048, 21.5]], "note": None},
    }
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert torch.equal(back["model"]["b"], state["model"]["b"])
    assert back["optimizer"]["state"][0]["step"].item() == 5.0
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert back["progress"] == state["progress"]


def test_keeps_only_the_newest_k_and_falls_back_past_a_broken_one(tmp_path):
    for it in range(1, 6):
        write_checkpoint(tmp_path, it, {"it": it, "t": torch.ones(1)}, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-00000003.safetensors",
        "ckpt-00000004.safetensors",
        "ckpt-00000005.safetensors",
    ]
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:50])  # truncated
    _path, state, problems = load_latest_checkpoint(tmp_path)
    assert state["it"] == 4 and len(problems) == 1 and "truncated or corrupt" in problems[0]


WRITER = """
import sys, torch
from trpo_ng.checkpoint import save_state
path = sys.argv[1]
i = 1
while True:
    save_state(path, {"x": torch.full((4_000_000,), float(i))})
    print(i, flush=True)
    i += 1
"""


def test_a_kill_mid_save_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_state(path, {"x": torch.zeros(4_000_000)})
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    proc.stdout.readline()  # at least one full write happened; kill during a later one
    time.sleep(0.15)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    x = load_state(path)["x"]
    assert x.numel() == 4_000_000 and bool((x == x[0]).all())
    assert not [
        p for p in tmp_path.iterdir() if p.name != path.name and not p.name.endswith(".tmp")
    ]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file when unpickled


@pytest.mark.parametrize("via", ["pickle", "torch.save"])
def test_a_file_crafted_to_run_code_is_refused_and_runs_nothing(tmp_path, via):
    marker = tmp_path / "pwned"
    evil = tmp_path / "ckpt-00000099.safetensors"
    if via == "pickle":
        evil.write_bytes(pickle.dumps(_Exploit(str(marker))))
    else:
        torch.save({"model": _Exploit(str(marker))}, evil)
    with pytest.raises(CheckpointError):
        load_state(evil)
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_latest_checkpoint(tmp_path)
    assert not marker.exists()


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a trpo-ng file"):
        load_state(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no such"):
        load_state(tmp_path / "missing.safetensors")
