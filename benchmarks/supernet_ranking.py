"""Does a supernet rank architectures as training them would? Fashion-MNIST, m4-tight.

    python benchmarks/supernet_ranking.py              # resumes; writes the result file
    python benchmarks/supernet_ranking.py --hours 1.2  # stop starting work after 1.2 h
    python benchmarks/supernet_ranking.py --quick      # the same pipeline in minutes

Steps, each resumable: results go to ``benchmarks/results/supernet_ranking_work/`` one
line at a time (committed, with the supernet checkpoint, so a later session resumes), and
a rerun skips what is there:

1. Train the m4-tight MobileNet-like space's supernet (``search.strategy=supernet``
   with this script's options) on the search data of ``benchmarks/fashion_mnist/run.py``
   (10,000 images, 10% of them validate); a checkpoint per epoch.
2. Draw ``--archs`` random architectures that fit m4-tight (static cost, the compute
   floor included) and score each with inherited weights, as the search does (batch norm
   recalibrated, int8 PTQ, int8 validation accuracy): the time per candidate.
3. Train each architecture alone: the search's 3-epoch proxy on the search data
   (int8 validation accuracy: what today's search ranks by); the same recipe started from
   the inherited weights (what a finalist of the supernet search gets with
   ``search.supernet.finalist_init=inherited``); and the benchmark's final recipe
   (8 epochs on 30,000 images; int8 validation and test accuracy).

The result file (``benchmarks/results/supernet_ranking.md``) gives Kendall's tau between
the final int8 test accuracy and (a) the inherited accuracy, (b) the proxy's, over the
architectures that have all three, with command, commit, machine and CPU times.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "fashion_mnist"))
from run import BUDGETS, MOBILENET_M4_SPACE, Recipe, hw_args, provenance  # noqa: E402

from nas.config import register_configs  # noqa: E402
from nas.int8 import accuracy_int8, quantize  # noqa: E402
from nas.search import Objective, build_components  # noqa: E402
from nas.supernet import (  # noqa: E402
    bn_images,
    int8_val_accuracy,
    open_supernet,
    recalibrate_bn,
    train_supernet,
)
from nas.train import TrainSettings, fit  # noqa: E402

BUDGET = "m4-tight"
#: The Fashion-MNIST benchmark's recipes when this benchmark's data were measured (its
#: search recipe, and its final recipe of 8 epochs on 30,000 images).
FULL = Recipe(
    seeds=[0],
    trials={BUDGET: 20},
    search_epochs=3,
    search_train=10000,
    final_epochs=8,
    distill_epochs=0,
    teacher_epochs=0,
    final_train=30000,
)
WORK = HERE / "results" / "supernet_ranking_work"  # committed: a later session resumes
RESULT = HERE / "results" / "supernet_ranking.md"


def compose(extra: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    b = BUDGETS[BUDGET]
    args = [*hw_args(BUDGET), *MOBILENET_M4_SPACE, *b["search"], *extra]
    register_configs([b["profile"]])
    with initialize_config_module("nas.conf", version_base="1.3"):
        return hydra_compose("config", overrides=args)


def data_args(train: int, test: int, epochs: int) -> list[str]:
    return [
        "dataset=fashion_mnist",
        f"dataset.train_subset={train}",
        f"dataset.test_subset={test}",
        f"search.epochs={epochs}",
        f"search.batch_size={FULL.batch_size}",
        f"search.lr={FULL.lr}",
    ]


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def int8_accuracies(obj: Objective, spec: dict[str, Any], module: torch.nn.Module) -> dict:
    """Int8 (PTQ) validation and test accuracy of a trained stand-alone module."""
    size = obj.comp.space.resolution(spec)
    data = obj.data_at(size)
    graph = obj.comp.space.trace(module, (1, data.in_channels, size, size), "arch")
    assert graph is not None
    qg = quantize(graph, data.x_train[:256].transpose(0, 2, 3, 1))
    return {
        "val": accuracy_int8(qg, data.x_val, data.y_val),
        "test": accuracy_int8(qg, data.x_test, data.y_test),
    }


def train_alone(
    obj: Objective, spec: dict[str, Any], seed: int, inherit: Any = None
) -> tuple[dict, float]:
    """Train ``spec`` with ``obj``'s recipe, from scratch or from the weights it
    inherits from the supernet ``inherit``; its int8 accuracies and CPU seconds."""
    space, s = obj.comp.space, obj.cfg.search
    data = obj.data_at(space.resolution(spec))
    torch.manual_seed(seed)
    module = space.build(spec, data.in_channels, data.num_classes)
    if inherit is not None:
        inherit.extract(spec, module)
    started = time.process_time()
    fit(module, data, TrainSettings(s.epochs, s.batch_size, s.lr, s.weight_decay, seed))
    return int8_accuracies(obj, spec, module), time.process_time() - started


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b."""
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def noise_ceiling(test: list[float], images: int, draws: int = 2000) -> float:
    """Kendall tau against ``test`` of a predictor that knows every architecture's test
    accuracy exactly but, like the inherited and proxy scores, measures it on ``images``
    validation images: each draw is binomial. The median over ``draws``; the most any
    score measured on that many images can expect here."""
    rng = np.random.default_rng(0)
    p = np.asarray(test)
    taus = [kendall_tau(list(rng.binomial(images, p) / images), list(p)) for _ in range(draws)]
    return float(np.median(taus))


