"""``search.workers=N``: more processes on the same study.

The first process (the one the user started) runs its share of ``search.n_trials`` itself
and starts N-1 copies of ``python -m nas search`` with the same overrides, pointed at the
same storage URL, study and run directory; the URL goes in the environment
(``NAS_STORAGE_URL``), never on the command line, where ``ps`` would show its password.
Each copy gets its own share of the trials and its own seed, and writes no report; the
first process waits for them and writes the report for the whole study. Starting the
same command by hand on other machines, with a shared ``storage.url`` (PostgreSQL), does
the same across machines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from nas.storage import URL_ENV

#: Overrides the first process sets for its copies (the user's values are replaced).
_OWNED = (
    "search.workers",
    "search.n_trials",
    "search.seed",
    "search.report",
    "storage.url",
    "study.name",
    "hydra.run.dir",
)


def shares(n_trials: int, workers: int) -> list[int]:
    """Trials per worker: as equal as possible, summing to ``n_trials``."""
    base, extra = divmod(n_trials, workers)
    return [base + (k < extra) for k in range(workers)]


def threads_per_worker(workers: int) -> int:
    """CPU threads each worker's torch may use, so N workers do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // workers)


#: Set in the environment of the processes `spawn` starts.
WORKER_ENV = "NAS_WORKER"


def is_worker() -> bool:
    """Whether this process is a worker started by `spawn` (not the user's process)."""
    return os.environ.get(WORKER_ENV) == "1"


def worker_env(url: str, workers: int) -> dict[str, str]:
    """The workers' environment: this one, the storage URL, a share of the CPU threads and
    the `WORKER_ENV` mark."""
    threads = str(threads_per_worker(workers))
    return {**os.environ, URL_ENV: url, "OMP_NUM_THREADS": threads, WORKER_ENV: "1"}


def worker_args(keep: list[str], n: int, seed: int, study: str, run_dir: Path) -> list[str]:
    """A worker's command line: the user's overrides and its own share; no storage URL."""
    return [
        sys.executable,
        "-m",
        "nas",
        "search",
        *keep,
        "search.workers=1",
        f"search.n_trials={n}",
        f"search.seed={seed}",
        "search.report=false",
        f"study.name={study}",
        f"hydra.run.dir={run_dir}",
    ]


def spawn(
    overrides: list[str], n_trials: list[int], seed: int, url: str, study: str, run_dir: Path
) -> list[subprocess.Popen]:
    """Start one worker process per entry of ``n_trials`` (entries of 0 start none); each
    writes its output to ``worker_<k>.log`` in the run directory."""
    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in _OWNED]
    env = worker_env(url, len(n_trials) + 1)
    procs = []
    for k, n in enumerate(n_trials, start=1):
        if n == 0:
            continue
        args = worker_args(keep, n, seed + k, study, run_dir)
        with open(run_dir / f"worker_{k}.log", "w") as log:  # the child keeps its own copy
            procs.append(
                subprocess.Popen(
                    args,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    return procs


def wait(procs: list[subprocess.Popen], interrupt: bool = False) -> list[int]:
    """Wait for the workers (forwarding Ctrl-C when ``interrupt``); their exit codes."""
    codes = []
    for p in procs:
        if interrupt and p.poll() is None:
            p.send_signal(signal.SIGINT)
        codes.append(p.wait())
    return codes
