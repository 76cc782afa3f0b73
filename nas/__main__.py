"""Command line: ``python -m nas <command> [overrides...]``.

Hydra reads every argument after the command as an override, so the command is popped
here first and the rest handed to that command's ``@hydra.main``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.errors import ConfigError, NasError

USAGE = """\
usage: python -m nas <command> [arguments]

Hardware-constrained neural architecture search for microcontrollers.

commands:
  search +hw=<profile> [key=value ...]
        Run a search on the chosen chip. Every argument is a Hydra override, e.g.
          python -m nas search +hw=cortex_m4 search.n_trials=40 sampler=nsga2
          python -m nas search -m +hw=cortex_m4,cortex_m7      (one run per chip)
        Common keys: search.n_trials, search.timeout_s, search.seed, search.epochs,
        sampler=tpe|nsga2|random, dataset=<name>, search_space=<name>,
        backend=<name>, compression=[<name>,...], study.name, storage.url,
        hydra.run.dir. `python -m nas search --help` shows the composed config.
  list [profiles|spaces|datasets|compression|backends|plugins]
        Show what can be selected (all sections when none is named).
  report RUN_DIR|URL ... [--out DIR]
        Compare runs (any targets, backends, storages): comparison.csv, report.md and
        a self-contained report.html with Pareto fronts, optimisation histories and
        per-layer memory and latency of the best model per target.
  calibrate +hw=<profile> [fit=60] [check=50] [seed=0] [out=DIR]
        Fit the profile's latency lookup table from counts of generated C in a simulator
        (Cortex-M4: QEMU; ATmega328P: simavr); writes <profile>_c.yaml and
        calibration.md to outputs/calibrate_<profile>.

Each run writes study.db, trials.csv, report.md and best/ to its run directory
(outputs/<date>_<hw> unless hydra.run.dir is given).
"""


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _search_app(cfg: DictConfig) -> None:
    from nas.config import use_space_backend
    from nas.search import run_search

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    switched = use_space_backend(cfg, overrides)
    if switched:
        print(
            f"backend: {switched} (search space '{cfg.search_space.name}' cannot run on the "
            "default backend)",
            file=sys.stderr,
        )
    try:
        run_search(cfg, run_dir, overrides)
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"interrupted: the report of the finished trials is in {run_dir}", file=sys.stderr)
        # The study and the report are written (search's finally); leave now with 130, so
        # that interpreter shutdown (joining threads, atexit) cannot be interrupted again
        # and turn the exit status into a signal.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def search_command(args: list[str]) -> int:
    from nas.config import register_configs
    from nas.validate import check_search_args

    help_flags = {"--help", "-h", "--hydra-help", "--info", "--cfg", "-c"}
    if help_flags & set(args):
        register_configs()
    else:
        args = check_search_args(args)  # registers the configs it validates against
    sys.argv = ["python -m nas search", *args]
    _search_app()
    return 0


def list_command(args: list[str]) -> int:
    from nas.listing import SECTIONS, render

    sections = args or list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown list section '{unknown[0]}'; valid: {', '.join(SECTIONS)}")
    print(render(sections))
    return 0


def report_command(args: list[str]) -> int:
    from nas.report_html import main as report_main

    return report_main(args)


def calibrate_command(args: list[str]) -> int:
    try:
        from nas_backend_c_sim.calibrate import main as calibrate_main
    except ImportError:
        raise ConfigError(
            "calibrate needs the c_sim backend plugin (package nas_backend_c_sim)"
        ) from None
    return calibrate_main(args)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    commands = {
        "search": search_command,
        "list": list_command,
        "report": report_command,
        "calibrate": calibrate_command,
    }
    try:
        if command not in commands:
            raise ConfigError(f"unknown command '{command}'; valid: {', '.join(commands)}")
        return commands[command](rest)
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
