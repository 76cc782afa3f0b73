"""Checking a ``search`` command line before anything runs or is written.

Every problem is one `ConfigError` line that names the bad value and what would be valid:
override syntax, unknown group options (hardware profile, search space, dataset, backend,
compression method, sampler, storage), values of the wrong type, malformed or incomplete
hardware profiles, and a run directory that cannot be written. Values Hydra's types
accept but a search cannot use are refused too (`check_values`: negative or zero counts,
times and rates, a grace period of a few heartbeats, samplers Optuna refuses), as are
storage URLs that cannot keep the study (`check_storage`), ``search.enqueue`` entries the
search space cannot take (`check_space`) and datasets too small to train, validate and
test on (`check_dataset`). For ``-m`` sweeps every combination is checked.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from nas.config import (
    SAMPLERS,
    STORAGES,
    SWEPT_KEYS,
    plugin_config,
    register_configs,
    use_space_backend,
)
from nas.errors import ConfigError, NasError, one_line
from nas.hardware import available_profiles, load_profile
from nas.plugin_manager import KINDS, get_plugin_manager
from nas.train import AUGMENTS

if TYPE_CHECKING:
    from nas.data import Arrays

MAX_COMBINATIONS = 64


def group_options() -> dict[str, list[str]]:
    """Config group -> the names it accepts."""
    pm = get_plugin_manager()
    options = {kind: list(pm.registry(kind)) for kind in KINDS}
    options.update(hw=list(available_profiles()), sampler=list(SAMPLERS), storage=list(STORAGES))
    return options


def parse(args: list[str]) -> list[Any]:
    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        raise ConfigError(f"cannot parse the overrides: {one_line(exc)}") from None


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


def selected_profiles(overrides: list[Any]) -> list[str]:
    """The hardware profiles the overrides select (every value of a ``-m`` sweep): the
    only profile files a search reads."""
    names: list[str] = []
    for o in overrides:
        if o.key_or_group == "hw":
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            names += [str(v) for v in values]
    return names


def combinations(overrides: list[Any]) -> list[list[str]]:
    """Every override set a ``-m`` sweep expands to (at most `MAX_COMBINATIONS`)."""
    choices = []
    for o in overrides:
        if o.is_sweep_override():  # the key element keeps its +/++/~ prefix
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]


def compose_config(args: list[str], command: str = "") -> Any:
    """The configuration ``args`` compose to; a `ConfigError` naming the override Hydra
    refuses (``command``, e.g. ``"finalize: "``, begins the message)."""
    try:
        with initialize_config_module("nas.conf", version_base="1.3"):
            return compose("config", overrides=args)
    except Exception as exc:
        raise ConfigError(f"{command}bad override: {one_line(exc)}") from None


def check_config(args: list[str]) -> None:
    """Compose the config for ``args`` and validate what Hydra cannot."""
    from nas.search import objectives, profile_from_cfg
    from nas.spaces import check_latency_table, check_supported

    cfg = compose_config(args)
    try:
        hw = profile_from_cfg(cfg)
        space = get_plugin_manager().get("search_space", cfg.search_space.name)
        use_space_backend(cfg, args)
        check_supported(space, cfg.backend.name, list(cfg.compression))
        check_latency_table(space, hw)
        objectives(cfg)
        check_values(cfg)
        check_storage(cfg)
        data_choices, data = check_dataset(cfg)
        check_space(cfg, space, data, data_choices)
        check_strategy(cfg, space)
    except NasError:
        raise
    except Exception as exc:  # an interpolation or value Hydra accepted but cannot resolve
        raise ConfigError(f"bad configuration for {' '.join(args)}: {one_line(exc)}") from None


def check_run_dir(overrides: list[Any], multirun: bool) -> None:
    """The run (or sweep) directory, or its nearest existing parent, must be writable."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [o.value() for o in overrides if o.key_or_group == key]
    path = Path(str(given[-1])) if given else Path("outputs")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    why = "is not a directory" if not probe.is_dir() else "is not writable"
    if probe.is_dir() and os.access(probe, os.W_OK):
        try:  # root passes os.access everywhere, yet /proc or a read-only mount refuse
            os.rmdir(tempfile.mkdtemp(prefix=".nas_probe_", dir=probe))
            return
        except OSError as exc:
            why = f"cannot be written ({exc.strerror})"
    raise ConfigError(f"{key} '{path}': '{probe}' {why}; choose another with {key}=DIR")


