"""What an Optuna trial costs in bookkeeping alone, per storage: the supernet search's
share that is not scoring.

    python benchmarks/storage_overhead.py        # writes results/storage_overhead.md
        [--before DIR]   # also a search whose every candidate is rejected before
                         # training, with the code of checkout DIR and with this one

A trial shaped like a supernet search's (17 categorical choices, 25 user attributes,
NSGA-II, two objectives) with nothing to compute: after ``--warmup`` trials, the CPU and
wall time of the next ``--trials``, its attributes written one by one
(`optuna.Trial.set_user_attr`) or together (`nas.storage.set_user_attrs`, what a search
does). Storages: in memory; Optuna's journal file and SQLite, each opened by
`nas.storage.open_storage` (SQLite is a search's default); and that SQLite with
``journal_mode=WAL`` and ``synchronous=NORMAL``, which the project does not set:
measured as a candidate change.

``--before``: ``python -m nas search`` on the Cortex-M4 with the families space, a compute
floor no candidate reaches (``search.min_macs``) and no random start, run for
``--search-trials`` and for 100 more; the difference of the two runs' CPU time over
those 100 trials is what one rejected candidate costs, startup excluded.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fashion_mnist"))
from run import provenance  # noqa: E402

from nas.storage import open_storage as nas_storage  # noqa: E402
from nas.storage import set_user_attrs  # noqa: E402

RESULT = HERE / "results" / "storage_overhead.md"
CHOICES, ATTRS = 17, 25


def open_storage(kind: str, folder: Path) -> Any:
    if kind == "memory":
        return None
    if kind == "journal":
        return nas_storage(f"journal://{folder / 'study.log'}")
    storage = nas_storage(f"sqlite:///{folder / 'study.db'}")
    if kind == "sqlite-wal":
        from sqlalchemy import event

        def pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        event.listen(storage.engine, "connect", pragmas)
        storage.engine.dispose()  # every connection from now on gets the pragmas
    return storage


def objective(trial: optuna.Trial, together: bool) -> tuple[float, float]:
    for i in range(CHOICES):
        trial.suggest_categorical(f"c{i}", [1, 2, 3, 4])
    attrs = {f"a{i}": 1.5 for i in range(ATTRS)}
    if together:
        set_user_attrs(trial, attrs)
    else:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
    return random.random(), random.random()


def measure(kind: str, warmup: int, trials: int, together: bool) -> tuple[float, float]:
    """CPU and wall milliseconds per trial after ``warmup`` trials."""

    def run(trial: optuna.Trial) -> tuple[float, float]:
        return objective(trial, together)

    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(
            storage=open_storage(kind, Path(tmp)),
            sampler=optuna.samplers.NSGAIISampler(population_size=50, seed=0),
            directions=["maximize", "minimize"],
        )
        study.optimize(run, n_trials=warmup)
        cpu, wall = time.process_time(), time.perf_counter()
        study.optimize(run, n_trials=trials)
        return (
            (time.process_time() - cpu) / trials * 1000,
            (time.perf_counter() - wall) / trials * 1000,
        )


def search_cpu_s(checkout: Path, trials: int, folder: Path) -> float:
    """CPU seconds of one ``python -m nas search`` with the code of ``checkout`` whose
    ``trials`` candidates are all rejected before training."""
    paths = [checkout, checkout / "plugins", checkout / "search_spaces"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nas", "search", *REJECTED, f"search.n_trials={trials}"]
    cmd.append(f"hydra.run.dir={folder / f'run{trials}'}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=checkout, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


#: A search whose every candidate is rejected by its static cost (`search_cpu_s`).
REJECTED = [
    "+hw=cortex_m4",
    "search_space=families",
    "search.min_macs=1000000000",
    "search.cheap_first=false",
    "search.report=false",
]
MORE = 100  # the trials the second run adds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    ap.add_argument("--search-trials", type=int, default=100)
    argv = sys.argv[1:] if argv is None else argv
    opts = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    random.seed(0)
    prov = provenance()
    rows = []
    for kind in ("memory", "journal", "sqlite", "sqlite-wal"):
        for together in (False, True):
            cpu, wall = measure(kind, opts.warmup, opts.trials, together)
            how = "together" if together else "one by one"
            rows.append(f"| {kind} | {how} | {cpu:.1f} | {wall:.1f} |")
            print(rows[-1], flush=True)
    searches = []
    for name, checkout in [("--before", opts.before), ("this commit", HERE.parent)]:
        if opts.before is None:
            break
        with tempfile.TemporaryDirectory() as tmp:
            first = search_cpu_s(checkout.resolve(), opts.search_trials, Path(tmp))
            second = search_cpu_s(checkout.resolve(), opts.search_trials + MORE, Path(tmp))
        per = (second - first) / MORE * 1000
        searches.append(f"| {name} (`{checkout}`) | {first:.1f} | {second:.1f} | {per:.0f} |")
        print(searches[-1], flush=True)
    text = [
        "# Optuna bookkeeping per trial, by storage",
        "",
        f"- Command: `python {' '.join(['benchmarks/storage_overhead.py', *(argv or [])])}`",
        f"- Commit {prov['commit']}, {prov['date']}; {prov['machine']}; optuna "
        f"{optuna.__version__}",
        f"- A trial of {CHOICES} categorical choices and {ATTRS} user attributes (a supernet "
        f"search's shape), NSGA-II, nothing computed; {opts.trials} trials measured after "
        f"{opts.warmup}",
        "",
        "| storage | attributes written | CPU ms per trial | wall ms per trial |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    if searches:
        text += [
            f"A search whose every candidate is rejected before training (`python -m nas "
            f"search {' '.join(REJECTED)}`, SQLite, one thread): CPU seconds of "
            f"{opts.search_trials} and of {opts.search_trials + MORE} trials, and what "
            f"each of the {MORE} more cost.",
            "",
            "| code | CPU s, first run | CPU s, second run | CPU ms per rejected trial |",
            "|---|---|---|---|",
            *searches,
            "",
        ]
    opts.out.write_text("\n".join(text))
    print(f"results: {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
