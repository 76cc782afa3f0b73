"""Fashion-MNIST under three microcontroller budgets: a search across model families against
random search in the same space and against hand-designed networks, every model
finalized with the same recipe.

    python benchmarks/fashion_mnist/run.py --budgets uno --seeds 0   # one part
    python benchmarks/fashion_mnist/run.py --report-only             # merge: RESULTS.md
    python benchmarks/fashion_mnist/run.py --quick                   # the pipeline, minutes

The benchmark runs in parts (``--budgets``, ``--seeds``, ``--methods`` select one), each
resumable: a part skips every job whose result is already in the runs folder and starts
again any job it finds half done. ``--report-only`` merges whatever is there into
``results/RESULTS.md``, keeping the rows of the committed ``results/results.csv`` that
the runs folder has no model for (parts run on other machines; `merge`). A part resumes
only on the machine it started on. On a 2-core machine (``--jobs 2``) one seed of the Uno
budget takes under an hour; one seed of m4-tight takes hours (each finalize 5 to 40
CPU-minutes, a teacher up to 50 for 28 px), so its parts split the methods.

Budgets (`BUDGETS`):

- ``m4-tight``: the Cortex-M4 profile's latency table with at most 32 KiB of TensorFlow Lite
  Micro arena and 64 KiB of model (``cortex_m4`` with the memory overridden, runtime
  allowances zero). The arena is the smallest in which the TFLite Micro interpreter of
  the ``tflite-micro`` wheel (64-bit pointers, reference kernels) allocates and runs the
  model, found by bisection; the profile's ``pointer_bytes`` and ``kernels`` match it, so
  the static check estimates the same quantity, and a model only counts when its
  *measured* arena fits. Candidates under 1.5 M MACs are rejected before training
  (``search.min_macs``; see `benchmarks/feasible_macs.py`).
- ``m4-16k``: the same with at most 16 KiB of arena and 64 KiB of model, no compute floor.
- ``uno``: the ``arduino_uno`` profile (2 KiB SRAM, 32 KiB flash, runtime allowances
  included), scored by the int8 reference kernels (``backend=estimate``).

Every method searches or is a point of one space, ``search_space=families`` (MobileNet-
like, DS-CNN, plain CNN, MLP, MobileNetV1 and Bonsai; the MobileNet-like family narrowed
for the M4 budgets as MCUNet narrows its space, by the compute of what fits):

- ``search``: TPE, ``trials`` trained candidates per run (those that do not fit are
  rejected before training and do not count), accuracy first
  (``search.objectives=[acc_int8]``);
- ``random``: Optuna's random sampler, the same space, budget, trials and seeds;
- ``supernet`` (m4-tight only; issue 19): ``search.strategy=supernet`` in the MobileNet-
  like space narrowed for the budget, one supernet per seed (kept in
  ``<runs>/m4-tight/supernets/`` so a killed part resumes its training), 1,000 feasible
  candidates scored with inherited weights by NSGA-II on accuracy and latency (on
  accuracy alone it converged and repeated itself: 11,665 repeats for 737 candidates in
  28 minutes), its finalists spread along that front; its CPU time includes the
  supernet's;
- ``search_long`` (m4-tight only): the ``search`` method given the ``supernet`` run's CPU
  time of the same seed as its time limit, for the comparison at equal CPU time (it runs
  after the supernet runs, in a second wave);
- ``dscnn``, ``mobilenet_v1``, ``cnn``, ``mlp``: the hand designs (the ``reference``
  space's families), each at the width and resolution that fits the budget with the most
  MACs (`nas_space_reference.ReferenceSearchSpace.scaled`), enqueued as their point of the
  families space and trained once with the search recipe.

Each run is then finalized with one recipe, ``python -m nas finalize RUN_DIR`` (the
searches' top ``finalists``, or with ``--screen N`` the best ``finalists`` of N
candidates after ``screen_epochs`` each on the same images without the teacher: their top
N, or with ``--screen-pick front`` N of their top 2N front after front of search accuracy
and MACs; a reference's one network): the whole training split less
validation (54,000 images), ``augment`` (none: on the Uno-sized models crops and mirrors
cost points, README "Finalize"), ``final_epochs`` epochs of which the
last ``distill_epochs`` distil from the cached teacher (a plain CNN, 64 and 128 channels,
trained once per resolution). The model of a run is its finalist with the highest
validation accuracy; test accuracy is on all 10,000 test images, int8. No choice looks
at the test set. For the first seed each run is also finalized without the teacher
(``--teacher none``, the same epochs) to measure what the teacher adds, in a last wave
once every run of the part has its model. CPU time is the
user+system time of the processes (``os.wait4``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from plots import scatter_svg  # noqa: E402

from nas.finalize import SCREEN_PICKS  # noqa: E402
from nas.report import trained_mask  # noqa: E402

KIB = 1024
REFERENCES = ("dscnn", "mobilenet_v1", "cnn", "mlp")
#: Issue 19's comparison, on the budgets whose MobileNet-like space the supernet covers:
#: a supernet search, and TPE in the families space given the same CPU time.
SUPERNET_METHODS = ("supernet", "search_long")
SUPERNET_BUDGETS = ("m4-tight",)
METHODS = ("search", "random", *SUPERNET_METHODS, *REFERENCES)
SEARCHES = ("search", "random", *SUPERNET_METHODS)
PLOTS = ("memory", "latency")
LABELS = {
    "search": "search (TPE, families)",
    "random": "random search (families)",
    "supernet": "supernet search (MobileNet-like)",
    "search_long": "search (TPE, families) for the supernet's CPU time",
    "dscnn": "DS-CNN (MLPerf Tiny style)",
    "mobilenet_v1": "MobileNetV1-style",
    "cnn": "small CNN",
    "mlp": "MLP (one hidden layer)",
}
#: The MobileNet-like space narrowed for the M4 budgets (by the MACs of what fits,
#: `benchmarks/feasible_macs.py`), as options of that space.
MOBILENET_M4 = {
    "resolutions": "[20,28]",
    "stem_channels": "[16,24,32]",
    "stem_strides": "[2]",
    "widths": "[24,32,40,48]",
    "depths": "[1,2,3]",
    "expansions": "[1,2,4]",
    "strides": "[1]",
}
#: The same as ``search_space=mobilenet`` overrides (the supernet benchmarks use them).
MOBILENET_M4_SPACE = [
    "search_space=mobilenet",
    *(f"search_space.{k}={v}" for k, v in MOBILENET_M4.items()),
]
M4_RESOLUTIONS = [12, 16, 20, 28]
M4_FAMILIES = [
    "search_space=families",
    *(f"search_space.mobilenet.{k}={v}" for k, v in MOBILENET_M4.items() if k != "resolutions"),
]


def m4(name: str, arena: int, floor: list[str]) -> dict[str, Any]:
    return {
        "resolutions": M4_RESOLUTIONS,
        "profile": "cortex_m4",
        "memory": {
            "name": name,
            "sram_bytes": arena,
            "flash_bytes": 64 * KIB,
            "runtime_ram_bytes": 0,
            "runtime_flash_bytes": 0,
            # The arena as the TFLite Micro interpreter measures it here: 64-bit pointers
            # and reference kernels, as in the `tflite-micro` wheel.
            "pointer_bytes": 8,
            "kernels": "reference",
        },
        "space": M4_FAMILIES,
        "search": floor,
        "backend": "tflm",
        "arena_limit": arena,
        "memory_plot": ("arena_bytes", "arena bytes (measured)", arena),
    }


BUDGETS: dict[str, dict[str, Any]] = {
    "m4-tight": m4("m4_tight", 32 * KIB, ["search.min_macs=1500000"]),
    "uno": {
        "resolutions": [8, 12, 14, 16, 20, 28],
        "profile": "arduino_uno",
        "memory": {},
        "space": ["search_space=families"],
        "search": [],
        "backend": "estimate",
        "arena_limit": None,
        "memory_plot": ("sram_bytes", "SRAM bytes (with runtime)", 2 * KIB),
    },
    "m4-16k": m4("m4_16k", 16 * KIB, []),
}


def hw_args(budget: str, budgets: dict[str, dict[str, Any]] = BUDGETS) -> list[str]:
    """The budget as command-line overrides of its profile (``budgets``: where it is
    defined; another benchmark's, `benchmarks/kws/run.py`)."""
    b = budgets[budget]
    return [f"+hw={b['profile']}", *(f"hw.{k}={v}" for k, v in b["memory"].items())]


def space_args(budget: str) -> list[str]:
    """The budget's families space as command-line overrides."""
    b = BUDGETS[budget]
    sizes = ",".join(map(str, b["resolutions"]))
    return [*b["space"], f"search_space.resolutions=[{sizes}]"]


#: The share of the training images that validates: the final recipe's, and the search's
#: unless a variant sets its own (``--val-fraction``).
VAL_FRACTION = 0.1


#: The search recipe's settings a results row records: column (the `Recipe` field of the
#: same name), the ``nas search`` option that sets it, its unit. `Recipe.search_args`
#: writes them, `search_options` reads them back, `other_search_recipes` reports them.
SEARCH_OPTIONS = {
    "search_train": ("dataset.train_subset", "images"),
    "search_epochs": ("search.epochs", "epochs"),
}


@dataclass
class Recipe:
    """How the runs train: the search's short recipe and the final one shared by all."""

    seeds: list[int]
    trials: dict[str, int]  # per budget, the same for the search and random search
    search_epochs: int
    search_train: int  # images drawn from the 60,000 (search_val_fraction of them validate)
    final_epochs: int  # of which the last distill_epochs learn from the teacher
    distill_epochs: int
    teacher_epochs: int
    final_train: int  # 0: all 60,000 (54,000 train, 6,000 validate)
    batch_size: int = 128
    lr: float = 0.01
    search_test: int = 1000  # the search never looks at test accuracy: keep it cheap
    finalists: int = 2  # per search, finalized; the best by validation is its model
    #: Candidates of a search screened before the final recipe (``finalize --screen``):
    #: each trains ``screen_epochs`` on the final recipe's images without the teacher,
    #: and the best ``finalists`` by validation go on. 0: none, the top ``finalists``.
    screen: int = 0
    screen_epochs: int = 4
    #: What the screen trains (``finalize --screen-pick``): ``top``, the search's best N;
    #: ``front``, N of its best 2N front after front of (search accuracy, MACs).
    screen_pick: str = "top"
    budgets: list[str] = field(default_factory=lambda: list(BUDGETS))
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    #: ``python -m nas finalize --augment`` (`nas.train.AUGMENTS`).
    augment: str = "none"
    #: Seeds whose runs are also finalized without the teacher.
    ablation_seeds: list[int] = field(default_factory=lambda: [0])
    #: ``supernet``: epochs of supernet training and feasible candidates scored.
    supernet_epochs: int = 8
    supernet_trials: int = 1000
    #: Of ``search_train``, the share that scores the candidates (``dataset.val_fraction``).
    search_val_fraction: float = VAL_FRACTION
    #: Epochs a candidate trains before the pruner may stop it (``pruner.n_warmup_epochs``).
    prune_after: int = 1

    def search_args(self) -> list[str]:
        given = {col: f"{opt}={getattr(self, col)}" for col, (opt, _) in SEARCH_OPTIONS.items()}
        return [
            "dataset=fashion_mnist",
            given["search_train"],
            f"dataset.val_fraction={self.search_val_fraction}",
            f"dataset.test_subset={self.search_test}",
            given["search_epochs"],
            f"search.batch_size={self.batch_size}",
            f"search.lr={self.lr}",
        ]

    def finalize_args(self, teacher: bool, screened: Path | None = None) -> list[str]:
        """``finalize``'s options; ``screened``: the screen of the run's finalize with the
        teacher, whose finalists a run without it trains again."""
        args = ["--top", str(self.finalists), "--epochs", str(self.final_epochs)]
        args += ["--augment", self.augment]
        if screened is not None:
            args += ["--screen-from", str(screened)]
        elif self.screen:  # a reference's one network is not screened: nothing to choose
            args += ["--screen", str(self.screen), "--screen-epochs", str(self.screen_epochs)]
            args += ["--screen-pick", self.screen_pick]
        # the final recipe's own split, whatever share scored the search's candidates
        # (finalize keeps the search's dataset options otherwise)
        args += ["dataset.test_subset=0", f"dataset.val_fraction={VAL_FRACTION}"]
        if self.final_train:
            args.append(f"dataset.train_subset={self.final_train}")
        if not teacher:
            return [*args, "--teacher", "none"]
        distill = f"compression.distill.teacher_epochs={self.teacher_epochs}"
        return [*args, "--distill-epochs", str(self.distill_epochs), distill]

    # The two steps a benchmark on other data replaces (`benchmarks/kws/run.py`): which
    # network a reference method trains, and the search step's command.

    def reference(self, budget: str, method: str) -> dict[str, Any] | None:
        """The network the reference ``method`` trains on ``budget``, None when no
        version of it fits: `reference_point`."""
        return reference_point(budget, method)

    def search_command(
        self,
        budget: str,
        method: str,
        seed: int,
        run: Path,
        timeout_s: float | None = None,
        supernet: Path | None = None,
    ) -> list[str]:
        """The ``search`` command of one run: a search, or a reference trained once.
        ``search_long`` runs for ``timeout_s`` seconds; ``supernet`` trains or reuses the
        supernet at that path."""
        b = BUDGETS[budget]
        space = MOBILENET_M4_SPACE if method == "supernet" else space_args(budget)
        objectives = "acc_int8,latency_ms" if method == "supernet" else "acc_int8"
        args = [
            "search",
            *hw_args(budget),
            *space,
            f"backend={b['backend']}",
            *self.search_args(),
            f"search.seed={seed}",
            f"search.objectives=[{objectives}]",
            f"hydra.run.dir={run}",
        ]
        if method in REFERENCES:
            point = self.reference(budget, method)
            assert point is not None
            return [*args, "search.n_trials=1", f"search.enqueue=[{hydra_dict(point)}]"]
        args += [*b["search"], "search.count_infeasible=false"]
        if method == "supernet":  # NSGA-II on two objectives keeps proposing new candidates
            assert supernet is not None
            return [
                *args,
                "search.strategy=supernet",
                "storage=journal",  # thousands of trials: a seventh of SQLite's bookkeeping
                f"search.supernet.epochs={self.supernet_epochs}",
                f"search.supernet.path={supernet}",
                f"search.n_trials={self.supernet_trials}",
                "sampler=nsga2",
                "sampler.population_size=50",
            ]
        return [*args, *sampler_args(self, budget, method, timeout_s)]


FULL = Recipe(
    seeds=[0, 1, 2],
    trials={"m4-tight": 20, "uno": 60, "m4-16k": 20},
    search_epochs=3,
    search_train=10000,
    final_epochs=15,
    distill_epochs=14,
    teacher_epochs=15,
    final_train=0,
)
QUICK = Recipe(
    seeds=[0],
    trials={"m4-tight": 4, "uno": 3, "m4-16k": 4},
    search_epochs=1,
    search_train=2000,
    final_epochs=2,
    distill_epochs=1,
    teacher_epochs=1,
    final_train=2000,
    search_test=500,
    supernet_epochs=1,
    supernet_trials=20,
    screen_epochs=1,
)


@dataclass
class Step:
    """One command of a job, with its CPU and wall time once it ran."""

    args: list[str]
    out: Path
    rc: int | None = None
    cpu_s: float = 0.0
    wall_s: float = 0.0
    error: str = ""


def run_step(step: Step, log: Path, threads: int) -> Step:
    """Run one ``python -m nas ...``; its output goes to ``log``."""
    cmd = [sys.executable, "-m", "nas", *step.args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    start = datetime.datetime.now()
    with open(log, "w") as f:
        f.write(" ".join(cmd[1:]) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        step.rc = os.waitstatus_to_exitcode(status)
    step.wall_s = (datetime.datetime.now() - start).total_seconds()
    step.cpu_s = usage.ru_utime + usage.ru_stime
    if step.rc:
        lines = log.read_text().strip().splitlines() or ["(no output)"]
        step.error = f"exit {step.rc}: {lines[-1][:300]}"
    return step


NO_FIT = "no width or resolution fits the budget"


@functools.cache
def reference_point(budget: str, family: str) -> dict[str, Any] | None:
    """The hand design ``family`` scaled to the budget, as its point of the families
    space (static cost only, no training); None when no version fits. (Tracing is not
    thread-safe: `main` computes them all before the jobs start.)"""
    from nas_space_families import FamiliesSearchSpace
    from nas_space_reference import ReferenceConfig, ReferenceSearchSpace

    from nas.hardware import load_profile

    b = BUDGETS[budget]
    hw = dataclasses.replace(load_profile(b["profile"]), **b["memory"])
    space = ReferenceSearchSpace(ReferenceConfig(resolutions=list(b["resolutions"])))
    found = space.scaled(family, hw, in_channels=1, num_classes=10)
    if found is None:
        return None
    spec = found[0]
    point = {"family": family, "resolution": spec["resolution"], f"{family}_width": spec["width"]}
    return FamiliesSearchSpace().complete(point)  # the hand design's other choices


def hydra_dict(spec: dict[str, Any]) -> str:
    """An architecture as a Hydra override value: ``{key:value,...}``."""
    return "{" + ",".join(f"{k}:{json.dumps(v)}" for k, v in spec.items()) + "}"


def supernet_file(runs: Path, budget: str, seed: int) -> Path:
    """Where the ``supernet`` method's supernet of one seed is trained and kept: outside
    the job's folder, so that a job started again resumes its training."""
    return runs / budget / "supernets" / f"seed{seed}.pt"


def supernet_cpu_s(path: Path) -> float:
    """CPU time the supernet at ``path`` took to train so far (0 when there is none)."""
    if not path.is_file():
        return 0.0
    import torch

    return float(torch.load(path, map_location="cpu", weights_only=True).get("cpu_s", 0.0))


def sampler_args(
    recipe: Recipe, budget: str, method: str, timeout_s: float | None = None
) -> list[str]:
    """The sampler, trials and pruner of a ``search``, ``random`` or ``search_long`` run."""
    if method == "random":
        sampler = ["sampler=random"]
    else:
        sampler = ["sampler=tpe", "sampler.n_startup_trials=8"]
    trials = recipe.trials[budget]
    if method == "search_long":  # the time is the limit: trials enough never to stop first
        assert timeout_s is not None
        trials, sampler = 100 * trials, [*sampler, f"search.timeout_s={timeout_s:.0f}"]
    return [*sampler, f"search.n_trials={trials}", f"pruner.n_warmup_epochs={recipe.prune_after}"]


def supernet_job_cpu_s(runs: Path, budget: str, seed: int) -> float | None:
    """CPU time of the ``supernet`` run of ``seed``, its supernet's training included;
    None until that search has finished."""
    state_file = runs / budget / f"supernet-s{seed}" / "job.json"
    if not state_file.is_file():
        return None
    search = json.loads(state_file.read_text()).get("search")
    if not search or search["rc"]:
        return None
    return float(search["cpu_s"]) + float(search.get("supernet_cpu_before_s", 0.0))


def applies(budget: str, method: str) -> bool:
    """Whether ``method`` is part of the benchmark on ``budget``."""
    return method not in SUPERNET_METHODS or budget in SUPERNET_BUDGETS


def run_job(
    recipe: Recipe,
    runs: Path,
    budget: str,
    method: str,
    seed: int,
    threads: int,
    ablation: bool = True,
    commit: str = "",
) -> dict:
    """Search (or train the reference once), then finalize, with and (with ``ablation``,
    for the ablation seeds) without the teacher. Each step's result is kept in
    ``job.json`` with the ``commit`` it ran at; a step whose result is there is skipped,
    a half-done one is started again."""
    job = runs / budget / f"{method}-s{seed}"
    state_file = job / "job.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if method in REFERENCES and recipe.reference(budget, method) is None:
        state["error"] = NO_FIT
        job.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=1))
        return state
    timeout_s = supernet_job_cpu_s(runs, budget, seed) if method == "search_long" else None
    if method == "search_long" and timeout_s is None:  # not kept: it can run later
        return {"error": f"needs the supernet run of seed {seed} first (--methods supernet)"}
    supernet = supernet_file(runs, budget, seed) if method == "supernet" else None
    steps = [("search", None), ("final", True)]
    if ablation and seed in recipe.ablation_seeds:
        steps.append(("final_noteacher", False))
    for name, teacher in steps:
        if name in state and not state[name]["rc"]:
            continue
        run = job / "run"
        if teacher is None:
            if job.exists():
                shutil.rmtree(job)
            job.mkdir(parents=True)
            args = recipe.search_command(budget, method, seed, run, timeout_s, supernet)
        else:
            out = job / name
            for old in (out, out.with_name(out.name + "-screen")):
                if old.exists():
                    shutil.rmtree(old)
            if "search" not in state or state["search"]["rc"]:
                break
            screen = job / "final-screen"
            earlier = screen if not teacher and (screen / "screen.json").is_file() else None
            args = ["finalize", str(run), "--out", str(out)]
            args += recipe.finalize_args(teacher, earlier)
        before = 0.0
        if supernet is not None and teacher is None:
            supernet.parent.mkdir(parents=True, exist_ok=True)
            before = supernet_cpu_s(supernet)
        step = run_step(Step(args, job / name), job / f"{name}.log", threads)
        state[name] = {k: v for k, v in dataclasses.asdict(step).items() if k != "out"}
        state[name]["commit"] = commit
        if before:  # its supernet was (partly) trained before this search started
            state[name]["supernet_cpu_before_s"] = before
        state_file.write_text(json.dumps(state, indent=1))
        print(
            f"[{datetime.datetime.now():%H:%M:%S}] {budget} {method} seed {seed} {name}: "
            f"{'ok' if not step.rc else step.error} ({step.wall_s:.0f} s)",
            flush=True,
        )
        if step.rc:
            break
    return state


def arena_fits(measured: Any, limit: int | None) -> Any:
    """Whether a measured arena (a number or a column; NaN where nothing was measured)
    is within ``limit`` (None: no arena limit)."""
    return np.logical_not(measured > limit) if limit else np.ones_like(measured, dtype=bool)


def trials_of(run_dir: Path) -> pd.DataFrame:
    """A run's ``trials.csv`` (empty when the run wrote none)."""
    csv = run_dir / "trials.csv"
    return pd.read_csv(csv) if csv.is_file() else pd.DataFrame()


def best_final(final: pd.DataFrame, limit: int | None) -> pd.Series | None:
    """The finalist with the highest validation int8 accuracy that fits (by the measured
    arena too, where TFLM measured it); ties go to the lower latency."""
    if final.empty:
        return None
    ok = final[trained_mask(final)]
    if "arena_bytes_measured" in ok:
        ok = ok[arena_fits(ok["arena_bytes_measured"], limit)]
    if ok.empty:
        return None
    return ok.sort_values(["acc_int8", "latency_ms"], ascending=[False, True]).iloc[0]


def search_options(args: list[str]) -> dict[str, int]:
    """The images and epochs a run's search trained its candidates with, read from its
    ``nas search`` options (``job.json``), so a row says which recipe chose its model."""
    given = dict(a.split("=", 1) for a in args if "=" in a)
    return {col: int(given[opt]) for col, (opt, _) in SEARCH_OPTIONS.items() if opt in given}


def collect(runs: Path, out: Path, budgets: dict[str, dict[str, Any]] = BUDGETS) -> pd.DataFrame:
    """One row per job of ``budgets`` in the runs folder, its final model's files copied
    to ``out`` (replacing what an earlier report put there for the same run)."""
    rows = []
    for state_file in sorted(runs.glob("*/*-s*/job.json")):
        budget = state_file.parent.parent.name
        method, seed = state_file.parent.name.rsplit("-s", 1)
        if budget not in budgets or method not in METHODS:
            continue
        state = json.loads(state_file.read_text())
        job = state_file.parent
        limit = budgets[budget]["arena_limit"]
        row: dict[str, Any] = {"budget": budget, "method": method, "seed": int(seed)}
        cpu = {
            k: v["cpu_s"] + v.get("supernet_cpu_before_s", 0.0)
            for k, v in state.items()
            if isinstance(v, dict)
        }
        row["search_cpu_s"] = cpu.get("search", 0.0)
        row["final_cpu_s"] = cpu.get("final", 0.0)
        errors = [v["error"] for v in state.values() if isinstance(v, dict) and v["rc"]]
        row["error"] = state.get("error") or "; ".join(errors)
        row["commit"] = state.get("final", state.get("search", {})).get("commit", "")
        row.update(search_options(state.get("search", {}).get("args", [])))
        if "final" not in state or state["final"]["rc"]:
            row["error"] = row["error"] or "not run yet"
            rows.append(row)
            continue
        final = trials_of(job / "final")
        t = best_final(final, limit)
        recipe_file = json.loads((job / "final" / "finalize.json").read_text())
        row["finalists"] = len(final)
        row["screened"] = len(recipe_file.get("screened") or [])
        pick = (recipe_file.get("screen") or {}).get("pick", SCREEN_PICKS[0])
        row["screen_pick"] = pick if row["screened"] else ""
        if t is None:
            row["error"] = "no finalist completed and fits"
            rows.append(row)
            continue
        arena = t.get("arena_bytes_measured", float("nan"))
        row.update(
            final_trial=int(t["number"]),
            family=t["family"],
            scored_by=t["scored_by"],
            acc_int8_test=t["acc_int8_test"],
            acc_int8_val=t["acc_int8"],
            acc_float_test=t.get("acc_float_test"),
            arena_bytes=int(arena if arena == arena else t["arena_bytes"]),
            arena_measured=bool(arena == arena),
            fits=bool(t["feasible"]) and bool(arena_fits(arena, limit)),
            model_bytes=int(t["model_bytes"]),
            sram_bytes=int(t["sram_bytes"]),
            flash_bytes=int(t["flash_bytes"]),
            macs=int(t["macs"]),
            latency_ms=float(t["latency_ms"]),
            teacher_acc=t.get("distill_teacher_acc"),
            left_out="; ".join(recipe_file.get("left_out", [])),
        )
        plain = trials_of(job / "final_noteacher")
        if not plain.empty:  # the same finalist trained without the teacher
            same = plain[plain["number"] == t["number"]]
            if len(same) and pd.notna(same.iloc[0].get("acc_int8_test")):
                row["acc_int8_test_noteacher"] = same.iloc[0]["acc_int8_test"]
        src = job / "final" / "trials" / f"{int(t['number']):05d}"
        dest = out / "models" / budget / method / f"seed{seed}"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name in ("arch.json", "model_int8.npz", "model.tflite"):
            if (src / name).is_file():
                shutil.copy(src / name, dest / name)
        row["arch"] = json.dumps(json.loads((src / "arch.json").read_text())["arch"])
        rows.append(row)
    return pd.DataFrame(rows)


KEY = ["budget", "method", "seed"]


def merge(earlier: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``earlier`` (the committed ``results.csv``, from parts run on other
    machines whose runs folders are gone) updated with ``new`` (this machine's runs
    folder): a new row replaces an earlier one of the same run unless the earlier one
    has a model and the new one not. One row per run (the last, should a file hold two)."""
    frames = [f.drop_duplicates(KEY, keep="last") for f in (earlier, new) if not f.empty]
    if len(frames) < 2:
        return frames[0].sort_values(KEY, ignore_index=True) if frames else new
    # a file written before any run had its model has no accuracy column
    earlier, new = (f if "acc_int8_test" in f else f.assign(acc_int8_test=np.nan) for f in frames)
    done = set(map(tuple, earlier.loc[earlier["acc_int8_test"].notna(), KEY].values.tolist()))
    keep_new = [
        tuple(k) not in done or pd.notna(a)
        for k, a in zip(new[KEY].values.tolist(), new["acc_int8_test"], strict=True)
    ]
    new = new[keep_new]
    replaced = earlier.set_index(KEY).index.isin(new.set_index(KEY).index)
    merged = pd.concat([earlier[~replaced], new], ignore_index=True)
    return merged.sort_values(KEY, ignore_index=True)


def read_results(path: Path) -> pd.DataFrame:
    """A results file written by an earlier report; empty when there is none (or it holds
    no runs). Rows screened before ``screen_pick`` existed screened the top N."""
    try:
        df = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()
    if "screened" in df and "screen_pick" not in df:
        df["screen_pick"] = np.where(df["screened"] > 0, SCREEN_PICKS[0], "")
    return df if set(KEY) <= set(df.columns) else pd.DataFrame()


def fmt_int(v: float) -> str:
    return "-" if v != v else f"{v:,.0f}"


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    each = ", ".join(f"{a:.4f}" for a in values)
    return f"{statistics.mean(values):.4f} ± {sd:.4f} ({each})"


def done_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["acc_int8_test"].notna()] if "acc_int8_test" in df else df.iloc[:0]


def table(df: pd.DataFrame, budget: str, labels: dict[str, str] = LABELS) -> list[str]:
    lines = [
        "| method | test acc int8, mean ± sd (per seed) | families | arena B | model B | "
        "MACs | latency ms (est.) | fits | search CPU-h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    part = df[df["budget"] == budget]
    for method in labels:
        rows = part[part["method"] == method]
        if rows.empty:
            continue
        ok = done_rows(rows)
        acc = mean_sd(list(ok["acc_int8_test"])) if not ok.empty else "-"
        missing = rows[rows["acc_int8_test"].isna()] if "acc_int8_test" in rows else rows
        if not missing.empty:
            acc += f" ({len(missing)} missing: {'; '.join(sorted(set(missing['error'])))})"
        mean = ok.mean(numeric_only=True) if not ok.empty else pd.Series(dtype=float)
        searched = method in SEARCHES
        cpu_h = f"{rows['search_cpu_s'].mean() / 3600:.2f}" if searched else "-"
        families = ", ".join(sorted(set(ok["family"]))) if not ok.empty else "-"
        cells = [families] + [
            fmt_int(mean.get(c, float("nan"))) for c in ("arena_bytes", "model_bytes", "macs")
        ]
        fits = ("yes" if ok["fits"].all() else "NO") if not ok.empty else "-"
        cells += [f"{mean.get('latency_ms', float('nan')):.2f}", fits, cpu_h]
        lines.append(f"| {labels[method]} | {acc} | {' | '.join(cells)} |")
    return lines


def runs_done(df: pd.DataFrame, budget: str, method: str) -> pd.DataFrame:
    """The rows of ``method`` on ``budget`` that have a model."""
    return done_rows(df[(df["budget"] == budget) & (df["method"] == method)])


def mean_of(df: pd.DataFrame, budget: str, method: str) -> float:
    ok = runs_done(df, budget, method)
    return float(ok["acc_int8_test"].mean()) if len(ok) else float("nan")


def seeds_done(df: pd.DataFrame, budget: str, method: str) -> set[int]:
    """The seeds of ``method`` on ``budget`` that have a model."""
    return {int(s) for s in runs_done(df, budget, method)["seed"]}


def pending_references(df: pd.DataFrame, budget: str, means: list[float]) -> list[str]:
    """The references of ``budget`` still without a model, from their ``means`` (in
    `REFERENCES` order); those that fit no version of the budget do not count."""
    part = df[df["budget"] == budget]
    no_fit = set(part.loc[part["error"] == NO_FIT, "method"]) if "error" in part else set()
    return [m for m, v in zip(REFERENCES, means, strict=True) if v != v and m not in no_fit]


def targets(df: pd.DataFrame, recipe: Recipe) -> list[str]:
    """Each target of the benchmark, met or missed by how much."""

    def verdict(value: float, bar: float, what: str) -> str:
        if value != value or bar != bar:
            return f"- {what}: not measured yet"
        gap = value - bar
        word = "met" if gap >= 0 else "MISSED"
        return f"- {what}: {value:.4f} vs {bar:.4f}, **{word}** ({gap:+.4f})"

    def versus(budget: str, method: str, other: str, what: str) -> str:
        """``method``'s mean against ``other``'s, over the same seeds only: means over
        different seeds compare the seeds as much as the methods."""
        mine, theirs = seeds_done(df, budget, method), seeds_done(df, budget, other)
        if mine and theirs and mine != theirs:
            return (
                f"- {what}: not decided yet, models for seeds {sorted(mine)} ({method}) "
                f"and {sorted(theirs)} ({other})"
            )
        return verdict(mean_of(df, budget, method), mean_of(df, budget, other), what)

    lines = ["## Targets", ""]
    refs = {b: [mean_of(df, b, m) for m in REFERENCES] for b in BUDGETS}
    best_ref = {b: max((v for v in r if v == v), default=float("nan")) for b, r in refs.items()}
    search = {b: mean_of(df, b, "search") for b in BUDGETS}
    lines.append(verdict(search["m4-tight"], 0.920, "m4-tight: search at least 0.920"))
    what = "m4-tight: search at least 1.0 point above the best reference"
    pending = pending_references(df, "m4-tight", refs["m4-tight"])
    if pending:  # the best reference is not known until each has its model
        lines.append(f"- {what}: not decided yet, no model yet for {', '.join(pending)}")
    else:
        lines.append(verdict(search["m4-tight"], best_ref["m4-tight"] + 0.01, what))
    lines.append(verdict(search["uno"], 0.875, "uno: search at least 0.875"))
    lines.append(verdict(search["uno"], mean_of(df, "uno", "mlp"), "uno: search above the MLP"))
    for budget in BUDGETS:
        what = f"{budget}: search above random search in the same space (mean)"
        lines.append(versus(budget, "search", "random", what))
    for budget in SUPERNET_BUDGETS:
        what = f"{budget}: supernet search at least as accurate as TPE given its CPU time"
        lines.append(versus(budget, "supernet", "search_long", what + " (issue 19)"))
    seeds = {b: len(runs_done(df, b, "search")) for b in BUDGETS}
    both = {  # seeds that have a model of each supernet method
        b: set.intersection(*(seeds_done(df, b, m) for m in SUPERNET_METHODS))
        for b in SUPERNET_BUDGETS
    }
    lines += [
        "",
        "Means over the seeds measured so far: "
        + ", ".join(f"{b} {n} of {len(recipe.seeds)}" for b, n in seeds.items())
        + " (search); "
        + ", ".join(f"{b} {len(n)} of {len(recipe.seeds)}" for b, n in both.items())
        + " (supernet search and TPE given its CPU time).",
        "",
    ]
    return lines


#: The hand-written reading of the results (what limited a missed target, what the
#: models have in common), kept in the results folder and copied into RESULTS.md.
ANALYSIS_FILE = "ANALYSIS.md"


def analysis(out: Path) -> list[str]:
    """The results folder's `ANALYSIS_FILE` under its own heading, if there is one: the
    targets above are computed, their reasons are a person's reading of the runs."""
    path = out / ANALYSIS_FILE
    if not path.exists():
        return []
    text = path.read_text().strip()
    return ["## What limited it (written by hand from these runs)", "", text, ""]


def teacher_lines(df: pd.DataFrame) -> list[str]:
    """What the teacher adds: the same finalist trained with and without it."""
    if "acc_int8_test_noteacher" not in df:
        return []
    both = df[df["acc_int8_test_noteacher"].notna() & df["acc_int8_test"].notna()]
    if both.empty:
        return []
    lines = [
        "## What the teacher adds",
        "",
        "The model of each run of the ablation seeds, finalized again with the same epochs "
        "but no teacher (`--teacher none`). Test accuracy, int8.",
        "",
        "| budget | method | seed | family | teacher (val acc) | with teacher | without | "
        "difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in both.iterrows():
        diff = r["acc_int8_test"] - r["acc_int8_test_noteacher"]
        lines.append(
            f"| {r['budget']} | {r['method']} | {r['seed']} | {r['family']} | "
            f"{r['teacher_acc']:.4f} | {r['acc_int8_test']:.4f} | "
            f"{r['acc_int8_test_noteacher']:.4f} | {diff:+.4f} |"
        )
    mean = (both["acc_int8_test"] - both["acc_int8_test_noteacher"]).mean()
    return [*lines, "", f"Mean difference: {mean:+.4f} over {len(both)} models.", ""]


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


def plots(
    df: pd.DataFrame,
    budget: str,
    out: Path,
    kinds: tuple[str, ...] = PLOTS,
    budgets: dict[str, dict[str, Any]] = BUDGETS,
    labels: dict[str, str] = LABELS,
) -> list[str]:
    """Write the budget's plots (test accuracy vs memory, vs latency) to ``out``; return
    their Markdown image lines."""
    part = done_rows(df[df["budget"] == budget])
    if part.empty:
        return []
    part = part.sort_values("method", key=lambda m: m.map(list(labels).index))
    axes = {
        "memory": budgets[budget]["memory_plot"],
        "latency": ("latency_ms", "latency ms (estimated)", None),
    }
    lines = []
    for kind in kinds:
        col, label, limit = axes[kind]
        points = [
            (float(r[col]), float(r["acc_int8_test"]), labels[r["method"]])
            for _, r in part.iterrows()
        ]
        name = f"pareto_{budget}_{kind}.svg"
        title = f"{budget}: test accuracy vs {label}"
        (out / name).write_text(scatter_svg(points, label, "test accuracy (int8)", title, limit))
        lines.append(f"![{title}]({name})")
    return lines


def other_search_recipes(df: pd.DataFrame, recipe: Recipe) -> list[str]:
    """A line naming the runs whose search trained on other images or for other epochs
    than ``recipe`` says (the `search_options` columns; none when every run agrees)."""
    found = []
    for col, (_, unit) in SEARCH_OPTIONS.items():
        if col not in df:
            continue
        other = df[df[col].notna() & (df[col] != getattr(recipe, col))]
        for (budget, method, value), runs in other.groupby(["budget", "method", col]):
            seeds = ", ".join(str(k) for k in sorted(runs["seed"]))
            found.append(f"{budget} {method} (seeds {seeds}): {value:,.0f} {unit}")
    columns = ", ".join(f"`{col}`" for col in SEARCH_OPTIONS)
    head = f"- Searches with another recipe (columns {columns}): "
    return [head + "; ".join(found) + "."] if found else []


def read_parts(out: Path) -> list[dict[str, Any]]:
    """The parts recorded in ``out/parts.jsonl``, one line each."""
    done = out / "parts.jsonl"
    return [json.loads(line) for line in done.read_text().splitlines()] if done.is_file() else []


def record_part(out: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` to ``out/parts.jsonl``, or update the line of the part with its
    ``start``: written when a part starts and after each of its jobs, so a part stopped
    midway is listed with how long it ran (``stopped``)."""
    parts = [p for p in read_parts(out) if p.get("start") != entry["start"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "parts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in [*parts, entry]))


def write_results(df: pd.DataFrame, out: Path, recipe: Recipe) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("pareto_*.svg"):
        stale.unlink()
    df.to_csv(out / "results.csv", index=False)
    parts = read_parts(out)
    cpu = df["search_cpu_s"].sum() + df["final_cpu_s"].sum() if len(df) else 0.0
    lines = [
        "# Fashion-MNIST under microcontroller budgets: a search across model families vs "
        "random search vs hand designs",
        "",
        "Parts (each `python benchmarks/fashion_mnist/run.py` call; merged with `--report-only`):",
        "",
        *(
            f"- `{' '.join(['python benchmarks/fashion_mnist/run.py', *p['argv']])}`: "
            f"{p['date']}, commit {p['commit']}, {p['wall_s'] / 60:.0f} min wall"
            + (
                " (stopped before its end; the runs it finished are kept)"
                if p.get("stopped")
                else ""
            )
            for p in parts
        ),
        "",
        f"- Machine: {parts[-1]['machine'] if parts else '-'}",
        f"- CPU time of every search and finalize so far: {cpu / 3600:.2f} h",
        f"- Seeds {recipe.seeds}. Search: trained candidates per run "
        f"{', '.join(f'{b} {n}' for b, n in recipe.trials.items())} (candidates that do not "
        f"fit are rejected before training and not counted), {recipe.search_epochs} epochs "
        f"on {recipe.search_train} training images ({recipe.search_val_fraction:.0%} of them "
        f"validate; the pruner may stop a candidate after epoch {recipe.prune_after}), batch "
        f"{recipe.batch_size}, Adam lr {recipe.lr} one-cycle. Finalize (every model, "
        f"`python -m nas finalize`): the top {recipe.finalists} of a search (a reference: "
        "its one network; a run whose `screened` column is N > 0: N of its search's "
        "candidates, the top N (`screen_pick` top) or N of the top 2N front after front of "
        "search accuracy and MACs (`screen_pick` front), each first trained "
        f"{recipe.screen_epochs} epochs on the same images without the teacher (`--screen`), "
        "of which the best `finalists` by validation go on), "
        f"{recipe.final_epochs} epochs on "
        f"{recipe.final_train or 'all 54,000'} training images (augmentation: "
        f"{recipe.augment}), the last {recipe.distill_epochs} distilled from the cached teacher "
        f"(trained {recipe.teacher_epochs} epochs); the finalist with the best validation "
        "accuracy is the run's model. Test accuracy on all 10,000 test images, int8.",
        *other_search_recipes(df, recipe),
        f"- Supernet search ({', '.join(SUPERNET_BUDGETS)}): the MobileNet-like space, one "
        f"supernet per seed trained {recipe.supernet_epochs} epochs on the search's images, "
        f"{recipe.supernet_trials} feasible candidates scored with inherited weights "
        "(NSGA-II), its finalists trained with the search recipe, then finalized like the "
        "rest; its search CPU time includes the supernet's training. TPE for the supernet's "
        "CPU time: the families search given that CPU time of the same seed as its time "
        "limit (`search.timeout_s`, wall clock of a one-thread job).",
        "",
        *targets(df, recipe),
        *analysis(out),
    ]
    for budget in BUDGETS:
        lines += [f"## {budget}", "", *BUDGET_NOTES[budget], "", *table(df, budget), ""]
        lines += [*plots(df, budget, out), ""]
    lines += [
        *teacher_lines(df),
        "## Architectures",
        "",
        "Every final model's choices, int8 weights (`model_int8.npz`) and, where TFLite "
        "Micro scored it, the flatbuffer (`model.tflite`) are in "
        "`models/<budget>/<method>/seed<k>/`; `results.csv` has one row per run.",
        "",
        "| budget | method | seed | commit | architecture |",
        "|---|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        arch = r.get("arch")
        text = arch if isinstance(arch, str) else r.get("error", "")
        commit = r.get("commit")
        commit = commit if isinstance(commit, str) and commit else "-"
        lines.append(f"| {r['budget']} | {r['method']} | {r['seed']} | {commit} | `{text}` |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


BUDGET_NOTES = {
    "m4-tight": [
        "Cortex-M4 (STM32L4R5, CMSIS-NN latency table), TFLite Micro arena <= 32 KiB and "
        "model <= 64 KiB, the arena measured in the interpreter of the `tflite-micro` wheel "
        "(64-bit pointers, reference kernels: more than the 32-bit chip needs). Search "
        "space: families at 12-28 pixels; the MobileNet-like family with a stride-2 stem, "
        "no later downsampling, stage widths 24-48, 1-3 blocks, expansion 1, 2 or 4. "
        "Candidates under 1.5 M MACs are rejected before training (`search.min_macs`).",
    ],
    "uno": [
        "Arduino Uno (ATmega328P): 2 KiB SRAM and 32 KiB flash including the runtime "
        "allowances (256 B RAM, 2,894 B flash). Search space: families at 8-28 pixels. "
        "Scored by the int8 reference kernels; SRAM is the static plan.",
    ],
    "m4-16k": [
        "The m4-tight setting with at most 16 KiB of arena and no compute floor.",
    ],
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, few trials, 1-2 epochs")
    p.add_argument("--seeds", type=int, nargs="+", help="run only these seeds")
    p.add_argument("--trials", type=int, help="override the trials per search")
    p.add_argument("--budgets", nargs="+", choices=list(BUDGETS), help="run only these")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), help="run only these")
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time (default 2)")
    p.add_argument("--threads", type=int, help="torch threads per job (default: CPUs / jobs)")
    p.add_argument("--out", type=Path, help="results folder (default: results/)")
    p.add_argument("--runs", type=Path, help="runs folder (default: outputs/fashion_mnist_*)")
    p.add_argument("--report-only", action="store_true", help="merge the runs into RESULTS.md")
    p.add_argument("--search-train", type=int, help="images a search draws (default 10000)")
    p.add_argument("--search-epochs", type=int, help="epochs a candidate trains (default 3)")
    p.add_argument(
        "--val-fraction", type=float, help="of those, the share that validates (default 0.1)"
    )
    p.add_argument(
        "--prune-after", type=int, help="epochs before the pruner may stop one (default 1)"
    )
    p.add_argument("--finalists", type=int, help="a search's models given the final recipe")
    p.add_argument(
        "--screen", type=int, help="screen this many of a search's top first (finalize --screen)"
    )
    p.add_argument(
        "--screen-pick",
        choices=SCREEN_PICKS,
        help="what the screen trains (finalize --screen-pick; default top)",
    )
    args = p.parse_args(argv)
    recipe = dataclasses.replace(QUICK if args.quick else FULL)
    if args.search_train is not None and args.search_train < 100:
        p.error(f"--search-train {args.search_train}: use at least 100 images")
    if args.search_epochs is not None and args.search_epochs < 1:
        p.error(f"--search-epochs {args.search_epochs}: use 1 or more epochs")
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        p.error(f"--val-fraction {args.val_fraction}: use a share between 0 and 1")
    if args.prune_after is not None and args.prune_after < 0:
        p.error(f"--prune-after {args.prune_after}: use 0 or more epochs")
    if args.finalists is not None and args.finalists < 1:
        p.error(f"--finalists {args.finalists}: use 1 or more")
    finalists = args.finalists or recipe.finalists
    if args.screen is not None and (args.screen < 0 or 0 < args.screen <= finalists):
        p.error(f"--screen {args.screen}: use more than the {finalists} finalists, or 0")
    if args.screen_pick is not None and not args.screen:
        p.error("--screen-pick needs --screen N")
    # a variant of the search recipe, for experiments: use its own --runs and --out
    variant = {
        "search_train": args.search_train,
        "search_epochs": args.search_epochs,
        "search_val_fraction": args.val_fraction,
        "prune_after": args.prune_after,
        "finalists": args.finalists,
        "screen": args.screen,
        "screen_pick": args.screen_pick,
    }
    recipe = dataclasses.replace(recipe, **{k: v for k, v in variant.items() if v is not None})
    suffix = "_quick" if args.quick else ""
    out = args.out or (ROOT / f"outputs/fashion_mnist{suffix}" if args.quick else HERE / "results")
    runs = args.runs or ROOT / f"outputs/fashion_mnist_families{suffix}"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        part = recipe
        if args.seeds:
            part = dataclasses.replace(part, seeds=args.seeds)
        if args.trials:
            part = dataclasses.replace(part, trials=dict.fromkeys(BUDGETS, args.trials))
        if args.budgets:
            part = dataclasses.replace(part, budgets=args.budgets)
        if args.methods:
            part = dataclasses.replace(part, methods=args.methods)
        if args.trials:
            recipe = dataclasses.replace(recipe, trials=part.trials)
        start = datetime.datetime.now()
        jobs = max(1, args.jobs)
        threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
        todo = [
            (b, m, s)
            for b in part.budgets
            for s in part.seeds
            for m in part.methods
            if applies(b, m)
        ]
        for budget, method, _ in todo:
            if method in REFERENCES:
                reference_point(budget, method)
        # TPE for the supernet's CPU time runs once that time is known, and the runs
        # without the teacher once every run has its model: three waves.
        first = [j for j in todo if j[1] != "search_long"]
        todo = first + [j for j in todo if j[1] == "search_long"]
        waves = [(first, False), (todo[len(first) :], False), (todo, True)]
        entry = {"argv": argv, **provenance(), "start": start.isoformat(timespec="seconds")}
        lock = threading.Lock()

        def note_part(stopped: bool) -> None:  # a part killed midway keeps "stopped"
            wall = (datetime.datetime.now() - start).total_seconds()
            with lock:
                record_part(out, {**entry, "wall_s": wall, "stopped": stopped})

        def job(j: tuple[str, str, int], ablation: bool) -> dict:
            state = run_job(part, runs, *j, threads, ablation, str(entry["commit"]))
            note_part(stopped=True)
            return state

        note_part(stopped=True)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for wave, ablation in waves:
                states = list(pool.map(lambda j, a=ablation: job(j, a), wave))
        note_part(stopped=False)
        failed = [
            j
            for j, s in zip(todo, states, strict=True)
            if s.get("error") or any(isinstance(v, dict) and v["rc"] for v in s.values())
        ]
        for j in failed:
            print(f"failed or not possible: {' '.join(map(str, j))}", file=sys.stderr)
    df = merge(read_results(out / "results.csv"), collect(runs, out))
    if df.empty:
        print(f"nothing to report: no runs in {runs} and no {out / 'results.csv'}")
        return 0
    write_results(df, out, recipe)
    print(f"results: {out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
