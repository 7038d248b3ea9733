"""`trpo-ng eval`: the numbers of rollout.evaluate on the same saved agent, playable MP4s, and
bad input as one line with exit code 2."""

import io
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_one_line_exit_2
from safetensors.torch import save_file
from saved_models import untrained_model

from agents import make_agent
from trpo_ng import evaluate_agent, load_agent, make_config, train
from trpo_ng.checkpoint import list_checkpoints, load_model, save_state
from trpo_ng.cli import main
from trpo_ng.config import Config, NormalizeConfig, load_config
from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.rollout import evaluate

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "total_steps=2048",
    "rollout.steps_per_env=128",
    "value.epochs=1",
    "eval.episodes=3",
    "normalize.observations=true",  # so the saved normaliser matters
]
SUMMARY = re.compile(
    r"^episodes: (\d+)  return_mean: (\S+)  return_std: (\S+)  length_mean: (\S+)  "
    r"length_std: (\S+)  policy: (\w+)  model: (.+)$"
)


def cli(*args):
    """``trpo-ng ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("runs")
    return train(
        ROOT / "configs" / "cartpole.yaml", [*FAST, f"log_dir={log_dir}", "run_name=cp"], quiet=True
    )


def reference_returns(run_dir: Path, *, episodes: int, seed: int) -> list[float]:
    """rollout.evaluate on the agent of the run's model file, rebuilt by hand."""
    state, _ = load_model(run_dir / "model.safetensors")
    cfg = load_config(run_dir / "config.yaml")
    env = gym.make(cfg.env_id)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    agent.load_state_dict(state["agent"])
    norm = ObservationNormalizer(env.observation_space.shape)
    norm.load_state_dict(state["obs_normalizer"])
    assert norm.rms.count > 0
    return evaluate(agent, env, episodes=episodes, seed=seed, obs_normalizer=norm)