def check_search_args(args: list[str]) -> list[str]:
    """Validate a ``search`` command line; returns it with ``hw=`` turned into ``+hw=``."""
    args = [f"+{a}" if a.startswith("hw=") else a for a in args]
    flags = [a for a in args if a.startswith("-")]
    multirun = bool({"-m", "--multirun"} & set(flags))
    plain = [a for a in args if not a.startswith("-")]
    overrides = parse(plain)
    SWEPT_KEYS[:] = [o.key_or_group for o in overrides if o.is_sweep_override()]
    check_names(overrides)
    register_configs(selected_profiles(overrides))
    for combo in combinations(overrides):
        check_config(combo)
    check_run_dir(overrides, multirun)
    return args


#: A grace period must cover more than this many heartbeats, or a busy worker's trials
#: would be taken for abandoned between two beats.
MIN_HEARTBEATS_PER_GRACE = 3
#: The largest ``search.seed`` the samplers accept (NumPy's seed range).
MAX_SEED = 2**32 - 1


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_values(cfg: Any) -> None:
    """Ranges Hydra's types cannot express: counts, times, rates and the study's clock."""
    s, st, p = cfg.search, cfg.study, cfg.pruner
    _require(
        s.n_trials >= 0 and s.workers >= 1 and s.epochs >= 1,
        "search.n_trials must be >= 0, search.workers >= 1 and search.epochs >= 1",
    )
    _require(
        s.timeout_s is None or s.timeout_s > 0,
        f"search.timeout_s={s.timeout_s} must be a positive number of seconds or null",
    )
    _require(0 <= s.seed <= MAX_SEED, f"search.seed={s.seed} must be in 0..{MAX_SEED}")
    _require(s.batch_size >= 1, f"search.batch_size={s.batch_size} must be >= 1")
    _require(s.lr > 0, f"search.lr={s.lr} must be > 0")
    _require(s.weight_decay >= 0, f"search.weight_decay={s.weight_decay} must be >= 0")
    _require(
        s.augment in AUGMENTS,
        f"search.augment={s.augment} is not valid; use {', '.join(AUGMENTS)}",
    )
    _require(st.heartbeat_s > 0, f"study.heartbeat_s={st.heartbeat_s} must be > 0 seconds")
    _require(
        st.grace_s > MIN_HEARTBEATS_PER_GRACE * st.heartbeat_s,
        f"study.grace_s={st.grace_s} must be more than {MIN_HEARTBEATS_PER_GRACE} heartbeats "
        f"(study.heartbeat_s={st.heartbeat_s}), or running trials are taken for abandoned",
    )
    _require(
        p.n_startup_trials >= 0 and p.n_warmup_epochs >= 0,
        "pruner.n_startup_trials and pruner.n_warmup_epochs must be >= 0",
    )
    _check_sampler(cfg)


def _check_sampler(cfg: Any) -> None:
    """Build the sampler once: Optuna refuses its own bad values (NSGA-II population)."""
    from nas.search import make_sampler

    node = cfg.sampler
    for key in ("n_startup_trials", "population_size"):
        value = node.get(key)
        low = 2 if key == "population_size" else 0
        _require(value is None or value >= low, f"sampler.{key}={value} must be >= {low}")
    try:
        make_sampler(cfg)
    except NasError:
        raise
    except Exception as exc:
        raise ConfigError(f"sampler={node.name}: {one_line(exc)}") from None


