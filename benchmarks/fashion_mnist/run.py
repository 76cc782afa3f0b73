"""Fashion-MNIST under two microcontroller budgets: the search against random search and
against hand-designed networks scaled to the same budget.

    python benchmarks/fashion_mnist/run.py           # the table in results/RESULTS.md
    python benchmarks/fashion_mnist/run.py --quick   # the same pipeline in a few minutes
    python benchmarks/fashion_mnist/remeasure_arena.py  # m4-tight arenas of stored models

Budgets:

- ``m4-tight``: the Cortex-M4 profile's latency table with at most 32 KiB of TensorFlow Lite
  Micro arena and 64 KiB of model (``cortex_m4`` with the memory overridden on the command
  line, runtime allowances zero). The arena is the smallest in which the TFLite Micro
  interpreter of the ``tflite-micro`` wheel (64-bit pointers, reference kernels) allocates
  and runs the model, found by bisection: the profile's ``pointer_bytes`` and ``kernels``
  are set to match it, so the static check before training estimates the same quantity,
  and a model only counts when its *measured* arena is within 32 KiB. On the Cortex-M4
  (32-bit pointers) the same model's arena is smaller.
  The search space is the MobileNet-like one; every model is scored in the TFLite Micro
  interpreter (``backend=tflm``).
- ``uno``: the ``arduino_uno`` profile (2 KiB SRAM, 32 KiB flash, runtime allowances
  included). The search space is Bonsai (no CNN of the MobileNet-like space fits); models
  are scored by the int8 reference kernels (``backend=estimate``, bit-exact with TFLM for
  layer graphs, and the only int8 runtime of a Bonsai tree besides ``c_sim``).

Methods, per budget and seed (every run is ``python -m nas search``, one process each, so
each step can be rerun by hand from the ``command.txt`` next to its output):

- ``search``: the TPE sampler, ``--trials`` candidates trained with the search recipe,
  accuracy first (``search.objectives=[acc_int8]``: the question is the most accurate
  model that fits, so latency is reported but not traded against accuracy). Candidates
  that do not fit are rejected before training, at no cost, and do not count
  (``search.count_infeasible=false``); on m4-tight so are those under a compute floor
  (``search.min_macs``);
- ``random``: Optuna's random sampler, same space, budget, floor, objective, pruner and
  seeds;
- ``dscnn``, ``mobilenet_v1``, ``cnn``, ``mlp``: the ``reference`` space's families, each at
  the width and resolution that fits the budget with the most MACs
  (`nas_space_reference.ReferenceSearchSpace.scaled`).

The m4-tight space (``BUDGETS``) is the MobileNet-like one narrowed the way MCUNet (Lin et
al., NeurIPS 2020) narrows its space: by the compute of the architectures that fit, not by
any accuracy. Of 2,000 random architectures of the wider space (14-28 pixels, any stride,
widths 8-48, skippable stages) a third fit, with a median of 0.48 M MACs, a fifth of the
DS-CNN reference's 2.24 M. In the narrowed space 11% fit, with a median of 1.74 M
(``python benchmarks/feasible_macs.py``; the README gives the overrides that measure the
wider space).

Each search's finalists (its ``finalists`` trials with the highest validation int8
accuracy among those that fit) and every reference are then trained again from scratch
with one final recipe (same data, epochs and optimizer for all) and scored on the test
set. With more than one finalist (``--quick`` keeps 2), a search reports the one with
the highest validation accuracy after that training. No choice ever looks at the test
set. CPU time is the user+system time of the processes
(``os.wait4``); a search's CPU time includes its finalists' retraining beyond the one
final training every method gets.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from plots import scatter_svg  # noqa: E402

from nas.report import trained_mask  # noqa: E402

ARENA_LIMIT, MODEL_LIMIT = 32 * 1024, 64 * 1024
FAMILIES = ("dscnn", "mobilenet_v1", "cnn", "mlp")
PLOTS = ("memory", "latency")
LABELS = {
    "search": "search (TPE)",
    "random": "random search",
    "dscnn": "DS-CNN (MLPerf Tiny style)",
    "mobilenet_v1": "MobileNetV1-style",
    "cnn": "small CNN",
    "mlp": "MLP (one hidden layer)",
}
BUDGETS: dict[str, dict[str, Any]] = {
    "m4-tight": {
        "profile": "cortex_m4",
        "memory": {
            "name": "m4_tight",
            "sram_bytes": ARENA_LIMIT,
            "flash_bytes": MODEL_LIMIT,
            "runtime_ram_bytes": 0,
            "runtime_flash_bytes": 0,
            # The arena as the TFLite Micro interpreter measures it here: 64-bit pointers
            # and reference kernels, as in the `tflite-micro` wheel (see BUDGET_NOTES).
            "pointer_bytes": 8,
            "kernels": "reference",
        },
        # The space and the compute floor follow from the MACs of the architectures that
        # fit (benchmarks/feasible_macs.py, static costs only; see the module docstring).
        "space": [
            "search_space=mobilenet",
            "search_space.resolutions=[20,28]",
            "search_space.stem_channels=[16,24,32]",
            "search_space.stem_strides=[2]",
            "search_space.widths=[24,32,40,48]",
            "search_space.depths=[1,2,3]",
            "search_space.expansions=[1,2,4]",
            "search_space.strides=[1]",
        ],
        "search": ["search.min_macs=1500000"],
        "backend": "tflm",
        "memory_plot": ("arena_bytes", "arena bytes (measured)", ARENA_LIMIT),
    },
    "uno": {
        "profile": "arduino_uno",
        "memory": {},
        "space": ["search_space=bonsai", "search_space.resolutions=[8,14,20,28]"],
        "search": [],
        "backend": "estimate",
        "memory_plot": ("sram_bytes", "SRAM bytes (with runtime)", 2048),
    },
}


def hw_args(budget: str) -> list[str]:
    """The budget as command-line overrides of its profile."""
    b = BUDGETS[budget]
    return [f"+hw={b['profile']}", *(f"hw.{k}={v}" for k, v in b["memory"].items())]


@dataclass
class Recipe:
    """How the runs train: the search's short recipe and the final one shared by all."""

    seeds: list[int]
    trials: dict[str, int]  # per budget, the same for the search and random search
    search_epochs: int
    search_train: int  # images drawn from the 60,000 (10% of them validate)
    final_epochs: int
    final_train: int  # 0: all 60,000 (54,000 train, 6,000 validate)
    batch_size: int = 128
    lr: float = 0.01
    search_test: int = 1000  # the search never looks at test accuracy: keep it cheap
    finalists: int = 3  # per search, retrained with the final recipe; best validation wins
    budgets: list[str] = field(default_factory=lambda: list(BUDGETS))

    def train_args(self, final: bool) -> list[str]:
        return [
            "dataset=fashion_mnist",
            f"dataset.train_subset={self.final_train if final else self.search_train}",
            f"dataset.test_subset={0 if final else self.search_test}",
            f"search.epochs={self.final_epochs if final else self.search_epochs}",
            f"search.batch_size={self.batch_size}",
            f"search.lr={self.lr}",
        ]


