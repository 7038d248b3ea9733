"""Does trpo-ng take sb3-contrib TRPO's step? One update, same weights, same rollout.

    python benchmarks/sb3_parity.py configs/hopper.yaml configs/walker2d.yaml configs/cartpole.yaml

For each config's env, ``sb3_first_update.py`` (run with the sb3-contrib venv's python) saves
sb3-contrib's first update at the rl-baselines3-zoo settings; trpo-ng's agent, built from the
config with sb3's initial policy weights, then updates on the same rollout, and the two steps
are compared tensor by tensor (largest ``|step_trpo - step_sb3| / |step_sb3|``).

sb3-contrib averages its Gaussian KL over the action dimensions (``kl_divergence`` of two
per-dimension ``Normal``s, then ``.mean()``; the paper's KL between the multivariate policies is
their sum), so its ``target_kl`` and ``cg_damping`` are per action dimension: trpo-ng takes its
step with both multiplied by the action dimension. The table shows the difference with the
values as written and as translated.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import make_agent  # noqa: E402
from trpo_ng.config import load_config  # noqa: E402
from trpo_ng.rollout import Batch  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_SB3_PYTHON = HERE / ".venv-sb3" / "bin" / "python"


def sb3_names(num_hidden: int, *, gaussian: bool) -> dict[str, str]:
    """trpo-ng's policy tensor names -> sb3's (``mlp_extractor.policy_net`` + ``action_net``)."""
    names = {"log_std": "log_std"} if gaussian else {}
    for i in range(num_hidden):
        for kind in ("weight", "bias"):
            names[f"net.{2 * i}.{kind}"] = f"mlp_extractor.policy_net.{2 * i}.{kind}"
    for kind in ("weight", "bias"):
        names[f"net.{2 * num_hidden}.{kind}"] = f"action_net.{kind}"
    return names


def actions(act: np.ndarray, *, discrete: bool) -> torch.Tensor:
    """sb3's stored actions as a (T, N = 1) batch: indices for a categorical policy (sb3 keeps
    them as floats of shape (n, 1)), else (T, 1, A) floats."""
    if discrete:
        return torch.from_numpy(act).long().view(-1, 1)
    return torch.from_numpy(act).float()[:, None]


def step_difference(path: Path, dump: dict[str, np.ndarray], scale: float) -> float:
    """The largest relative difference between trpo-ng's step, with sb3's ``target_kl`` and
    ``cg_damping`` times ``scale``, and sb3-contrib's own."""
    overrides = {
        "policy.max_kl": float(dump["target_kl"]) * scale,
        "policy.damping": float(dump["cg_damping"]) * scale,
        "policy.cg_iters": int(dump["cg_max_steps"]),
        "policy.sde": False,  # the zoo's MuJoCo set: plain Gaussian, log-std 0, full batch
        "policy.init_log_std": 0.0,
        "policy.fisher_subsample": 1,
        "policy.damped_step_size": True,
    }
    cfg = load_config(path, [f"{k}={v}" for k, v in overrides.items()])
    env = gym.make(cfg.env_id)  # the env sb3_first_update.py played: the id, not env_kwargs
    agent = make_agent(cfg, env.observation_space, env.action_space)
    env.close()
    names = sb3_names(len(cfg.network.hidden_sizes), gaussian="before/log_std" in dump)
    before = {k: torch.from_numpy(dump[f"before/{v}"]) for k, v in names.items()}
    agent.policy.load_state_dict(before)
    n = dump["obs"].shape[0]
    zeros = torch.zeros((n, 1))
    batch = Batch(
        obs_TND=torch.from_numpy(dump["obs"]).float()[:, None],
        act_TN=actions(dump["act"], discrete=agent.policy.kind == "categorical"),
        rew_TN=zeros,
        term_TN=zeros.bool(),
        trunc_TN=zeros.bool(),
        values_TN=torch.from_numpy(dump["values"]).float()[:, None],
        next_values_TN=zeros,
    )
    adv = torch.from_numpy(dump["adv"]).float()[:, None]
    ret = torch.from_numpy(dump["ret"]).float()[:, None]
    agent.update(batch, adv, ret)
    after = agent.policy.state_dict()
    worst = 0.0
    for name, sb3_name in names.items():
        sb3_step = dump[f"after/{sb3_name}"] - dump[f"before/{sb3_name}"]
        ours = after[name].numpy() - before[name].numpy()
        worst = max(worst, float(np.linalg.norm(ours - sb3_step) / np.linalg.norm(sb3_step)))
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", type=Path)
    p.add_argument("--sb3-python", type=Path, default=DEFAULT_SB3_PYTHON)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(
        "| env | action dims | sb3 target_kl, cg_damping | step difference as written | "
        "x action dims |"
    )
    print("|---|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.configs:
            cfg = load_config(path)
            out = Path(tmp) / f"{cfg.env_id}.npz"
            argv = [args.sb3_python, HERE / "sb3_first_update.py", cfg.env_id, out]
            done = subprocess.run(
                [*map(str, argv), "--seed", str(args.seed)], capture_output=True, text=True
            )
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            dump = dict(np.load(out))
            dims = int(np.prod(dump["act"].shape[1:]))
            as_written = step_difference(path, dump, 1.0)
            translated = step_difference(path, dump, float(dims))
            print(
                f"| {cfg.env_id} | {dims} | {float(dump['target_kl']):g}, "
                f"{float(dump['cg_damping']):g} | {as_written:.1e} | {translated:.1e} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