def choice_taus(work: Path) -> list[tuple[str, float]]:
    """Kendall's tau between each single architecture choice (its value; a list's sum)
    and the final int8 test accuracy, over the architectures with a final accuracy,
    strongest first: what one choice alone predicts, next to the inherited and proxy
    scores."""
    specs = json.loads((work / "archs.json").read_text())["archs"]
    final = {r["i"]: r["test"] for r in lines(work / "final.jsonl")}
    done = sorted(final)
    taus = []
    for key in specs[0]:
        values = [specs[i][key] for i in done]
        values = [sum(v) if isinstance(v, list) else v for v in values]
        if len(set(values)) > 1:
            taus.append((key, kendall_tau(values, [final[i] for i in done])))
    return sorted(taus, key=lambda kt: -abs(kt[1]))


def within_groups(work: Path, key: str) -> str:
    """Kendall's tau of the inherited, proxy and final validation scores against the final
    test accuracy among the architectures that share the value of choice ``key``."""
    specs = json.loads((work / "archs.json").read_text())["archs"]
    final = {r["i"]: r for r in lines(work / "final.jsonl")}
    scores = {
        "inherited": {r["i"]: r["acc"] for r in lines(work / "inherited.jsonl")},
        "proxy": {r["i"]: r["val"] for r in lines(work / "proxy.jsonl")},
        "final val": {i: r["val"] for i, r in final.items()},
    }
    out = []
    for value in sorted({repr(specs[i][key]) for i in final}, key=lambda r: (len(r), r)):
        group = [i for i in sorted(final) if repr(specs[i][key]) == value]
        test = [final[i]["test"] for i in group]
        taus = ", ".join(
            f"{name} {kendall_tau([got[i] for i in group], test):+.3f}"
            for name, got in scores.items()
            if all(i in got for i in group) and len(group) >= 3
        )
        inherited = [scores["inherited"][i] for i in group if i in scores["inherited"]]
        means = f"inherited {np.mean(inherited):.3f}, test {np.mean(test):.3f}"
        out.append(
            f"{key}={value}: {len(group)} architectures, means {means}; "
            f"tau vs test: {taus or 'too few'}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=8, help="supernet epochs")
    ap.add_argument("--hours", type=float, default=None, help="start no work after this")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reverse", action="store_true", help="architectures last to first")
    ap.add_argument(
        "--steps",
        default="inherited,proxy,finetune,final",
        help="which measurements this process makes (two processes may split them)",
    )
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument(
        "--val-images",
        type=int,
        default=None,
        help="validation images the inherited and proxy accuracies are measured on "
        "(default: the search data's 10%%, 1,000); as many training images (another draw)",
    )
    ap.add_argument("--result", type=Path, default=RESULT, help="the result file")
    ap.add_argument(
        "--choices",
        action="store_true",
        help="print each single choice's tau against the final accuracy (from --work's "
        "measurements; nothing trained or written)",
    )
    opts = ap.parse_args(argv)
    if opts.choices:
        measured = opts.work / ("quick" if opts.quick else "full")
        taus = choice_taus(measured)
        for key, tau in taus:
            print(f"{key}: tau {tau:+.3f}")
        if taus:
            print(within_groups(measured, taus[0][0]))
        return 0
    started = time.monotonic()
    work = opts.work / ("quick" if opts.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    train, final_train = (2000, 2000) if opts.quick else (FULL.search_train, FULL.final_train)
    epochs, final_epochs = (1, 1) if opts.quick else (FULL.search_epochs, FULL.final_epochs)
    sn_epochs = 1 if opts.quick else opts.epochs
    archs_n = 4 if opts.quick else opts.archs
    supernet_args = [
        "search.strategy=supernet",
        f"search.supernet.epochs={sn_epochs}",
        f"search.supernet.path={work / 'supernet.pt'}",
    ]
    val = []
    if opts.val_images:  # as many training images (another draw of them), more to validate
        train = train * 9 // 10 + opts.val_images
        val = [f"dataset.val_fraction={opts.val_images / train}"]
    search = compose([*data_args(train, FULL.search_test, epochs), *val, *supernet_args])
    final = compose(data_args(final_train, 0, final_epochs))
    torch.manual_seed(0)
    obj = Objective(search, build_components(search), work)
    final_obj = Objective(final, build_components(final), work)

    def time_left() -> bool:
        return opts.hours is None or time.monotonic() - started < opts.hours * 3600

    kinds = opts.steps.split(",")
    # 1. the supernet (an untrained one is enough to draw architectures)
    state_file = work / "supernet_cpu.json"
    uses_weights = "inherited" in kinds or "finetune" in kinds
    prep = open_supernet(search, obj.comp.space, obj.comp.data, work, check=uses_weights)
    net = prep.net.eval()
    if not prep.trained and uses_weights:
        cpu0 = time.process_time()
        net = train_supernet(prep, obj.data_at, search, obj.fits)
        spent = json.loads(state_file.read_text())["cpu_s"] if state_file.is_file() else 0.0
        state_file.write_text(json.dumps({"cpu_s": spent + time.process_time() - cpu0}))

    # 2. architectures and their inherited accuracy
    archs_file = work / "archs.json"
    if not archs_file.is_file():
        rng = random.Random(0)
        specs: list[dict[str, Any]] = []
        drawn = 0
        while len(specs) < archs_n:
            spec = net.random(rng)
            drawn += 1
            if spec not in specs and obj.fits(spec):
                specs.append(spec)
        archs_file.write_text(json.dumps({"drawn": drawn, "archs": specs}, indent=1))
    specs = json.loads(archs_file.read_text())["archs"]
    inherited_file = work / "inherited.jsonl"
    done = {r["i"] for r in lines(inherited_file)}
    for i, spec in enumerate(specs):
        if i in done or "inherited" not in kinds:
            continue
        cpu0, wall0 = time.process_time(), time.perf_counter()
        size = net.resolution(spec)
        data = obj.data_at(size)
        module = net.extract(spec, obj.comp.space.build(spec, data.in_channels, 10))
        recalibrate_bn(module, bn_images(data, search.search.supernet.bn_images, 0))
        graph = obj.comp.space.trace(module, (1, data.in_channels, size, size), "arch")
        acc = int8_val_accuracy(graph, data, 0)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        append(inherited_file, {"i": i, "acc": acc, "cpu_s": cpu, "wall_s": wall})

    # 3. each architecture trained alone: the proxy, from inherited weights, final recipe
    order = list(enumerate(specs))
    for i, spec in reversed(order) if opts.reverse else order:
        for kind, o, init in (
            ("proxy", obj, None),
            ("finetune", obj, net),
            ("final", final_obj, None),
        ):
            path = work / f"{kind}.jsonl"
            if kind not in kinds or i in {r["i"] for r in lines(path)} or not time_left():
                continue
            acc, cpu = train_alone(o, spec, seed=i, inherit=init)
            append(path, {"i": i, **acc, "cpu_s": cpu})
            print(f"{kind} {i}: {acc} ({cpu:.0f} CPU s)", flush=True)
    if (work / "supernet_cpu.json").is_file():
        write_result(work, specs, opts, sys.argv)
    return 0


def write_result(work: Path, specs: list[dict], opts: Any, argv: list[str]) -> None:
    inh = {r["i"]: r for r in lines(work / "inherited.jsonl")}
    proxy = {r["i"]: r for r in lines(work / "proxy.jsonl")}
    final = {r["i"]: r for r in lines(work / "final.jsonl")}
    tune = {r["i"]: r for r in lines(work / "finetune.jsonl")}
    paired = sorted(set(proxy) & set(tune))
    gain = [tune[i]["val"] - proxy[i]["val"] for i in paired]
    both = sorted(set(inh) & set(proxy) & set(final))
    cpu = json.loads((work / "supernet_cpu.json").read_text())["cpu_s"]
    per_cand = [r["cpu_s"] for r in inh.values()]
    nan = float("nan")
    rows = [
        "| arch | inherited val | proxy val | fine-tuned val | final val | final test |",
        "|---" * 6 + "|",
    ]
    for i in sorted(inh):
        p, t, f = proxy.get(i, {}), tune.get(i, {}), final.get(i, {})
        rows.append(
            f"| {i} | {inh[i]['acc']:.4f} | {p.get('val', nan):.4f} | {t.get('val', nan):.4f} "
            f"| {f.get('val', nan):.4f} | {f.get('test', nan):.4f} |"
        )
    tau_inh = tau_proxy = tau_final_val = ceiling = float("nan")
    val_images = opts.val_images or (200 if opts.quick else FULL.search_train // 10)
    if len(both) >= 3:
        test = [final[i]["test"] for i in both]
        tau_inh = kendall_tau([inh[i]["acc"] for i in both], test)
        tau_proxy = kendall_tau([proxy[i]["val"] for i in both], test)
    elif len(set(inh) & set(final)) >= 3:  # measured without the proxy
        both = sorted(set(inh) & set(final))
        test = [final[i]["test"] for i in both]
        tau_inh = kendall_tau([inh[i]["acc"] for i in both], test)
    if len(both) >= 3:
        tau_final_val = kendall_tau([final[i]["val"] for i in both], test)
        ceiling = noise_ceiling(test, val_images)
    prov = provenance()
    text = [
        "# Supernet ranking quality, Fashion-MNIST m4-tight",
        "",
        f"- Command: `python {' '.join(['benchmarks/supernet_ranking.py', *argv[1:]])}`",
        f"- Commit {prov['commit']}, {prov['date']}; {prov['machine']}; "
        f"{torch.get_num_threads()} torch threads",
        f"- Supernet: {opts.epochs if not opts.quick else 1} epochs on the search data, "
        f"{cpu / 3600:.2f} CPU-h",
        f"- Scoring one candidate with inherited weights: median "
        f"{np.median(per_cand):.2f} CPU s ({60 / max(np.median(per_cand), 1e-9):.0f} "
        "per CPU-minute)",
        f"- Architectures with the accuracies compared: {len(both)} of {len(specs)}; "
        f"inherited and proxy accuracies on {val_images:,} validation images",
        "",
        f"**Kendall tau vs final int8 test accuracy: inherited {tau_inh:.3f}, "
        f"3-epoch proxy {tau_proxy:.3f}** (target: inherited >= 0.6 and above the proxy).",
        "",
        f"What the measurement allows: a score that knew each architecture's final test "
        f"accuracy exactly, measured on {val_images:,} validation images as these are, "
        f"would reach tau {ceiling:.3f} (median of 2,000 simulated draws, `noise_ceiling`). "
        f"The final models' own validation accuracy ({FULL.final_train // 10:,} images) "
        f"ranks them at tau "
        f"{tau_final_val:.3f}.",
        "",
        f"Finalist start: the search recipe (3 epochs) from the inherited weights vs from "
        f"scratch, int8 validation accuracy, mean difference "
        f"{np.mean(gain) if gain else nan:+.4f} over {len(gain)} architectures "
        f"(inherited better on {sum(g > 0 for g in gain)}).",
        "",
        *rows,
        "",
    ]
    out = opts.result if not opts.quick else work / "result.md"
    out.write_text("\n".join(text))
    print("\n".join(text[:12]))


if __name__ == "__main__":
    raise SystemExit(main())
