"""Resume restores every piece of state; signals stop cleanly; TensorBoard stays contiguous."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trpo_ng.checkpoint import list_checkpoints, load_state
from trpo_ng.config import load_config
from trpo_ng.trainer import train

ROOT = Path(__file__).resolve().parents[1]
BATCH = 4 * 128  # rollout.num_envs x rollout.steps_per_env below
FAST = [
    "rollout.steps_per_env=128",
    "value.epochs=2",
    "eval.every=1024",
    "eval.episodes=2",
    "checkpoint.every=2",
    "checkpoint.keep=5",
]


def run(tmp_path, name, iterations, *extra, resume=None):
    overrides = [
        *FAST,
        f"log_dir={tmp_path}",
        f"run_name={name}",
        f"total_steps={iterations * BATCH}",
        *extra,
    ]
    if resume is not None:
        cfg = load_config(resume / "config.yaml", [f"total_steps={iterations * BATCH}"])
        return train(cfg, quiet=True, resume=resume)
    return train(load_config(ROOT / "configs" / "cartpole.yaml", overrides), quiet=True)


def assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_resume_restores_every_saved_piece_of_state(tmp_path):
    result = run(tmp_path, "a", 4, "normalize.observations=true", "normalize.rewards=true")
    saved = load_state(list_checkpoints(result.run_dir / "checkpoints")[-1])
    # resuming with nothing left to do re-saves exactly what it restored
    run(tmp_path, "a", 4, resume=result.run_dir)
    again = load_state(list_checkpoints(result.run_dir / "checkpoints")[-1])
    assert saved["progress"]["iteration"] == 4
    assert set(saved["model"]) == {"agent", "obs_normalizer"}
    assert {"policy", "value", "updater", "value_optimizer"} <= set(saved["model"]["agent"])
    assert_same(saved, again)


def test_two_resumes_from_one_checkpoint_are_identical(tmp_path):
    first = run(tmp_path, "b", 2)
    copy = tmp_path / "b-copy"
    shutil.copytree(first.run_dir, copy)
    r1 = run(tmp_path, "b", 5, resume=first.run_dir)
    r2 = run(tmp_path, "b", 5, resume=copy)
    assert r1.eval_history == r2.eval_history and r1.steps == r2.steps == 5 * BATCH
    m1 = load_state(r1.run_dir / "model.safetensors")
    m2 = load_state(r2.run_dir / "model.safetensors")
    assert_same(m1["state"], m2["state"])


def test_tensorboard_steps_are_contiguous_after_a_crash_and_resume(tmp_path):
    first = run(tmp_path, "c", 6)
    # a crash after iteration 6's logs but before its checkpoint: only iteration 4's remains
    for ckpt in list_checkpoints(first.run_dir / "checkpoints"):
        if not ckpt.name.endswith("00000004.safetensors"):
            ckpt.unlink()
    run(tmp_path, "c", 8, resume=first.run_dir)
    events = EventAccumulator(str(first.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/kl")]
    assert steps == [BATCH * i for i in range(1, 9)]


def start_cli(tmp_path, *overrides, new_session=False):
    """``new_session``: in its own process group, as a terminal's foreground job."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trpo_ng.cli",
            "train",
            str(ROOT / "configs" / "cartpole.yaml"),
            *FAST,
            f"log_dir={tmp_path}",
            "run_name=sig",
            "total_steps=10000000",
            *overrides,
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=new_session,
    )


def wait_for_checkpoint(run_dir, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "checkpoints").exists() and list_checkpoints(run_dir / "checkpoints"):
            return
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint appeared: {proc.communicate()}")


def test_sigint_checkpoints_and_exits_130(tmp_path):
    proc = start_cli(tmp_path)
    wait_for_checkpoint(tmp_path / "sig", proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    newest = list_checkpoints(tmp_path / "sig" / "checkpoints")[-1]
    assert load_state(newest)["progress"]["iteration"] >= 2


def test_ctrl_c_on_the_terminal_stops_a_run_with_the_critic_in_the_background(tmp_path):
    """Ctrl-C signals the whole process group: the value fit's process ignores it, the trainer
    finishes the iteration, saves a checkpoint and exits 130."""
    proc = start_cli(tmp_path, "value.background=true", new_session=True)
    wait_for_checkpoint(tmp_path / "sig", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "value-fit process died" not in err


def test_sigterm_exits_143(tmp_path):
    proc = start_cli(tmp_path)
    wait_for_checkpoint(tmp_path / "sig", proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
