"""What an Optuna trial costs in bookkeeping alone, per storage: the supernet search's
share that is not scoring.

    python benchmarks/storage_overhead.py        # writes results/storage_overhead.md

A trial shaped like a supernet search's (17 categorical choices, 25 user attributes,
NSGA-II, two objectives) with nothing to compute: after ``--warmup`` trials, the CPU and
wall time of the next ``--trials``. Storages: in memory; Optuna's journal file and
SQLite, each opened by `nas.storage.open_storage` (SQLite is a search's default); and
that SQLite with ``journal_mode=WAL`` and ``synchronous=NORMAL``, which the project does
not set: measured as a candidate change.
"""

from __future__ import annotations

import argparse
import random
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


def objective(trial: optuna.Trial) -> tuple[float, float]:
    for i in range(CHOICES):
        trial.suggest_categorical(f"c{i}", [1, 2, 3, 4])
    for i in range(ATTRS):
        trial.set_user_attr(f"a{i}", 1.5)
    return random.random(), random.random()


def measure(kind: str, warmup: int, trials: int) -> tuple[float, float]:
    """CPU and wall milliseconds per trial after ``warmup`` trials."""
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(
            storage=open_storage(kind, Path(tmp)),
            sampler=optuna.samplers.NSGAIISampler(population_size=50, seed=0),
            directions=["maximize", "minimize"],
        )
        study.optimize(objective, n_trials=warmup)
        cpu, wall = time.process_time(), time.perf_counter()
        study.optimize(objective, n_trials=trials)
        return (
            (time.process_time() - cpu) / trials * 1000,
            (time.perf_counter() - wall) / trials * 1000,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULT)
    argv = sys.argv[1:] if argv is None else argv
    opts = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    random.seed(0)
    prov = provenance()
    rows = []
    for kind in ("memory", "journal", "sqlite", "sqlite-wal"):
        cpu, wall = measure(kind, opts.warmup, opts.trials)
        rows.append(f"| {kind} | {cpu:.1f} | {wall:.1f} |")
        print(rows[-1], flush=True)
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
        "| storage | CPU ms per trial | wall ms per trial |",
        "|---|---|---|",
        *rows,
        "",
    ]
    opts.out.write_text("\n".join(text))
    print(f"results: {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
