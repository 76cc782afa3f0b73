"""The run directory of a ``search``: a command that fails on bad input leaves it as it was.

Hydra would write ``.hydra/`` and the log file before the search function runs, so a
command line that fails later (an unreachable storage, a study with other objectives, a
dataset that cannot be loaded) would still leave files behind. The project's Hydra config
turns both off (``hydra.output_subdir: null``; the log file is opened on first use).
`RunDir` writes the three config files Hydra would have written and, when the search
stops on bad input before any trial ran, removes what this command added and puts back
the config files of an earlier run in the same directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

#: Where the config files go, as with Hydra's default ``hydra.output_subdir``.
CONFIG_DIR = ".hydra"
#: Written when a search has run trials: its presence means there is nothing to undo.
TRIALS_FILE = "trials.csv"


class RunDir:
    """What a search command found in its run directory, so that it can be restored."""

    def __init__(self, path: Path, existed: bool) -> None:
        self.path, self.existed = path, existed
        self.before = {p.name for p in path.iterdir()} if path.is_dir() else set()
        config = path / CONFIG_DIR
        self.config_before = (
            {p.name: p.read_bytes() for p in config.iterdir() if p.is_file()}
            if config.is_dir()
            else None
        )

    def save_config(self, cfg: DictConfig) -> None:
        """Write ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` under ``.hydra/``."""
        hc = HydraConfig.get()
        out = self.path / CONFIG_DIR
        out.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, out / "config.yaml", resolve=False)
        OmegaConf.save(OmegaConf.create({"hydra": hc}), out / "hydra.yaml", resolve=False)
        OmegaConf.save(OmegaConf.create(list(hc.overrides.task)), out / "overrides.yaml")

    def restore(self) -> None:
        """Undo this command's writes, unless it got as far as running trials."""
        if not self.path.is_dir():
            return
        added = {p.name for p in self.path.iterdir()} - self.before
        if TRIALS_FILE in added:
            return
        for name in added:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        if self.config_before is not None:
            config = self.path / CONFIG_DIR
            config.mkdir(exist_ok=True)
            for extra in config.iterdir():
                if extra.is_file() and extra.name not in self.config_before:
                    extra.unlink()
            for name, data in self.config_before.items():
                (config / name).write_bytes(data)
        if not self.existed:
            try:
                self.path.rmdir()  # only when empty
            except OSError:
                pass