FULL = Recipe(
    seeds=[0, 1, 2],
    trials={"m4-tight": 20, "uno": 60},
    search_epochs=3,
    search_train=10000,
    final_epochs=8,
    final_train=30000,
    finalists=1,
)
QUICK = Recipe(
    seeds=[0],
    trials={"m4-tight": 8, "uno": 3},
    search_epochs=1,
    search_train=2000,
    final_epochs=1,
    final_train=2000,
    search_test=500,
    finalists=2,
)


@dataclass
class Job:
    budget: str
    method: str
    seed: int
    kind: str  # "search" or "final"
    args: list[str]
    run_dir: Path
    rc: int | None = None
    cpu_s: float = 0.0
    wall_s: float = 0.0
    error: str = ""


def hydra_dict(spec: dict[str, Any]) -> str:
    """An architecture as a Hydra override value: ``{key:value,...}``."""
    return "{" + ",".join(f"{k}:{json.dumps(v)}" for k, v in spec.items()) + "}"


def run_job(job: Job, threads: int) -> Job:
    """Run one ``python -m nas search``; its output goes to ``log.txt`` in its run dir."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "nas", "search", *job.args, f"hydra.run.dir={job.run_dir}"]
    (job.run_dir / "command.txt").write_text(" ".join(cmd[1:]) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    start = datetime.datetime.now()
    with open(job.run_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = job.rc = os.waitstatus_to_exitcode(status)
    job.wall_s = (datetime.datetime.now() - start).total_seconds()
    job.cpu_s = usage.ru_utime + usage.ru_stime
    if job.rc:
        lines = (job.run_dir / "log.txt").read_text().strip().splitlines() or ["(no output)"]
        job.error = f"exit {job.rc}: {lines[-1][:300]}"
    print(
        f"[{datetime.datetime.now():%H:%M:%S}] {job.budget} {job.method} seed {job.seed} "
        f"{job.kind}: {'ok' if not job.rc else job.error} ({job.wall_s:.0f} s)",
        flush=True,
    )
    return job


def arena_fits(measured: Any) -> Any:
    """Whether a measured arena (a number or a column; NaN where nothing was measured)
    is within the m4-tight budget."""
    return np.logical_not(measured > ARENA_LIMIT)


def trials_of(run_dir: Path) -> pd.DataFrame:
    """A run's ``trials.csv`` (empty when the run wrote none)."""
    csv = run_dir / "trials.csv"
    return pd.read_csv(csv) if csv.is_file() else pd.DataFrame()


