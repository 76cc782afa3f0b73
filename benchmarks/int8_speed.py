"""How fast the int8 reference interpreter scores a candidate, against an earlier commit's.

    python benchmarks/int8_speed.py --against 2983108   # writes results/int8_speed.md

Ten random architectures that fit the Fashion-MNIST benchmark's m4-tight budget (the
MobileNet-like space narrowed for it), random weights, int8 PTQ on 256 training images;
each interpreter then predicts the same 1,000 validation images, in turns, twice. The
report gives the CPU seconds of each and whether the int8 outputs are identical (they
must be: both are the integer kernels of TFLite Micro).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fashion_mnist"))
from run import BUDGETS, MOBILENET_M4, provenance  # noqa: E402

import nas  # noqa: E402
import nas.int8 as current  # noqa: E402
from nas.hardware import load_profile  # noqa: E402

RESULT = HERE / "results" / "int8_speed.md"


def earlier_interpreter(commit: str, work: Path):  # noqa: ANN201
    """``nas/int8.py`` as it was at ``commit``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{commit}:nas/int8.py"], cwd=HERE.parent, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = work / "int8_earlier.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("int8_earlier", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="the earlier commit")
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULT)
    opts = ap.parse_args(argv)
    torch.set_num_threads(1)
    work = Path("outputs/int8_speed")
    work.mkdir(parents=True, exist_ok=True)
    earlier = earlier_interpreter(opts.against, work)
    b = BUDGETS["m4-tight"]
    hw = dataclasses.replace(load_profile(b["profile"]), **b["memory"])
    space = nas.create_search_space(
        "mobilenet", **{k: json.loads(v) for k, v in MOBILENET_M4.items()}
    )
    data = nas.create_dataset("fashion_mnist", train_subset=10000, test_subset=1000).load()
    rng = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    graphs = []
    while len(graphs) < opts.archs:
        spec = space.sample(rng.ask())
        size = space.resolution(spec)
        d = data.resized(size)
        torch.manual_seed(len(graphs))
        module = space.build(spec, d.in_channels, d.num_classes).eval()
        graph = space.trace(module, (1, d.in_channels, size, size), "arch")
        cost = space.cost(module, graph, hw)
        if cost.infeasible_reason(hw) or cost.macs < 1_500_000:
            continue
        calib = d.x_train[:256].transpose(0, 2, 3, 1)
        x = d.x_val[: opts.images].transpose(0, 2, 3, 1)
        graphs.append((current.quantize(graph, calib), x))
    cpu = {"current": 0.0, "earlier": 0.0}
    same = True
    for _ in range(2):
        for name, interp in (("earlier", earlier), ("current", current)):
            outs = []
            for qg, x in graphs:
                t = time.process_time()
                outs.append(interp.run_int8(qg, qg.input_params.quantize(x)))
                cpu[name] += time.process_time() - t
            if name == "earlier":
                reference = outs
            else:
                same &= all(np.array_equal(a, b) for a, b in zip(reference, outs, strict=True))
    per = {k: v / 2 / len(graphs) for k, v in cpu.items()}
    prov = provenance()
    text = [
        "# Int8 reference interpreter: CPU time per candidate",
        "",
        f"- Command: `python benchmarks/int8_speed.py {' '.join(sys.argv[1:])}`",
        f"- Commit {prov['commit']} against {opts.against}, {prov['date']}; {prov['machine']}; "
        "1 torch thread",
        f"- {len(graphs)} random m4-tight MobileNet-like architectures (at least 1.5 M MACs), "
        f"{opts.images:,} Fashion-MNIST validation images each, two turns",
        "",
        f"**{per['earlier']:.2f} CPU s per candidate at {opts.against}, {per['current']:.2f} "
        f"now: {per['earlier'] / per['current']:.2f} times faster.** Int8 outputs identical: "
        f"{'yes' if same else 'NO'}.",
        "",
    ]
    opts.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
