import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from agents import make_agent
from trpo_ng.config import Config, ConfigError, load_config
from trpo_ng.saved_agent import load_agent
from trpo_ng.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def test_cartpole_yaml_spells_out_the_defaults():
    assert load_config(ROOT / "configs" / "cartpole.yaml") == Config()


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None, ["policy.max_kl=0.02", "network.hidden_sizes=[32, 16]", "seed=7", "gamma=1"]
    )
    assert cfg.policy.max_kl == 0.02
    assert cfg.network.hidden_sizes == [32, 16]
    assert cfg.seed == 7 and cfg.gamma == 1.0 and isinstance(cfg.gamma, float)


def test_the_value_network_takes_its_own_sizes_or_the_policys(tmp_path):
    def widths(net):
        return [m.out_features for m in net if isinstance(m, torch.nn.Linear)]

    env = gym.make("CartPole-v1")
    cfg = load_config(None, ["network.value_hidden_sizes=[128, 32]"])
    agent = make_agent(cfg, env.observation_space, env.action_space)
    assert widths(agent.value_fn.net) == [128, 32, 1] and widths(agent.policy.net) == [64, 64, 2]
    default = make_agent(load_config(None), env.observation_space, env.action_space)
    assert widths(default.value_fn.net) == [64, 64, 1]
    # a saved run rebuilds the wider critic from the config stored with its weights
    cfg = load_config(
        None,
        [
            "network.value_hidden_sizes=[16]",
            "total_steps=2048",
            "eval.every=0",
            "eval.episodes=1",
            f"log_dir={tmp_path}",
        ],
    )
    result = train(cfg, quiet=True)
    saved = load_agent(result.run_dir)
    assert widths(saved.agent.value_fn.net) == [16, 1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy.maxkl=0.1"], "unknown config key 'policy.maxkl' (did you mean 'policy.max_kl'?)"),
        (["seed=abc"], "config key 'seed' expects int, got str 'abc'"),
        (["normalize_advantages=3"], "config key 'normalize_advantages' expects bool"),
        (["policy.max_kl=0"], "config key 'policy.max_kl' must be > 0"),
        (["gamma=1.5"], "config key 'gamma' must be in (0, 1]"),
        (["network.hidden_sizes=[64, -1]"], "config key 'network.hidden_sizes' must be sizes"),
        (["network.value_hidden_sizes=[0]"], "config key 'network.value_hidden_sizes' must be"),
        (["network.value_hidden_sizes=64"], "'network.value_hidden_sizes' expects a list of int"),
        (["rollout.backend=threads"], "config key 'rollout.backend' must be one of"),
        (["policy=3"], "policy must be a mapping"),
        (["env_kwargs=3"], "config key 'env_kwargs' expects a mapping of names, got 3"),
        (["env_kwargs={render_mode: human}"], "config key 'env_kwargs' must be gym.make's other"),
        (["nonsense"], "is not of the form key=value"),
        (
            [
                "rollout.num_envs=2",
                "rollout.steps_per_env=64",
                "normalize.freeze_observations_after=100",
            ],
            "'normalize.freeze_observations_after' must be >= one batch (128 env steps) or 0",
        ),
    ],
)
def test_bad_values_are_one_clear_error(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value)


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "trpo_ng.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("env_id: CartPole-v1\npolicy:\n  max_kll: 0.01\n", "policy.max_kll"),
        ("seed: zero\n", "seed"),
    ],
)
def test_cli_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, yaml_text, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    proc = run_cli("train", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"'{key}'" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_cli_unknown_env_id_exits_2(tmp_path):
    proc = run_cli("train", "env_id=NoSuchEnv-v9", f"log_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "NoSuchEnv-v9" in proc.stderr


def test_env_kwargs_are_keyword_arguments_to_gym_make(tmp_path):
    cfg = load_config(
        None, ["env_id=Pendulum-v1", "env_kwargs.g=2.5", "env_kwargs.max_episode_steps=50"]
    )
    assert cfg.env_kwargs == {"g": 2.5, "max_episode_steps": 50}
    overrides = ["total_steps=512", "eval.every=0", "eval.episodes=1", f"log_dir={tmp_path}"]
    result = train(
        load_config(None, [*overrides, "env_id=Pendulum-v1", "env_kwargs.g=2.5"]), quiet=True
    )
    env = load_agent(result.run_dir).make_env()  # the saved agent's env is the trained one
    assert env.unwrapped.g == 2.5
    with pytest.raises(ConfigError) as info:
        train(
            load_config(None, [*overrides, "env_id=Pendulum-v1", "env_kwargs.gg=2.5"]), quiet=True
        )
    message = str(info.value)
    assert message.startswith("env 'Pendulum-v1': config key 'env_kwargs': cannot make it with")
    assert "'gg'" in message and "\n" not in message


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    proc = run_cli("train", f"log_dir={tmp_path}", "run_name=mine", cwd=tmp_path)
    assert proc.returncode == 2 and "already holds files" in proc.stderr
    assert (run / "notes.txt").read_text() == "keep me"