def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """A run's completed trials that fit (by the measured arena too, where TFLM measured
    it), highest validation int8 accuracy first; ties go to the lower latency."""
    if df.empty:
        return df
    ok = df[trained_mask(df)]
    if "arena_bytes_measured" in ok:
        ok = ok[arena_fits(ok["arena_bytes_measured"])]
    return ok.sort_values(["acc_int8", "latency_ms"], ascending=[False, True])


def finalists(run_dir: Path, k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct architectures of a search, to train again."""
    archs: list[dict[str, Any]] = []
    for number in ranked(trials_of(run_dir))["number"] if k else []:
        info = json.loads((run_dir / "trials" / f"{int(number):05d}" / "arch.json").read_text())
        if info["arch"] not in archs:
            archs.append(info["arch"])
        if len(archs) == k:
            break
    return archs


def references(budget: str, runs: Path) -> dict[str, dict[str, Any] | None]:
    """Each family scaled to the budget (static cost only, no training)."""
    from nas_space_reference import ReferenceSearchSpace

    from nas.hardware import load_profile

    b = BUDGETS[budget]
    hw = dataclasses.replace(load_profile(b["profile"]), **b["memory"])
    space = ReferenceSearchSpace()
    out: dict[str, dict[str, Any] | None] = {}
    for family in FAMILIES:
        found = space.scaled(family, hw, in_channels=1, num_classes=10)
        out[family] = None if found is None else found[0]
    (runs / f"references_{budget}.json").write_text(json.dumps(out, indent=1))
    return out


def final_job(
    recipe: Recipe,
    runs: Path,
    budget: str,
    method: str,
    seed: int,
    space: list[str],
    specs: list[dict[str, Any]],
) -> Job:
    """Train ``specs`` (a reference, or a search's finalists) with the final recipe."""
    b = BUDGETS[budget]
    args = [
        *hw_args(budget),
        *space,
        f"backend={b['backend']}",
        *recipe.train_args(final=True),
        f"search.seed={seed}",
        f"search.n_trials={len(specs)}",
        "pruner.enabled=false",
        f"search.enqueue=[{','.join(map(hydra_dict, specs))}]",
    ]
    return Job(budget, method, seed, "final", args, runs / budget / f"{method}-final-s{seed}")


def search_job(recipe: Recipe, runs: Path, budget: str, method: str, seed: int) -> Job:
    b = BUDGETS[budget]
    sampler = (
        ["sampler=tpe", "sampler.n_startup_trials=8"] if method == "search" else ["sampler=random"]
    )
    args = [
        *hw_args(budget),
        *b["space"],
        *b["search"],
        f"backend={b['backend']}",
        *sampler,
        *recipe.train_args(final=False),
        f"search.seed={seed}",
        f"search.n_trials={recipe.trials[budget]}",
        "search.count_infeasible=false",
        "search.objectives=[acc_int8]",
        "pruner.n_warmup_epochs=1",
    ]
    return Job(budget, method, seed, "search", args, runs / budget / f"{method}-search-s{seed}")


def record(done: list[Job], job: Job, runs: Path) -> None:
    """Keep a finished job, also in ``runs/jobs.jsonl`` (``--report-only`` reads it)."""
    done.append(job)
    with open(runs / "jobs.jsonl", "a") as f:
        f.write(json.dumps({**dataclasses.asdict(job), "run_dir": str(job.run_dir)}) + "\n")


def load_jobs(runs: Path) -> list[Job]:
    lines = (runs / "jobs.jsonl").read_text().splitlines()
    return [Job(**{**d, "run_dir": Path(d["run_dir"])}) for d in map(json.loads, lines)]


def no_final(budget: str, method: str, seed: int, run_dir: Path, why: str) -> Job:
    """The final model that could not be trained, and why."""
    return Job(budget, method, seed, "final", [], run_dir, rc=1, error=why)


def run_all(recipe: Recipe, runs: Path, jobs: int) -> list[Job]:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    done: list[Job] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: dict[Future, Job] = {}

        def submit(job: Job) -> None:
            pending[pool.submit(run_job, job, threads)] = job

        for budget in recipe.budgets:
            for seed in recipe.seeds:
                for method in ("search", "random"):
                    submit(search_job(recipe, runs, budget, method, seed))
        for budget in recipe.budgets:
            ref_space = ["search_space=reference"]
            for family, spec in references(budget, runs).items():
                for seed in recipe.seeds:
                    if spec is None:
                        why = "no width or resolution fits the budget"
                        record(done, no_final(budget, family, seed, runs, why), runs)
                    else:
                        job = final_job(recipe, runs, budget, family, seed, ref_space, [spec])
                        submit(job)
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                record(done, job, runs)
                if job.kind != "search" or job.rc:
                    continue
                archs = finalists(job.run_dir, recipe.finalists)
                if not archs:
                    why = "the search found no model that fits"
                    record(
                        done, no_final(job.budget, job.method, job.seed, job.run_dir, why), runs
                    )
                    continue
                space = BUDGETS[job.budget]["space"]
                submit(final_job(recipe, runs, job.budget, job.method, job.seed, space, archs))
    return done


def collect(done: list[Job], out: Path) -> pd.DataFrame:
    """One row per final model, its files copied to ``out/models``. Where a final job
    trained several finalists, the row is the one with the highest validation accuracy,
    and the retraining of the others counts as search CPU time."""
    cpu = {(j.budget, j.method, j.seed): j.cpu_s for j in done if j.kind == "search"}
    rows = []
    for job in sorted(
        (j for j in done if j.kind == "final"), key=lambda j: (j.budget, j.method, j.seed)
    ):
        trials = trials_of(job.run_dir) if not job.rc else pd.DataFrame()
        share = job.cpu_s / max(len(trials), 1)
        row: dict[str, Any] = {
            "budget": job.budget,
            "method": job.method,
            "seed": job.seed,
            "search_cpu_s": cpu.get((job.budget, job.method, job.seed), 0.0) + job.cpu_s - share,
            "final_cpu_s": share,
            "finalists": len(trials),
            "error": job.error,
        }
        if not trials.empty:
            best = ranked(trials)
            t = best.iloc[0] if not best.empty else trials.iloc[0]
            row["final_trial"] = int(t["number"])
            if t["state"] != "COMPLETE":
                row["error"] = f"final training {t['state']}: {t.get('reason', '')}"
            else:
                arena = t.get("arena_bytes_measured", float("nan"))
                row.update(
                    acc_int8_test=t["acc_int8_test"],
                    acc_int8_val=t["acc_int8"],
                    acc_float_test=t.get("acc_float_test"),
                    arena_bytes=int(arena if arena == arena else t["arena_bytes"]),
                    arena_measured=bool(arena == arena),
                    fits=bool(t["feasible"]) and bool(arena_fits(arena)),
                    model_bytes=int(t["model_bytes"]),
                    sram_bytes=int(t["sram_bytes"]),
                    flash_bytes=int(t["flash_bytes"]),
                    macs=int(t["macs"]),
                    latency_ms=float(t["latency_ms"]),
                )
                src = job.run_dir / "trials" / f"{int(t['number']):05d}"
                dest = out / "models" / job.budget / job.method / f"seed{job.seed}"
                dest.mkdir(parents=True, exist_ok=True)
                for name in ("arch.json", "model_int8.npz", "model.tflite"):
                    if (src / name).is_file():
                        shutil.copy(src / name, dest / name)
                row["arch"] = json.dumps(json.loads((src / "arch.json").read_text())["arch"])
        rows.append(row)
    return pd.DataFrame(rows)


def finalist_lines(done: list[Job]) -> list[str]:
    """Each search's finalists: rank and validation accuracy in the search, then validation
    and test accuracy after the final recipe; the one with the best validation counts."""
    lines = [
        "## Finalists",
        "",
        "Each search's best candidates by validation accuracy, trained again with the final "
        "recipe. The one with the highest validation accuracy after it (**bold**) is the "
        "search's model; the others' test accuracy is shown, not used.",
        "",
        "| budget | method | seed | search rank | search val | final val | final test | MACs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    searched = [j for j in done if j.kind == "final" and j.method in ("search", "random")]
    for job in sorted(searched, key=lambda j: (j.budget, j.method, j.seed)):
        if job.rc:
            continue
        search = ranked(trials_of(job.run_dir.parent / f"{job.method}-search-s{job.seed}"))
        arch_cols = [c for c in search.columns if c.startswith("arch_")]
        keys = [tuple(r) for r in search[arch_cols].itertuples(index=False)]
        final = trials_of(job.run_dir)
        best = ranked(final)
        chosen = int(best.iloc[0]["number"]) if not best.empty else -1
        for _, t in final.sort_values("number").iterrows():
            key = tuple(t[c] for c in arch_cols)
            rank = keys.index(key) if key in keys else None
            cells = [
                "-" if rank is None else str(rank + 1),
                "-" if rank is None else f"{search['acc_int8'].iloc[rank]:.4f}",
                f"{t['acc_int8']:.4f}",
                f"{t['acc_int8_test']:.4f}",
                fmt_int(t["macs"]),
            ]
            if int(t["number"]) == chosen:
                cells = [f"**{c}**" for c in cells]
            lines.append(f"| {job.budget} | {job.method} | {job.seed} | {' | '.join(cells)} |")
    return [*lines, ""]


def fmt_int(v: float) -> str:
    return "-" if v != v else f"{v:,.0f}"


def table(df: pd.DataFrame, budget: str) -> list[str]:
    lines = [
        "| method | test acc int8, mean ± sd (per seed) | arena B | model B | MACs | "
        "latency ms (est.) | fits | search CPU-h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    part = df[df["budget"] == budget]
    for method in LABELS:
        rows = part[part["method"] == method]
        if rows.empty:
            continue
        ok = rows[rows["acc_int8_test"].notna()] if "acc_int8_test" in rows else rows.iloc[:0]
        accs = list(ok["acc_int8_test"]) if not ok.empty else []
        if accs:
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            each = ", ".join(f"{a:.4f}" for a in accs)
            acc = f"{statistics.mean(accs):.4f} ± {sd:.4f} ({each})"
        else:
            acc = "failed: " + "; ".join(sorted(set(rows["error"])))
        mean = ok.mean(numeric_only=True) if not ok.empty else pd.Series(dtype=float)
        searched = method in ("search", "random")
        cpu_h = f"{rows['search_cpu_s'].mean() / 3600:.2f}" if searched else "-"
        cells = [
            fmt_int(mean.get(c, float("nan"))) for c in ("arena_bytes", "model_bytes", "macs")
        ]
        latency = mean.get("latency_ms", float("nan"))
        fits = ("yes" if ok["fits"].all() else "NO") if not ok.empty else "-"
        cells += [f"{latency:.2f}", fits, cpu_h]
        lines.append(f"| {LABELS[method]} | {acc} | {' | '.join(cells)} |")
    return lines


def provenance() -> dict[str, str]:
    """Date, commit and machine of a run, taken when it starts."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()

    dirty = " (with uncommitted changes)" if git("status", "--porcelain") else ""
    return {
        "date": datetime.date.today().isoformat(),
        "commit": (git("rev-parse", "--short", "HEAD") or "unknown") + dirty,
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def finalist_rule(k: int) -> str:
    """How a search's model is chosen, in a sentence."""
    if k == 1:
        return (
            "Each search's candidate with the highest validation accuracy is its model, "
            "trained with the final recipe."
        )
    return (
        f"Each search's top {k} by validation accuracy are trained with the final recipe, "
        "and the one with the highest validation accuracy after it is the search's model "
        "(its search CPU time includes the extra retraining)."
    )


def plots(df: pd.DataFrame, budget: str, out: Path, kinds: tuple[str, ...] = PLOTS) -> list[str]:
    """Write the budget's Pareto plots (test accuracy vs memory, vs latency) to ``out``;
    return their Markdown image lines."""
    part = df[(df["budget"] == budget)]
    part = part[part["acc_int8_test"].notna()] if "acc_int8_test" in part else part[:0]
    part = part.sort_values("method", key=lambda m: m.map(list(LABELS).index))
    axes = {
        "memory": BUDGETS[budget]["memory_plot"],
        "latency": ("latency_ms", "latency ms (estimated)", None),
    }
    lines = []
    for kind in kinds:
        col, label, limit = axes[kind]
        points = [
            (float(r[col]), float(r["acc_int8_test"]), LABELS[r["method"]])
            for _, r in part.iterrows()
        ]
        name = f"pareto_{budget}_{kind}.svg"
        title = f"{budget}: test accuracy vs {label}"
        (out / name).write_text(scatter_svg(points, label, "test accuracy (int8)", title, limit))
        lines.append(f"![{title}]({name})")
    return lines


def write_results(df: pd.DataFrame, out: Path, run: dict[str, Any], finalists: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("pareto_*.svg"):
        stale.unlink()
    df.to_csv(out / "results.csv", index=False)
    recipe, wall_s = Recipe(**run["recipe"]), run["wall_s"]
    cpu = df.drop_duplicates(["budget", "method", "seed"])
    lines = [
        "# Fashion-MNIST under microcontroller budgets: search vs random vs hand-designed",
        "",
        f"- Command: `{' '.join(['python benchmarks/fashion_mnist/run.py', *run['argv']])}`",
        f"- Date: {run['date']}; commit {run['commit']}",
        f"- Machine: {run['machine']}",
        f"- Wall clock {wall_s / 60:.1f} min; CPU time of all searches "
        f"{cpu['search_cpu_s'].sum() / 3600:.2f} h, of all final trainings "
        f"{cpu['final_cpu_s'].sum() / 3600:.2f} h",
        f"- Seeds {recipe.seeds}. Search: trained candidates per run "
        f"{', '.join(f'{b} {n}' for b, n in recipe.trials.items() if b in recipe.budgets)} "
        "(candidates that do not fit are rejected before training and not counted), "
        f"{recipe.search_epochs} epochs on {recipe.search_train} training images (10% of "
        f"them validate), batch {recipe.batch_size}, Adam lr {recipe.lr} one-cycle. Final "
        f"recipe for every model: {recipe.final_epochs} epochs on "
        f"{recipe.final_train or 60000} images (10% validate), same optimizer; test "
        f"accuracy on all 10,000 test images, int8. {finalist_rule(recipe.finalists)}",
        "",
    ]
    for budget in recipe.budgets:
        lines += [f"## {budget}", "", *BUDGET_NOTES[budget], "", *table(df, budget), ""]
        lines += [*plots(df, budget, out), ""]
    lines += [
        *finalists,
        "## Architectures",
        "",
        "Every final model's choices, int8 weights (`model_int8.npz`) and, on m4-tight, the "
        "TFLite flatbuffer (`model.tflite`) are in `models/<budget>/<method>/seed<k>/`; "
        "`results.csv` has one row per model.",
        "",
        "| budget | method | seed | architecture |",
        "|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        arch = r.get("arch")
        text = arch if isinstance(arch, str) else r.get("error", "")
        lines.append(f"| {r['budget']} | {r['method']} | {r['seed']} | `{text}` |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


BUDGET_NOTES = {
    "m4-tight": [
        "Cortex-M4 (STM32L4R5, CMSIS-NN latency table), TFLite Micro arena <= 32 KiB and "
        "model <= 64 KiB. The arena is the smallest in which the interpreter of the "
        "`tflite-micro` wheel on this host (64-bit pointers, reference kernels) allocates and "
        "runs the model, found by bisection to the byte; that is more than the same model "
        "needs on the 32-bit Cortex-M4: a conservative budget. Search space: "
        "MobileNet-like at 20 or 28 pixels, a stride-2 stem and no later downsampling, "
        "stage widths 24-48, 1-3 blocks per stage, expansion 1, 2 or 4; search and random "
        "search reject candidates under 1.5 M MACs before training (`search.min_macs`). "
        "The space and the floor were chosen from the MACs of the architectures that fit "
        "(`benchmarks/feasible_macs.py`, static costs, no training; see the README). All "
        "models scored in the TFLite Micro interpreter; `fits` says whether every seed's "
        "measured arena and model are within the budget.",
    ],
    "uno": [
        "Arduino Uno (ATmega328P): 2 KiB SRAM and 32 KiB flash including the runtime "
        "allowances (256 B RAM, 2,894 B flash). Search space: Bonsai (8, 14, 20 or 28 "
        "pixels). Scored by the int8 reference kernels; arena is the static plan.",
    ],
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 8 (m4-tight) or 3 (uno) trials, 1 epoch, 2,000 images",
    )
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    p.add_argument("--trials", type=int, help="override the trials per search")
    p.add_argument("--budgets", nargs="+", choices=list(BUDGETS), help="run only these")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default: results/, or outputs/fashion_mnist_quick/ with --quick)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the results from the runs folder of an earlier call",
    )
    p.add_argument(
        "--runs",
        type=Path,
        help="folder for the runs' studies and logs "
        "(default: outputs/fashion_mnist_benchmark[_quick]/)",
    )
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    recipe = dataclasses.replace(base)
    if args.seeds:
        recipe.seeds = args.seeds
    if args.trials:
        recipe.trials = dict.fromkeys(BUDGETS, args.trials)
    if args.budgets:
        recipe.budgets = args.budgets
    suffix = "_quick" if args.quick else ""
    out = args.out or (ROOT / f"outputs/fashion_mnist{suffix}" if args.quick else HERE / "results")
    runs = args.runs or ROOT / f"outputs/fashion_mnist_benchmark{suffix}"
    if args.report_only:  # the tables and plots again, from the runs of an earlier call
        run = json.loads((runs / "run.json").read_text())
        done = load_jobs(runs)
    else:
        if runs.exists():
            shutil.rmtree(runs)
        runs.mkdir(parents=True)
        start = datetime.datetime.now()
        run = {"argv": argv, "recipe": dataclasses.asdict(recipe), **provenance(), "wall_s": 0}
        (runs / "run.json").write_text(json.dumps(run, indent=1))
        done = run_all(recipe, runs, max(1, args.jobs))
        run["wall_s"] = (datetime.datetime.now() - start).total_seconds()
        (runs / "run.json").write_text(json.dumps(run, indent=1))
    if (out / "models").exists():
        shutil.rmtree(out / "models")
    df = collect(done, out)
    write_results(df, out, run, finalist_lines(done))
    print(f"results: {out / 'RESULTS.md'}")
    failed = [j for j in done if j.rc]
    for j in failed:
        print(f"failed: {j.budget} {j.method} seed {j.seed} {j.kind}: {j.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
