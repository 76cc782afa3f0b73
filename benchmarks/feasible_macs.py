"""How much compute the models of a search space that fit a budget have: sample
architectures at random, cost each statically (no training) and report the MACs of the
feasible ones.

Under a memory budget, more MACs usually buy accuracy (MCUNet, Lin et al., NeurIPS 2020,
chooses its search space by this distribution). A space whose feasible models are mostly
far smaller than a hand-designed network of the same budget makes the search start from
behind.

Usage: python benchmarks/feasible_macs.py [--budget m4-tight] [--n 2000] [--seed 0]
       [--reference 2239584]   # the MACs of a model to compare with (the DS-CNN here)
       [--families]            # the benchmark's families space instead of the
                               # MobileNet-like one narrowed for the M4 budgets
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import optuna
import torch
from hydra import compose, initialize_config_module

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fashion_mnist"))
from run import BUDGETS, MOBILENET_M4_SPACE, hw_args, space_args  # noqa: E402

from nas.config import register_configs  # noqa: E402
from nas.search import build_components  # noqa: E402


def sample_costs(
    budget: str, n: int, seed: int, overrides: tuple[str, ...] = (), families: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """MACs and feasibility of ``n`` random architectures of the MobileNet-like space
    narrowed for the M4 budgets (``families``: the budget's families space), with
    ``overrides`` (``search_space.widths=[...]`` and the like) on top of its own."""
    b = BUDGETS[budget]
    space = space_args(budget) if families else MOBILENET_M4_SPACE
    register_configs()
    with initialize_config_module("nas.conf", version_base="1.3"):
        args = [*hw_args(budget), *space, f"backend={b['backend']}", *overrides]
        cfg = compose("config", args)
    comp = build_components(cfg)  # the default dataset, digits, is only loaded
    hw, space = comp.hw, comp.space
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    macs, feasible = np.zeros(n), np.zeros(n, dtype=bool)
    for i in range(n):
        trial = study.ask()
        spec = space.sample(trial)
        size = space.resolution(spec)
        module = space.build(spec, 1, 10)
        cost = space.cost(module, space.trace(module, (1, 1, size, size), f"sample {i}"), hw)
        macs[i], feasible[i] = cost.macs, not cost.infeasible_reason(hw)
        study.tell(trial, 0.0)
    return macs, feasible


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", choices=list(BUDGETS), default="m4-tight")
    p.add_argument("--n", type=int, default=2000, help="architectures to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", type=float, help="MACs of a model to compare with")
    p.add_argument("--families", action="store_true", help="the budget's families space")
    p.add_argument("overrides", nargs="*", help="search_space.* overrides to try")
    args = p.parse_args()
    torch.set_num_threads(1)
    macs, feasible = sample_costs(
        args.budget, args.n, args.seed, tuple(args.overrides), args.families
    )
    fit = macs[feasible]
    share = f"{feasible.mean():.1%}"
    print(f"{args.budget}: {feasible.sum()} of {args.n} random architectures fit ({share})")
    if not len(fit):
        return 0
    q = np.percentile(fit, [50, 90, 99])
    print(
        f"MACs of those that fit: median {q[0]:,.0f}, 90th percentile {q[1]:,.0f}, "
        f"99th {q[2]:,.0f}, max {fit.max():,.0f}"
    )
    for cut in (1e6, 1.2e6, 1.5e6, 2e6, *([args.reference] if args.reference else [])):
        above = (fit > cut).mean()
        print(
            f"  more than {cut:,.0f} MACs: {above:.1%} of those that fit, "
            f"{above * feasible.mean():.1%} of all"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
