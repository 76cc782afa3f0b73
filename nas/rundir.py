"""The run directory of a ``search``: a command that fails on bad input leaves it as it was.

Hydra would write ``.hydra/`` and open the log file before the search function runs, so a
command line that fails later (an unreachable storage, a study with other objectives, a
dataset that cannot be loaded) would still leave files behind. The project's Hydra config
writes none (``hydra.output_subdir: null``). `RunDir` writes the three config files Hydra
would have written once the search has started and, when the search stops on bad input
before that, removes what this command added (an empty log file included) and puts back
the config files of an earlier run in the same directory. Only the first process of a
search does either: workers share its run directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from nas.errors import ConfigError
from nas.storage import mask_url

#: Where the config files go, as with Hydra's default ``hydra.output_subdir``.
CONFIG_DIR = ".hydra"
#: What Hydra writes to a multirun's sweep folder (the config, unresolved).
SWEEP_CONFIG = "multirun.yaml"
#: The log file Hydra opens in the run directory (``hydra.job.name`` is ``search``).
LOG_FILE = "search.log"


def _save_masked(cfg: DictConfig | ListConfig, path: Path) -> None:
    """``OmegaConf.save(cfg, path, resolve=False)``, with every URL password masked."""
    path.write_text(mask_url(OmegaConf.to_yaml(cfg, resolve=False)))


def mask_sweep_config() -> None:
    """In a multirun Hydra writes ``multirun.yaml`` to the sweep folder before any job runs,
    with the command line's values: mask the URL passwords in it (each job does; the
    rewrite is the same every time)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    path = Path(hc.runtime.output_dir).parent / SWEEP_CONFIG
    try:
        text = path.read_text()
        if mask_url(text) != text:
            path.write_text(mask_url(text))
    except OSError:
        pass  # not there (another sweep folder layout) or not ours to write


class RunDir:
    """What a search command found in its run directory, so that it can be restored."""

    def __init__(self, path: Path, existed: bool) -> None:
        self.path, self.existed = path, existed
        self.started = False
        self.before = {p.name for p in path.iterdir()} if path.is_dir() else set()
        config = path / CONFIG_DIR
        self.config_before = (
            {p.name: p.read_bytes() for p in config.iterdir() if p.is_file()}
            if config.is_dir()
            else None
        )

    def save_config(self, cfg: DictConfig) -> None:
        """Write ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` under ``.hydra/``,
        unresolved (an ``${oc.env:NAME}`` stays a reference) and with every URL password
        masked (`nas.storage.mask_url`)."""
        hc = HydraConfig.get()
        out = self.path / CONFIG_DIR
        out.mkdir(parents=True, exist_ok=True)
        _save_masked(cfg, out / "config.yaml")
        _save_masked(OmegaConf.create({"hydra": hc}), out / "hydra.yaml")
        _save_masked(OmegaConf.create(list(hc.overrides.task)), out / "overrides.yaml")

    def start(self, cfg: DictConfig) -> None:
        """The search's inputs are checked and its study is open: write the config files
        (unless this process is a worker, ``search.report=false``), and from here on
        `restore` leaves everything alone."""
        if cfg.search.report:
            try:
                self.save_config(cfg)
            except OSError as exc:
                raise ConfigError(
                    f"run directory '{self.path}' is not writable ({exc.strerror}); "
                    "choose another with hydra.run.dir=DIR"
                ) from None
        self.started = True

    def restore(self) -> None:
        """Undo this command's writes, unless the search got as far as `start`."""
        if self.started or not self.path.is_dir():
            return
        added = {p.name for p in self.path.iterdir()} - self.before
        log = self.path / LOG_FILE  # Hydra opens it before the search checks anything
        if log.is_file() and log.stat().st_size == 0:
            added.add(LOG_FILE)
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
