"""Fisher-vector products: double backprop of the KL vs the analytic Gauss-Newton form.

Times one product (the Fisher built beforehand) and a whole CG solve (building the Fisher
included, ``--cg-iters`` products) three ways: double backprop, the analytic product through
autograd (``gauss_newton_fisher_vector_product``) and the analytic product written out for
MLPs (``trpo_ng.mlp_fisher``, what the agents use for MLP policies), for 64x64 tanh MLP
policies like those of Hopper (obs 11, Gaussian over 3 actions) and CartPole (obs 4,
Categorical over 2 actions).
Each round times a block of products, then one solve, for every way in turn, so that a busy
machine slows all ways alike. Prints a markdown table: medians over rounds in ms, the
speed-up (double backprop time / this time) and the largest relative difference
max|a - b| / max|b| between this product and double backprop's.

    .venv/bin/python benchmarks/fvp.py                       # 1 thread, 2048 and 8192
    .venv/bin/python benchmarks/fvp.py --batch-sizes 2048 --dtypes float32 --alternatives

``--alternatives`` also times the analytic product built other ways: ``torch.func.jvp`` per
product, ``torch.func.linearize`` once per Fisher, and the double-vjp trick through nested
``torch.func.vjp`` (the library uses it through ``torch.autograd``).

Timings include minor page faults: glibc's malloc may hand freed activations (0.5-1 MB at
batch 2048) back to the OS and fault them in again on the next product, worst for double
backprop. ``MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824`` in the
environment stops that and speeds up both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor
from torch.distributions import kl_divergence

from trpo_ng.mlp_fisher import mlp_fisher_product
from trpo_ng.natural_gradient import (
    VectorProduct,
    conjugate_gradient,
    detached,
    fisher_vector_product,
    gauss_newton_fisher_vector_product,
    module_distribution_fn,
)
from trpo_ng.policies import MLPPolicy

POLICIES = {  # name: (obs dim, action space)
    "hopper-gaussian": (11, gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)),
    "cartpole-categorical": (4, gym.spaces.Discrete(2)),
}
Builder = Callable[[], VectorProduct]


def builders(policy: MLPPolicy, obs: Tensor, damping: float, alternatives: bool) -> dict:
    """name -> function building v -> (F + damping I) v at the policy's current weights."""
    params = list(policy.parameters())
    dist_fn = module_distribution_fn(policy, obs)

    def double_backprop() -> VectorProduct:
        new = policy(obs)
        kl = kl_divergence(detached(new), new).mean()
        return fisher_vector_product(kl, params, damping=damping)

    def analytic() -> VectorProduct:
        return gauss_newton_fisher_vector_product(dist_fn, params, damping=damping)

    def by_hand() -> VectorProduct:
        fisher_fn = mlp_fisher_product(policy, obs, params)
        assert fisher_fn is not None
        return fisher_fn(damping)

    found = {"double_backprop": double_backprop, "analytic": analytic, "analytic_mlp": by_hand}
    if alternatives:
        found |= {
            name: functorch_builder(dist_fn, params, damping, how)
            for name, how in (
                ("func.jvp", "jvp"),
                ("func.linearize", "linearize"),
                ("func.vjp(vjp)", "vjp"),
            )
        }
    return found


def functorch_builder(dist_fn, params: list[Tensor], damping: float, how: str) -> Builder:
    """The analytic product with J v from torch.func: jvp per product, linearize, or vjp."""
    primals = tuple(p.detach() for p in params)
    sizes = [p.numel() for p in primals]

    def outputs(*ps: Tensor) -> tuple[Tensor, ...]:
        return dist_fn(ps).params()

    def build() -> VectorProduct:
        out, vjp_fn = torch.func.vjp(outputs, *primals)
        metric = detached(dist_fn(primals))
        n = metric.batch_shape.numel()
        if how == "linearize":
            _, jvp_fn = torch.func.linearize(outputs, *primals)
        elif how == "vjp":
            _, transpose = torch.func.vjp(vjp_fn, tuple(torch.zeros_like(t) for t in out))

        def jacobian_times(tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            if how == "jvp":
                return torch.func.jvp(outputs, primals, tangents)[1]
            if how == "linearize":
                return jvp_fn(*tangents)
            return transpose(tangents)[0]

        def product(v: Tensor) -> Tensor:
            tangents = tuple(t.view_as(p) for t, p in zip(v.split(sizes), primals, strict=True))
            JtMJv = vjp_fn(metric.fisher_product(jacobian_times(tangents)))
            return torch.cat([g.reshape(-1) for g in JtMJv]).div_(n).add_(v, alpha=damping)

        return product

    return build


def median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def bench(name: str, dtype: torch.dtype, batch: int, args: argparse.Namespace) -> list[str]:
    obs_dim, action_space = POLICIES[name]
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float32)
    policy = MLPPolicy(obs_space, action_space, hidden_sizes=(64, 64)).to(dtype)
    obs = torch.randn(batch, obs_dim, dtype=dtype)
    ways = builders(policy, obs, args.damping, args.alternatives)
    products = {way: build() for way, build in ways.items()}
    v = torch.randn(sum(p.numel() for p in policy.parameters()), dtype=dtype)
    reference = products["double_backprop"](v)
    product_s: dict[str, list[float]] = {way: [] for way in ways}
    solve_s: dict[str, list[float]] = {way: [] for way in ways}
    for round_ in range(1 + args.rounds):  # round 0 warms up
        for way, build in ways.items():
            start = time.perf_counter()
            for _ in range(args.block):
                products[way](v)
            middle = time.perf_counter()
            conjugate_gradient(build(), v, iters=args.cg_iters, tol=0.0)
            if round_ > 0:
                product_s[way].append((middle - start) / args.block)
                solve_s[way].append(time.perf_counter() - middle)
    base_p, base_s = median_ms(product_s["double_backprop"]), median_ms(solve_s["double_backprop"])
    rows = []
    for way, product in products.items():
        diff = float((product(v) - reference).abs().max() / reference.abs().max())
        p_ms, s_ms = median_ms(product_s[way]), median_ms(solve_s[way])
        rows.append(
            f"| {name} | {str(dtype).removeprefix('torch.')} | {batch} | {way} "
            f"| {p_ms:.2f} | {base_p / p_ms:.2f}x | {s_ms:.1f} | {base_s / s_ms:.2f}x "
            f"| {diff:.1e} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds (after one warm-up)")
    parser.add_argument("--block", type=int, default=10, help="products timed together a round")
    parser.add_argument("--cg-iters", type=int, default=25)
    parser.add_argument("--damping", type=float, default=0.1)
    parser.add_argument("--alternatives", action="store_true", help="also torch.func variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians over "
        f"{args.rounds} rounds of a product (mean of {args.block}) and a CG solve "
        f"({args.cg_iters} iterations, building the Fisher included); "
        f"speed-up = double_backprop time / this time\n"
    )
    print(
        "| policy | dtype | batch | Fisher-vector product | product ms | speed-up "
        "| CG solve ms | speed-up | max rel diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.policies:
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                for row in bench(name, getattr(torch, dtype), batch, args):
                    print(row, flush=True)


if __name__ == "__main__":
    main()