def check_storage(cfg: Any) -> None:
    """A storage URL that cannot hold the study, found without opening it: an unknown
    scheme, an in-memory SQLite database (lost when the run ends), a missing or
    unwritable folder. An unreachable server is found when the search opens it."""
    from nas.storage import RDB_SCHEMES, URL_ENV, mask_url

    url = cfg.storage.url or os.environ.get(URL_ENV)
    if not url:
        return
    shown = mask_url(str(url))
    scheme = str(url).split(":", 1)[0].split("+", 1)[0]
    if scheme not in (*RDB_SCHEMES, "journal"):
        raise ConfigError(
            f"storage.url '{shown}': unsupported scheme '{scheme}'; valid: sqlite:///FILE, "
            "journal:///FILE, postgresql://USER[:PASSWORD]@HOST/DB, mysql+pymysql://..."
        )
    if scheme not in ("sqlite", "journal"):
        return
    prefix = "journal://" if scheme == "journal" else str(url).split("://", 1)[0] + ":///"
    path = str(url)[len(prefix) :] if str(url).startswith(prefix) else ""
    if scheme == "sqlite" and (path in ("", ":memory:") or path.startswith("file::memory:")):
        raise ConfigError(
            f"storage.url '{shown}' is an in-memory database: the study would be lost when "
            "the run ends; use sqlite:///FILE or leave storage.url unset (study.db in the run "
            "directory)"
        )
    _check_file_target(Path(path), f"storage.url '{shown}'")


def _check_file_target(path: Path, what: str) -> None:
    """A file that is to be created or written: its folder exists and is writable."""
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a directory, not a file")
    if path.exists():
        _require(os.access(path, os.W_OK), f"{what}: {path} is not writable")
        return
    folder = path.parent
    _require(folder.is_dir(), f"{what}: folder {folder} does not exist")
    _require(os.access(folder, os.W_OK), f"{what}: folder {folder} is not writable")


def check_space(
    cfg: Any, space_cls: type, data: Arrays, data_choices: list[tuple[str, list[Any]]]
) -> None:
    """The space can sample an architecture, and each ``search.enqueue`` entry names only
    choices the space (or the dataset: ``data_choices``) has, with values it can take (on
    ``data``'s inputs: a feature map pins the resolution): an unknown key would be ignored
    and a random architecture trained instead."""
    import optuna

    from nas.spaces import pin_resolution

    space = space_cls(plugin_config(space_cls, cfg.search_space))
    pin_resolution(space, data)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    try:  # one random architecture: empty or impossible choices fail here, not per trial
        space.build(space.sample(study.ask()), 1, 2)
    except Exception as exc:
        raise ConfigError(f"search_space={space.name}: {one_line(exc)}") from None
    for entry in cfg.search.enqueue:
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"search.enqueue: {entry!r} is not a mapping of choices, e.g. "
                "search.enqueue=[{resolution:28,...}]"
            )
        entry = (
            OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else entry
        )
        assert isinstance(entry, Mapping)
        wanted = {str(k): v for k, v in entry.items()}
        for key, options in data_choices:
            if key in wanted and wanted.pop(key) not in options:
                raise ConfigError(
                    f"search.enqueue: {key}={entry[key]!r} is not a value dataset "
                    f"'{cfg.dataset.name}' searches; valid: {options}"
                )
        why = reproduces(space, wanted)
        if why:
            raise ConfigError(f"search.enqueue {wanted}: {why}")


