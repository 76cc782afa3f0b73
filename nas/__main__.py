"""Command line: ``python -m nas <command> [arguments...]``.

Hydra reads every argument after the command as an override, so the command is popped
here first and the rest handed to that command's ``@hydra.main``. Plugins add commands
through the ``nas_register_commands`` hook (``calibrate`` comes from the ``c_sim``
backend); every command, ``--help`` included, first loads and checks every plugin, so a
broken one stops the program with one line naming it (exit status 2).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.errors import ConfigError, NasError
from nas.plugin_manager import CORE_COMMANDS

USAGE = """\
usage: python -m nas <command> [arguments]
       python -m nas --version

Hardware-constrained neural architecture search for microcontrollers.

commands:
  search +hw=<profile> [key=value ...]
        Run a search on the chosen chip. Every argument is a Hydra override, e.g.
          python -m nas search +hw=cortex_m4 search.n_trials=40 sampler=nsga2
          python -m nas search -m +hw=cortex_m4,cortex_m7      (one run per chip)
        Common keys: search.n_trials, search.timeout_s, search.seed, search.epochs,
        sampler={samplers}, dataset=<name>, search_space=<name>,
        backend=<name>, compression=[<name>,...], study.name, storage.url,
        hydra.run.dir. `python -m nas search --help` shows the composed config.
  list [profiles|spaces|datasets|compression|backends|plugins]
        Show what can be selected (all sections when none is named).
  report RUN_DIR|URL ... [--out DIR]
        Compare runs (any targets, backends, storages): comparison.csv, report.md and
        a self-contained report.html with Pareto fronts, optimisation histories and
        per-layer memory and latency of the best model per target.
  finalize RUN_DIR [--top K] [--epochs N] [--teacher auto|none|DIR] [--out DIR]
        Train a search's best K architectures again with a longer recipe (the whole
        training split, augmentation, distillation from a cached teacher) and keep
        the best by validation accuracy; writes a run directory (RUN_DIR/final).
"""
FOOTER = """
Each run writes study.db, trials.csv, report.md and best/ to its run directory
(outputs/<date>_<hw> unless hydra.run.dir is given).
"""


#: Run directories named on the command line -> whether they existed before the command.
_RUN_DIR_EXISTED: dict[Path, bool] = {}


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _search_app(cfg: DictConfig) -> None:
    from nas.config import use_space_backend
    from nas.rundir import RunDir, mask_sweep_config
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
    mask_sweep_config()  # Hydra's multirun.yaml holds the command line's passwords
    guard = RunDir(run_dir, existed=_RUN_DIR_EXISTED.get(run_dir.resolve(), False))
    try:
        frame = run_search(cfg, run_dir, overrides, on_start=lambda: guard.start(cfg))
    except NasError as exc:
        if cfg.search.report:  # the first process; workers share its run directory
            guard.restore()
        print_error(exc)
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
    failed = all_failed(frame)
    if failed:
        print_error(failed)
        raise SystemExit(1)


def print_error(message: object) -> None:
    """One ``error: ...`` line on stderr, with every URL password masked."""
    from nas.storage import mask_url

    print(f"error: {mask_url(str(message))}", file=sys.stderr)


def all_failed(frame: Any) -> str:
    """When no trial of the study completed and some failed: one line that counts the
    failure reasons (most frequent first); otherwise empty."""
    from nas.record import REASON, STATE

    if not len(frame) or (frame[STATE] == "COMPLETE").any():
        return ""
    reasons = frame.loc[frame[STATE] == "FAIL", REASON].fillna("no reason recorded")
    if reasons.empty:
        return ""
    counts = reasons.astype(str).value_counts()
    summary = "; ".join(f"{n} x {reason}" for reason, n in counts.items())
    return f"every trial failed ({len(reasons)} of {len(frame)}): {summary}"


def search_command(args: list[str]) -> int:
    from nas.config import register_configs
    from nas.storage import mask_override_logs
    from nas.validate import check_search_args

    help_flags = {"--help", "-h", "--hydra-help", "--info", "--cfg", "-c"}
    if help_flags & set(args):
        register_configs()
    else:
        args = check_search_args(args)  # registers the configs it validates against
    for arg in args:  # a run directory the user named, and whether it was there before
        if arg.startswith("hydra.run.dir="):
            run_dir = Path(arg.split("=", 1)[1]).resolve()
            _RUN_DIR_EXISTED[run_dir] = run_dir.exists()
    sys.argv = ["python -m nas search", *args]
    mask_override_logs()  # a multirun logs each job's overrides, storage.url included
    try:
        _search_app()
    except SystemExit as exc:  # the search's own exit status: 1 or 2 (in-process callers)
        return exc.code if isinstance(exc.code, int) else 1
    return 0


LIST_HELP = """\
usage: python -m nas list [{sections}]

Show what can be selected on a search's command line: hardware profiles (+hw=NAME, with
their source file; broken files are marked INVALID), search spaces (search_space=NAME),
datasets (dataset=NAME), compression methods (compression=[NAME,...]), backends
(backend=NAME) and the installed plugins. All sections when none is named.

options:
  -h, --help  show this help and exit"""


def list_command(args: list[str]) -> int:
    from nas.listing import SECTIONS, render

    if {"-h", "--help"} & set(args):
        print(LIST_HELP.format(sections="|".join(SECTIONS)))
        return 0
    sections = args or list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown list section '{unknown[0]}'; valid: {', '.join(SECTIONS)}")
    print(render(sections))
    return 0


def report_command(args: list[str]) -> int:
    from nas.report_html import main as report_main

    return report_main(args)


def finalize_command(args: list[str]) -> int:
    from nas.finalize import main as finalize_main

    return finalize_main(args)


def plugin_commands() -> dict[str, Callable[[list[str]], int]]:
    """Commands contributed by plugins, after loading and checking every plugin."""
    from nas.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    pm.validate()
    return {name: cmd.run for name, cmd in pm.commands().items()}


def usage() -> str:
    """The ``--help`` text: core commands, then each plugin command with its plugin."""
    from nas.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    lines = []
    for name, cmd in pm.commands().items():
        lines.append(f"  {name} {cmd.usage}".rstrip())
        text = [*cmd.help.strip().splitlines(), f"(plugin {pm.command_owner(name)})"]
        lines += [" " * 8 + line for line in text]
    extra = "\nplugin commands:\n" + "\n".join(lines) + "\n" if lines else ""
    from nas.config import SAMPLERS

    return USAGE.format(samplers="|".join(SAMPLERS)) + extra + FOOTER


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        core = (search_command, list_command, report_command, finalize_command)
        commands: dict[str, Callable[[list[str]], int]] = {
            **dict(zip(CORE_COMMANDS, core, strict=True)),  # search, list, report, finalize
            **plugin_commands(),
        }
        if not args or args[0] in ("-h", "--help", "help"):
            print(usage())
            return 0 if args else 2
        if args[0] in ("-V", "--version"):
            from nas import __version__

            print(f"mcu-nas {__version__}")
            return 0
        command, rest = args[0], args[1:]
        if command not in commands:
            raise ConfigError(f"unknown command '{command}'; valid: {', '.join(commands)}")
        return commands[command](rest)
    except NasError as exc:
        print_error(exc)
        return 2
    except BrokenPipeError:  # `python -m nas list | head`: the reader has gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
