"""The Python API: the README's example runs; configs from paths, objects and overrides; a light
``import trpo_ng``."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import trpo_ng
from trpo_ng import make_config
from trpo_ng.config import Config, ConfigError, load_config
from trpo_ng.rollout import evaluate

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if "load_agent(" in b]
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)  # the run goes to tmp_path/runs
    script = tmp_path / "example.py"
    script.write_text(block)
    ns = runpy.run_path(str(script), run_name="__main__")
    result, agent = ns["result"], ns["agent"]
    rollout = load_config(ROOT / "configs" / "cartpole.yaml").rollout
    batch = rollout.num_envs * rollout.steps_per_env
    assert result.steps == 20000 // batch * batch  # whole batches within the budget
    assert result.run_dir.parent == Path("runs") and (tmp_path / result.run_dir).is_dir()
    assert result.run_dir.name.startswith("cartpole-s0-")
    assert agent.env_id == "CartPole-v1" and agent.source == result.run_dir / "model.safetensors"
    # the loop in the README is rollout.evaluate's episode on seed 0
    env = gym.make("CartPole-v1")
    norm = agent.obs_normalizer
    (expected,) = evaluate(agent.agent, env, episodes=1, seed=0, obs_normalizer=norm)
    assert ns["episode_return"] == expected
    assert expected >= 100  # it learnt something in ~20k steps (a random policy gets ~20)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        f"{result.run_dir}: {result.steps} steps, eval return {result.final_eval:.1f}",
        f"return {expected:.0f}",
    ]


def test_make_config_from_a_path_an_object_or_the_defaults():
    path = ROOT / "configs" / "cartpole.yaml"
    as_list = make_config(path, ["policy.max_kl=0.02", "network.hidden_sizes=[16]"])
    as_dict = make_config(path, {"policy.max_kl": 0.02, "network.hidden_sizes": [16]})
    assert (
        as_list == as_dict == load_config(path, ["policy.max_kl=0.02", "network.hidden_sizes=[16]"])
    )
    base = Config()
    changed = make_config(base, {"seed": 4, "eval.episodes": 2})
    assert (changed.seed, changed.eval.episodes) == (4, 2)
    assert base == Config()  # the given object is not changed
    assert make_config(base, ["seed=4", "eval.episodes=2"]) == changed
    assert make_config() == Config()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"policy.maxkl": 0.1}, "did you mean 'policy.max_kl'"),
        ({"seed": "abc"}, "'seed' expects int"),
        ({"gamma": 0}, "'gamma' must be in (0, 1]"),
        (["seed"], "not of the form key=value"),
    ],
)
def test_make_config_rejects_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(Config(), overrides)


def test_the_api_names_and_a_light_import():
    from trpo_ng.api import train
    from trpo_ng.saved_agent import load_agent

    assert trpo_ng.train is train and trpo_ng.load_agent is load_agent
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        trpo_ng.trian  # noqa: B018
    code = (
        "import sys, trpo_ng, trpo_ng.natural_gradient\n"
        "print(sorted(m for m in ('gymnasium', 'tensorboard', 'matplotlib', 'agents')"
        " if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
