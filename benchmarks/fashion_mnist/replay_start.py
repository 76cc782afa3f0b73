"""The random start a search run would queue today, without training: for each run
directory given, compose its configuration again (``.hydra/overrides.yaml``), draw the
start as ``nas.start.enqueue_cheap_first`` does and print its log line (how many
draws, which families and resolutions). The draws depend on the seed and the space
only, but the start stops drawing after ``START_SECONDS`` of wall time: run it on an
idle machine, or a busy one cuts the draws short.

    python benchmarks/fashion_mnist/replay_start.py outputs/fm_convs/m4-tight/search-s*/run
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import optuna
import yaml

from nas.config import register_configs
from nas.search import Objective, build_components
from nas.start import enqueue_cheap_first
from nas.validate import compose_config, parse, selected_profiles


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="search run directories")
    runs = p.parse_args(argv).runs
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("nas.start").setLevel(logging.INFO)
    for run in runs:
        saved = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        args = [str(o) for o in saved if not str(o).startswith("hydra.")]
        register_configs(selected_profiles(parse(args)))
        cfg = compose_config(args, f"{run}: ")
        print(f"{run}:", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            objective = Objective(cfg, build_components(cfg), Path(scratch))
            enqueue_cheap_first(optuna.create_study(), objective)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
