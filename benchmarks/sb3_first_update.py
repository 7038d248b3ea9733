"""Save sb3-contrib TRPO's first policy update on one env, for ``sb3_parity.py``.

Usage (with the sb3-contrib venv's python): ``python benchmarks/sb3_first_update.py ENV_ID
OUT.npz [--seed S]``. Builds the model as ``sb3_runner.py`` does (rl-baselines3-zoo settings),
collects one rollout, lets sb3-contrib take its update, and saves the policy's weights before
and after (``before/<name>``, ``after/<name>``), the rollout (observations as the policy saw
them, actions, advantages, returns, values) and the settings that size the step
(``target_kl``, ``cg_damping``, ``cg_max_steps``). It does not import trpo-ng.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from sb3_contrib import TRPO
from sb3_runner import make_model


def policy_weights(model: TRPO) -> dict[str, np.ndarray]:
    """The actor's tensors (the value network's left out), by sb3's names."""
    return {
        name: p.detach().numpy().copy()
        for name, p in model.policy.named_parameters()
        if "value" not in name
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, hp = make_model(args.env_id, args.seed)
    if model.use_sde:
        raise SystemExit(f"sb3_first_update: {args.env_id} trains with gSDE here; not compared")
    before = policy_weights(model)
    model.learn(model.n_steps * hp.n_envs)  # one rollout, one update
    after = policy_weights(model)
    buf = model.rollout_buffer  # flattened to (steps * envs, ...) by the update's pass
    np.savez(
        args.out,
        **{f"before/{k}": v for k, v in before.items()},
        **{f"after/{k}": v for k, v in after.items()},
        obs=buf.observations,
        act=buf.actions,
        adv=buf.advantages.reshape(-1),
        ret=buf.returns.reshape(-1),
        values=buf.values.reshape(-1),
        target_kl=model.target_kl,
        cg_damping=model.cg_damping,
        cg_max_steps=model.cg_max_steps,
    )
    model.get_env().close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