def reproduces(space: Any, wanted: Mapping[str, Any], complete: bool = False) -> str | None:
    """Why the choices ``wanted`` are not an architecture ``space`` samples when they are
    enqueued (a key it does not have, a value it cannot take, an error; with
    ``complete``, a choice it makes that ``wanted`` leaves to the sampler), or None."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(dict(wanted))
    trial = study.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            space.sample(trial)
        except Exception as exc:  # noqa: BLE001 - said in the message
            return one_line(exc)
    for key, value in wanted.items():
        if key not in trial.params:
            return (
                f"'{key}' is not a choice of search space '{space.name}' for this "
                f"architecture; its choices: {', '.join(trial.params)}"
            )
        if trial.params[key] != value:
            valid = getattr(trial.distributions[key], "choices", None)
            return f"{key}={value!r} is not a value search space '{space.name}' can take" + (
                f"; valid: {list(valid)}" if valid else ""
            )
    unnamed = [key for key in trial.params if key not in wanted]
    if complete and unnamed:
        return (
            f"search space '{space.name}' also chooses {', '.join(unnamed)}, which the "
            "architecture does not name (a run of an older version of the space?)"
        )
    return None


def check_strategy(cfg: Any, space_cls: type) -> None:
    """``search.strategy`` and, for ``supernet``, its options, a space that has a supernet
    and a ``search.supernet.path`` that can be read or written."""
    from nas.config import FINALIST_INITS, STRATEGIES

    s, sn = cfg.search, cfg.search.supernet
    _require(
        s.strategy in STRATEGIES,
        f"search.strategy={s.strategy} is not a strategy; valid: {', '.join(STRATEGIES)}",
    )
    _require(sn.epochs >= 1, f"search.supernet.epochs={sn.epochs} must be >= 1")
    _require(
        sn.random_subnets >= 0,
        f"search.supernet.random_subnets={sn.random_subnets} must be >= 0",
    )
    _require(sn.finalists >= 0, f"search.supernet.finalists={sn.finalists} must be >= 0")
    _require(
        sn.finalist_init in FINALIST_INITS,
        f"search.supernet.finalist_init={sn.finalist_init} is not valid; valid: "
        + ", ".join(FINALIST_INITS),
    )
    if s.strategy != "supernet":
        return
    space = space_cls(plugin_config(space_cls, cfg.search_space))
    if space.supernet(1, 2) is None:
        raise ConfigError(
            f"search.strategy=supernet: search space '{space.name}' has no supernet; use "
            "search.strategy=train or a space that has one (search_space=mobilenet)"
        )
    _require(sn.bn_images >= 2, f"search.supernet.bn_images={sn.bn_images} must be >= 2")
    if sn.path:
        path = Path(str(sn.path))
        what = f"search.supernet.path={path}"
        if path.exists():  # a trained one is only read
            _require(path.is_file(), f"{what} is not a regular file")
            _require(os.access(path, os.R_OK), f"{what} is not readable")
        else:
            _check_file_target(path, what)


def check_dataset(cfg: Any) -> tuple[list[tuple[str, list[Any]]], Arrays]:
    """Load the dataset once (the search reuses it): missing files, bad options and splits
    too small to train, validate and test on are found before anything is written."""
    from nas.data import IMAGES
    from nas.frontend_c import frontend_cost
    from nas.search import load_dataset, profile_from_cfg
    from nas.spaces import check_kind

    pm = get_plugin_manager()
    cls = pm.get("dataset", cfg.dataset.name)
    dataset = cls(plugin_config(cls, cfg.dataset))
    data = load_dataset(dataset)
    choices = dataset.choices()
    if choices and cfg.search.strategy == "supernet":
        raise ConfigError(
            f"search.strategy=supernet trains on one data set; dataset '{dataset.name}' "
            f"searches {', '.join(n for n, _ in choices)} too: use search.strategy=train"
        )
    space = pm.get("search_space", cfg.search_space.name)
    check_kind(space, data.kind)
    if cfg.search.augment != "none" and data.kind != IMAGES:
        raise ConfigError(
            f"search.augment={cfg.search.augment} shifts and mirrors images; dataset "
            f"'{dataset.name}' gives {data.kind}: use search.augment=none"
        )
    if data.frontend is not None:  # its cost on this chip must be known
        frontend_cost(data.frontend, profile_from_cfg(cfg))
    return choices, data
