"""Every bad input a user can give: one line naming the problem, exit code 2, nothing lost."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_exit_2

from trpo_ng.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
FAST = ["rollout.steps_per_env=128", "value.epochs=1", "eval.episodes=1", "checkpoint.every=1"]


def cli(*args, cwd=ROOT):
    proc = subprocess.run(
        [sys.executable, "-m", "trpo_ng.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("runs")
    code, err = cli(
        "train",
        "configs/cartpole.yaml",
        *FAST,
        f"log_dir={log_dir}",
        "run_name=done",
        "total_steps=1024",
        "-q",
    )
    assert code == 0, err
    return log_dir / "done"


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["policy.maxkl=0.1"], ["policy.maxkl", "did you mean 'policy.max_kl'"]),
        (["seed=abc"], ["'seed'", "expects int"]),
        (["policy.max_kl=-1"], ["'policy.max_kl'", "> 0"]),
        (["gamma=0"], ["'gamma'", "(0, 1]"]),
        (["network.hidden_sizes=[-4]"], ["'network.hidden_sizes'"]),
        (["env_id=NoSuchEnv-v0"], ["NoSuchEnv-v0"]),
        (["env_id=Blackjack-v1"], ["Blackjack-v1", "unsupported observation space"]),
        (["env_id=CarRacing-v3"], ["CarRacing-v3", "optional dependency"]),
    ],
)
def test_bad_config_values(tmp_path, overrides, needles):
    code, err = cli("train", *overrides, f"log_dir={tmp_path}", "-q")
    assert_one_line_exit_2(code, err, *needles)


def test_unwritable_log_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = cli("train", f"log_dir={blocker}", "-q")
    assert_one_line_exit_2(code, err, "cannot write to run directory")
    assert blocker.read_text() == "not a directory"


def test_resume_of_a_directory_without_checkpoints(tmp_path):
    (tmp_path / "config.yaml").write_text("env_id: CartPole-v1\n")
    code, err = cli("train", "--resume", str(tmp_path), "-q")
    assert_one_line_exit_2(code, err, "no loadable checkpoint")
    code, err = cli("train", "--resume", str(tmp_path / "nowhere"), "-q")
    assert_one_line_exit_2(code, err, "not a trpo-ng run directory")


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_resume_of_a_truncated_or_tampered_checkpoint(tmp_path, finished_run, damage):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(finished_run, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        data = ckpt.read_bytes()
        ckpt.write_bytes(
            data[: len(data) // 2] if damage == "truncate" else data[:8] + b"}" + data[9:]
        )
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, err = cli("train", "--resume", str(run), "-q")
    assert code == 2 and "no loadable checkpoint" in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert before == after  # nothing already written is lost or changed


def test_resume_with_a_checkpoint_from_another_network(tmp_path, finished_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    code, err = cli("train", "--resume", str(run), "network.hidden_sizes=[16]", "-q")
    assert_one_line_exit_2(code, err, "does not fit this config's task and network")