def test_eval_command_prints_the_returns_of_rollout_evaluate(run):
    proc = subprocess.run(
        [sys.executable, "-m", "trpo_ng.cli", "eval", str(run.run_dir), "--episodes", "4",
         "--seed", "123"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.strip().splitlines()
    expected = reference_returns(run.run_dir, episodes=4, seed=123)
    episodes = [re.match(r"episode (\d+): return (\S+)  length (\d+)$", li) for li in lines[:4]]
    assert [float(m.group(2)) for m in episodes] == pytest.approx(expected, abs=0.005)
    summary = SUMMARY.match(lines[4])
    assert summary, lines[4]
    assert int(summary.group(1)) == 4
    assert float(summary.group(2)) == pytest.approx(np.mean(expected), abs=0.005)
    assert float(summary.group(3)) == pytest.approx(np.std(expected), abs=0.005)
    # CartPole pays 1 a step, so the lengths are the returns
    lengths = [int(m.group(3)) for m in episodes]
    assert lengths == expected
    assert float(summary.group(4)) == pytest.approx(
        np.mean(lengths), abs=0.051
    )  # printed to one decimal
    assert summary.group(6) == "deterministic"
    assert summary.group(7) == str(run.run_dir / "model.safetensors")
    assert len(lines) == 5


def test_default_eval_reproduces_the_runs_final_eval(run):
    report = evaluate_agent(run.run_dir)  # the config's eval.episodes, the trainer's seeds
    assert len(report.returns) == 3
    assert report.return_mean == run.final_eval


def test_run_dir_checkpoint_and_model_file_hold_the_same_agent(run, tmp_path):
    model = load_agent(run.run_dir)
    newest = list_checkpoints(run.run_dir / "checkpoints")[-1]
    checkpoint = load_agent(newest)
    stopped = tmp_path / "stopped"  # a run stopped before writing its model file
    shutil.copytree(run.run_dir, stopped)
    (stopped / "model.safetensors").unlink()
    from_dir = load_agent(stopped)
    assert checkpoint.source == newest
    assert from_dir.source == stopped / "checkpoints" / newest.name
    obs_BD = np.random.default_rng(0).normal(0, 1, (64, 4)).astype(np.float32)
    for other in (checkpoint, from_dir):
        np.testing.assert_array_equal(model.act(obs_BD), other.act(obs_BD))


def test_stochastic_eval_is_seeded_and_leaves_the_callers_rng_alone(run):
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = evaluate_agent(run.run_dir, episodes=3, seed=7, deterministic=False)
    assert torch.equal(torch.get_rng_state(), before)
    b = evaluate_agent(run.run_dir, episodes=3, seed=7, deterministic=False)
    c = evaluate_agent(run.run_dir, episodes=3, seed=8, deterministic=False)
    assert a.returns == b.returns and a.returns != c.returns
    assert not a.deterministic


def test_video_writes_one_playable_mp4_an_episode(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("moviepy")
    # an untrained agent: short episodes, quick to film
    model = untrained_model(tmp_path / "m.safetensors", make_config(overrides={"seed": 3}))
    videos = tmp_path / "videos"
    code, out, err = cli("eval", str(model), "--episodes", "2", "--video", str(videos))
    assert code == 0, err
    lengths = [int(n) for n in re.findall(r"length (\d+)$", out, flags=re.MULTILINE)]
    assert out.strip().splitlines()[-1] == f"videos: 2 in {videos}"
    files = sorted(videos.glob("*.mp4"))
    assert [f.name for f in files] == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    for file, length in zip(files, lengths, strict=True):
        assert file.stat().st_size > 0
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(file))
        assert frames == length + 1  # the reset frame, then one a step
        assert seconds == pytest.approx(frames / 50, abs=0.05)  # CartPole's render_fps
    before = {f: f.read_bytes() for f in files}
    code, _, err = cli("eval", str(model), "--episodes", "1", "--video", str(videos))
    assert_one_line_exit_2(code, err, "already holds evaluation videos")
    assert {f: f.read_bytes() for f in files} == before


def test_video_without_moviepy_says_what_to_install(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # as if not installed
    code, _, err = cli("eval", str(run.run_dir), "--video", str(tmp_path / "v"))
    assert_one_line_exit_2(code, err, "moviepy", "pip install 'trpo-ng[video]'")
    assert not (tmp_path / "v").exists()


def test_video_without_pygame_says_what_to_install(tmp_path, monkeypatch, recwarn):
    model = untrained_model(tmp_path / "m.safetensors", make_config())
    monkeypatch.setitem(sys.modules, "pygame", None)  # CartPole draws with pygame
    code, _, err = cli("eval", str(model), "--video", str(tmp_path / "v"))
    assert_one_line_exit_2(code, err, "rendering CartPole-v1 needs an optional dependency", "pip")
    assert list((tmp_path / "v").iterdir()) == []
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 matter")
def test_render_without_a_display(run, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = cli("eval", str(run.run_dir), "--render")
    assert_one_line_exit_2(code, err, "needs a display", "record a video")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 matter")
def test_render_with_a_display_that_cannot_be_reached(tmp_path, monkeypatch):
    pytest.importorskip("pygame")
    model = untrained_model(tmp_path / "m.safetensors", make_config())
    monkeypatch.setenv("DISPLAY", ":93")  # no X server there: SDL falls back to off-screen
    code, _, err = cli("eval", str(model), "--render")
    assert_one_line_exit_2(code, err, "cannot open a window for CartPole-v1")


def test_video_or_window_of_an_env_that_draws_neither(tmp_path):
    cfg = make_config(ROOT / "configs" / "fruit.yaml")
    model = untrained_model(tmp_path / "fruit.safetensors", cfg)
    code, _, err = cli("eval", str(model), "--video", str(tmp_path / "v"))
    assert_one_line_exit_2(code, err, "FruitClassification-v0", "renders no frames")
    code, _, err = cli("eval", str(model), "--render")
    assert_one_line_exit_2(code, err, "FruitClassification-v0", "no window")


def test_act_on_raw_single_and_batched_observations(tmp_path):
    cfg = Config(env_id="Pendulum-v1", normalize=NormalizeConfig(observations=True))
    agent = load_agent(untrained_model(tmp_path / "m.safetensors", cfg))
    assert agent.env_id == "Pendulum-v1" and agent.config == cfg
    obs_BD = np.random.default_rng(1).uniform(-1, 1, (5, 3)).astype(np.float32)
    batch = agent.act(obs_BD)
    assert batch.shape == (5, 1)
    for i in range(5):
        np.testing.assert_allclose(agent.act(obs_BD[i]), batch[i], rtol=1e-5)
    # by hand: the frozen normaliser, the policy's mean, the action bounds
    norm = agent.obs_normalizer
    z = (obs_BD - norm.rms.mean) / np.sqrt(norm.rms.var + norm.eps)
    with torch.no_grad():
        mean = agent.agent.policy(torch.as_tensor(np.clip(z, -10, 10), dtype=torch.float32)).mode
    np.testing.assert_allclose(batch, np.clip(mean.numpy(), -2.0, 2.0), rtol=1e-5, atol=1e-6)
    count = norm.rms.count
    agent.act(obs_BD)
    assert norm.rms.count == count  # frozen
    with pytest.raises(ValueError, match=r"neither one Pendulum-v1 observation"):
        agent.act(np.zeros(4))


def damaged_inputs(run_dir: Path, tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    corrupt = tmp / "corrupt.safetensors"
    data = (run_dir / "model.safetensors").read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    broken_run = tmp / "broken-run"
    shutil.copytree(run_dir, broken_run)
    for ckpt in list_checkpoints(broken_run / "checkpoints"):
        ckpt.write_bytes(b"\x00" * 100)
    (broken_run / "model.safetensors").unlink()
    foreign = tmp / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    other = tmp / "other.safetensors"
    save_state(other, {"weights": torch.zeros(2)})
    text = tmp / "notes.txt"
    text.write_text("hello")
    (tmp / "empty").mkdir()
    return {
        "missing path": (tmp / "nowhere", ["no such run directory"]),
        "not a run": (tmp / "empty", ["not a trpo-ng run directory"]),
        "truncated model": (corrupt, ["truncated or corrupt"]),
        "broken checkpoints": (broken_run, ["no loadable checkpoint"]),
        "foreign safetensors": (foreign, ["not a trpo-ng file"]),
        "other trpo-ng file": (other, ["neither a model nor a checkpoint"]),
        "text file": (text, ["truncated or corrupt"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing path",
        "not a run",
        "truncated model",
        "broken checkpoints",
        "foreign safetensors",
        "other trpo-ng file",
        "text file",
    ],
)
def test_bad_paths_are_one_line_exit_2(run, tmp_path, case):
    path, needles = damaged_inputs(run.run_dir, tmp_path)[case]
    code, out, err = cli("eval", str(path), "--episodes", "1")
    assert_one_line_exit_2(code, err, *needles)
    assert out == ""


def test_bad_episode_count(run):
    code, _, err = cli("eval", str(run.run_dir), "--episodes", "0")
    assert_one_line_exit_2(code, err, "episodes must be >= 1")
