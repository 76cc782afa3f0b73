"""Checking a ``search`` command line before anything runs or is written.

Every problem is one `ConfigError` line that names the bad value and what would be valid:
override syntax, unknown group options (hardware profile, search space, dataset, backend,
compression method, sampler, storage), values of the wrong type, malformed or incomplete
hardware profiles, and a run directory that cannot be written. For ``-m`` sweeps every
combination is checked.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

from nas.config import SAMPLERS, STORAGES, register_configs, use_space_backend
from nas.errors import ConfigError, NasError
from nas.hardware import available_profiles, load_profile
from nas.plugin_manager import KINDS, get_plugin_manager

MAX_COMBINATIONS = 64
_NOISE = (
    "To append to your config",
    "full_key:",
    "reference_type",
    "object_type",
    "Set the environment variable",
    "Config search path",
    "Available options",
)


def group_options() -> dict[str, list[str]]:
    """Config group -> the names it accepts."""
    pm = get_plugin_manager()
    options = {kind: list(pm.registry(kind)) for kind in KINDS}
    options.update(hw=list(available_profiles()), sampler=list(SAMPLERS), storage=list(STORAGES))
    return options


def _one_line(exc: BaseException) -> str:
    """The messages of ``exc`` and its causes on one line, without Hydra's hints."""
    kept: list[str] = []
    while exc is not None:
        for ln in (x.strip() for x in str(exc).splitlines()):
            if ln and not ln.startswith(_NOISE) and ln not in kept:
                kept.append(ln)
        exc = exc.__cause__  # type: ignore[assignment]
    return "; ".join(kept) or "invalid value"


def parse(args: list[str]) -> list[Any]:
    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        raise ConfigError(f"cannot parse the overrides: {_one_line(exc)}") from None


def check_names(overrides: list[Any]) -> None:
    """Group options must exist; ``+hw`` must be given."""
    options = group_options()
    seen_hw = False
    for o in overrides:
        group = o.key_or_group
        if group not in options:
            continue
        seen_hw |= group == "hw"
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else o.value()
        for name in values if isinstance(values, list) else [values]:
            if str(name) not in options[group]:
                what = "hardware profile" if group == "hw" else group
                raise ConfigError(
                    f"unknown {what} '{name}' in '{o.input_line}'; "
                    f"available: {', '.join(options[group]) or '(none)'}"
                )
            if group == "hw":
                load_profile(str(name))  # a malformed file fails here, naming the field
    if not seen_hw:
        raise ConfigError(
            "no hardware profile chosen: add +hw=<profile>; available: " + ", ".join(options["hw"])
        )


def combinations(overrides: list[Any]) -> list[list[str]]:
    """Every override set a ``-m`` sweep expands to (at most `MAX_COMBINATIONS`)."""
    choices = []
    for o in overrides:
        if o.is_sweep_override():  # the key element keeps its +/++/~ prefix
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]


def check_config(args: list[str]) -> None:
    """Compose the config for ``args`` and validate what Hydra cannot."""
    from nas.search import objectives, profile_from_cfg
    from nas.spaces import check_supported

    try:
        with initialize_config_module("nas.conf", version_base="1.3"):
            cfg = compose("config", overrides=args)
    except Exception as exc:
        raise ConfigError(f"bad override in {' '.join(args)}: {_one_line(exc)}") from None
    try:
        hw = profile_from_cfg(cfg)
        space = get_plugin_manager().get("search_space", cfg.search_space.name)
        use_space_backend(cfg, args)
        check_supported(space, cfg.backend.name, list(cfg.compression))
        missing = [k for k in space.op_kinds if k not in hw.latency_lut]
        if missing:
            raise ConfigError(
                f"{hw.source_file}: latency_lut has no entry for {', '.join(missing)}, which "
                f"search space '{space.name}' needs"
            )
        if cfg.search.n_trials < 0 or cfg.search.workers < 1 or cfg.search.epochs < 1:
            raise ConfigError(
                "search.n_trials must be >= 0, search.workers >= 1 and search.epochs >= 1"
            )
        objectives(cfg)
    except NasError:
        raise
    except Exception as exc:  # an interpolation or value Hydra accepted but cannot resolve
        raise ConfigError(f"bad configuration for {' '.join(args)}: {_one_line(exc)}") from None


def check_run_dir(overrides: list[Any], multirun: bool) -> None:
    """The run (or sweep) directory, or its nearest existing parent, must be writable."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [o.value() for o in overrides if o.key_or_group == key]
    path = Path(str(given[-1])) if given else Path("outputs")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        why = "is not a directory" if not probe.is_dir() else "is not writable"
        raise ConfigError(f"{key} '{path}': '{probe}' {why}; choose another with {key}=DIR")


def check_search_args(args: list[str]) -> list[str]:
    """Validate a ``search`` command line; returns it with ``hw=`` turned into ``+hw=``."""
    args = [f"+{a}" if a.startswith("hw=") else a for a in args]
    flags = [a for a in args if a.startswith("-")]
    multirun = bool({"-m", "--multirun"} & set(flags))
    plain = [a for a in args if not a.startswith("-")]
    overrides = parse(plain)
    check_names(overrides)
    register_configs()
    for combo in combinations(overrides):
        check_config(combo)
    check_run_dir(overrides, multirun)
    return args
