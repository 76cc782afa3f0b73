"""Typed configuration: dataclass schemas registered in Hydra's ConfigStore.

The primary config is ``nas/conf/config.yaml``. Groups and where their options come from:

- ``hw``: one option per hardware-profile YAML (`nas.hardware.available_profiles`); not
  in the defaults list, so it is selected with ``+hw=cortex_m4``. Only the selected
  profiles' files are read (`register_configs`).
- ``search_space``, ``dataset``, ``backend``: one option per registered plugin class; the
  fields of its ``Config`` dataclass become the options (``dataset.seed=1``).
- ``compression``: a list selection (``compression=[ptq]``), each method's options under
  ``compression.<name>``.
- ``sampler`` (`SAMPLERS`: ``tpe``, ``nsga2``, ``random``) and ``storage`` (`STORAGES`:
  ``sqlite``, ``journal``) are defined here.

Each schema has one source: the search defaults are the dataclasses below (the YAML
repeats none of them), the ``hw`` schema is derived from the fields of
`nas.hardware.HardwareProfile`, and the sampler and storage options are the tables
`SAMPLERS` and `STORAGES`, which `nas.validate` and `nas.search` read too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, get_origin

import optuna
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from nas.errors import ProfileError
from nas.hardware import (
    available_profiles,
    field_type,
    is_required,
    profile_fields,
    read_named_profile,
)
from nas.plugin_manager import KINDS, get_plugin_manager

#: ``search.strategy``: ``train`` trains every feasible candidate; ``supernet`` trains one
#: weight-sharing network once and scores candidates with inherited weights
#: (`nas.supernet`).
STRATEGIES = ("train", "supernet")
#: ``search.supernet.finalist_init``: finalists start from their inherited weights or
#: from a fresh initialisation.
FINALIST_INITS = ("inherited", "scratch")


@dataclass
class SupernetConfig:
    """``search.strategy=supernet`` (`nas.supernet`): how the supernet is trained (with
    ``search.batch_size``, ``search.lr``, ``search.weight_decay`` and ``search.seed``) and
    how its candidates are scored and finished."""

    #: The trained supernet (a checkpoint per epoch while it trains). None:
    #: ``supernet.pt`` in the run directory. A file trained for other space options,
    #: data or training options is refused; one that exists and matches is reused.
    path: str | None = None
    epochs: int = 10
    #: Random subnets per step, besides the largest and the smallest (the sandwich rule).
    random_subnets: int = 2
    #: In-place distillation: the smaller subnets learn the largest one's soft labels.
    distill: bool = True
    #: Draw the random subnets among those that fit the chip (the static cost and the
    #: search's limits, as for candidates): the weights the search will use are trained.
    sample_feasible: bool = True
    #: Training images (2 or more) each candidate's batch norm is recalibrated on.
    bn_images: int = 512
    #: How many candidates are then trained (``search.epochs``), compressed and scored by
    #: the backend like the trials of ``search.strategy=train``: spread along the front
    #: of inherited int8 accuracy against latency, or the most accurate when accuracy is
    #: the only objective.
    finalists: int = 3
    #: Finalists start from their inherited weights, or from scratch.
    finalist_init: str = "inherited"


@dataclass
class SearchConfig:
    """How long to search and how to train each candidate."""

    n_trials: int = 20
    #: False: candidates rejected before training (over SRAM, flash or
    #: ``max_latency_ms``, under ``min_macs``) do not count toward ``n_trials``, which
    #: then counts the ones trained; sampling stops after
    #: ``nas.progress.MAX_SAMPLED_PER_TRIAL`` x ``n_trials`` in any case.
    count_infeasible: bool = True
    timeout_s: float | None = None
    seed: int = 0
    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 1e-4
    save_models: bool = True
    workers: int = 1
    report: bool = True
    #: Architectures to evaluate first, each a dict of the space's choices (its
    #: ``arch_`` columns), e.g. ``search.enqueue=[{family:cnn,width:16,resolution:28}]``:
    #: a hand-designed model to compare with, or a found one to train again with another
    #: recipe (``search.n_trials=1``). An entry the space cannot take is refused up front.
    enqueue: list[Any] = field(default_factory=list)
    #: A new study's random start (TPE's ``sampler.n_startup_trials`` candidates, or one
    #: per family and resolution found when there are more, up to half the trials) is
    #: drawn at once among feasible architectures (static cost within the chip's limits,
    #: ``max_latency_ms`` and ``min_macs``; infeasible draws are passed over), spread
    #: over the model families and input resolutions the feasible draws hold (families
    #: take turns, none twice before each is in), and trained cheapest first (fewest
    #: MACs), so that the first results come in seconds rather than after the largest
    #: draw. false: the sampler's own random start, in the order drawn, feasible or not.
    cheap_first: bool = True
    #: What the sampler optimizes: ``[acc_int8, latency_ms]`` (the default: the Pareto
    #: front of accuracy against latency) or ``[acc_int8]`` (accuracy first: the most
    #: accurate model that fits, latency only reported). See `nas.search.OBJECTIVES`.
    objectives: list[str] = field(default_factory=lambda: ["acc_int8", "latency_ms"])
    #: A latency ceiling (ms, the profile's estimate): slower candidates are infeasible
    #: like those over the SRAM or flash limit, and are never trained. None: no ceiling.
    max_latency_ms: float | None = None
    #: A compute floor (MACs): candidates with fewer are rejected before training like
    #: those that do not fit, to spend training on models that use the chip. Under a
    #: memory budget most architectures of a space use a small part of the compute the
    #: budget allows, and more MACs usually buy accuracy (MCUNet, Lin et al. 2020).
    #: None: no floor.
    min_macs: int | None = None
    #: How training batches are augmented (`nas.train.AUGMENTS`: ``none``, ``crop``,
    #: ``crop_flip``); images only. ``python -m nas finalize`` picks the dataset's own.
    augment: str = "none"
    #: ``train`` (every feasible candidate is trained) or ``supernet`` (candidates inherit
    #: the weights of one trained supernet, `STRATEGIES`; ``search.enqueue`` entries are
    #: then scored like any candidate, and ``timeout_s`` bounds the candidates only).
    strategy: str = "train"
    supernet: SupernetConfig = field(default_factory=SupernetConfig)


@dataclass
class StudyConfig:
    """The Optuna study: its name within the storage, and how workers watch each other
    (see `nas.storage`): a heartbeat every ``heartbeat_s``; a ``RUNNING`` trial silent for
    ``grace_s`` is failed and, with ``retry_stale``, queued again."""

    name: str = "${hw.name}-${search_space.name}-${dataset.name}"
    heartbeat_s: float = 10.0
    grace_s: float = 60.0
    retry_stale: bool = True


@dataclass
class PrunerConfig:
    """Stop training a candidate whose validation accuracy is below the median of faster
    candidates at the same epoch, pruned ones included (`nas.pruner.ParetoMedianPruner`; of
    all candidates when latency is not an objective), once ``n_startup_trials`` such
    candidates exist and after ``n_warmup_epochs`` epochs."""

    enabled: bool = True
    n_startup_trials: int = 3
    n_warmup_epochs: int = 5


@dataclass
class SamplerConfig:
    """Options of a ``sampler``; `build` makes the Optuna sampler."""

    name: str

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        """The Optuna sampler with these options and ``seed``."""
        raise NotImplementedError


@dataclass
class TpeSamplerConfig(SamplerConfig):
    name: str = "tpe"
    n_startup_trials: int = 8
    multivariate: bool = True

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            n_startup_trials=self.n_startup_trials, multivariate=self.multivariate, seed=seed
        )


@dataclass
class Nsga2SamplerConfig(SamplerConfig):
    name: str = "nsga2"
    population_size: int = 10

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)


@dataclass
class RandomSamplerConfig(SamplerConfig):
    name: str = "random"

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


#: The ``sampler`` options: name (the schema's default ``name``) -> schema.
SAMPLERS: dict[str, type[SamplerConfig]] = {
    s.name: s for s in (TpeSamplerConfig, Nsga2SamplerConfig, RandomSamplerConfig)
}


@dataclass
class StorageConfig:
    """Options of a ``storage``: where the study lives (`nas.storage.storage_url`)."""

    name: str
    url: str | None = None


@dataclass
class SqliteStorageConfig(StorageConfig):
    """``url: null`` puts ``study.db`` (SQLite) in the run directory; any Optuna storage URL
    (``sqlite:///path.db``, ``postgresql://...``) shares one study between runs."""

    name: str = "sqlite"


@dataclass
class JournalStorageConfig(StorageConfig):
    """An Optuna journal file (``study.log`` in the run directory unless ``url`` names one,
    ``journal:///path/file.log``): safe for many processes on one file system."""

    name: str = "journal"


#: The ``storage`` options: name -> schema.
STORAGES: dict[str, type[StorageConfig]] = {
    s.name: s for s in (SqliteStorageConfig, JournalStorageConfig)
}


def _schema_field(f: dataclasses.Field[Any]) -> tuple[str, Any, Any]:
    """A `HardwareProfile` field as a Hydra schema field: mappings untyped inside
    (validation is `nas.hardware.profile_from_mapping`'s), required ones ``MISSING``."""
    t = field_type(f)
    t = dict[str, Any] if get_origin(t) is dict else t
    if f.default_factory is not dataclasses.MISSING:
        return f.name, t, field(default_factory=f.default_factory)
    return f.name, t, field(default=MISSING if is_required(f) else f.default)


#: Schema of a hardware profile as it appears under ``hw``: the fields of
#: `nas.hardware.HardwareProfile` a profile file holds, and the file it came from.
HardwareConfig = dataclasses.make_dataclass(
    "HardwareConfig",
    [*(_schema_field(f) for f in profile_fields()), ("source_file", str, field(default=""))],
)


@dataclass
class NasConfig:
    """Schema of the primary config."""

    search: SearchConfig = field(default_factory=SearchConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    hw: Any = MISSING
    search_space: Any = MISSING
    dataset: Any = MISSING
    sampler: Any = MISSING
    storage: Any = MISSING
    backend: Any = MISSING
    compression: Any = field(default_factory=dict)


def _named(cls: type, name: str) -> type:
    """A plugin's ``Config`` dataclass with a ``name`` field added (the selected option)."""
    return dataclasses.make_dataclass(
        f"{cls.__name__}Node", [("name", str, field(default=name))], bases=(cls,)
    )


def _hw_node(name: str) -> Any:
    """The ConfigStore node of profile ``name``: typed when valid, raw when not (so that
    selecting a malformed profile reaches `profile_from_cfg` and its clear error). A null
    value means the field's default, as in `nas.hardware.profile_from_mapping`; keys the
    schema does not know are kept untyped (`HardwareProfile.extra`)."""
    try:
        path, data, _ = read_named_profile(name)
    except ProfileError:
        return {"source_file": str(available_profiles().get(name, name))}
    known = {f.name for f in dataclasses.fields(HardwareConfig)}
    given = {k: v for k, v in data.items() if v is not None}
    node = OmegaConf.merge(
        OmegaConf.structured(HardwareConfig), {k: v for k, v in given.items() if k in known}
    )
    with open_dict(node):
        node.merge_with({k: v for k, v in given.items() if k not in known})
    node.source_file = str(path)
    return node


#: The keys a ``-m`` command line sweeps (``search.seed``, ``hw``...), set by
#: `nas.validate.check_search_args`; each job's folder is named by their values.
SWEPT_KEYS: list[str] = []


def sweep_job_name(task: Any, hw_name: str) -> str:
    """A multirun job's folder name after its number: ``key=value`` of every swept key in
    the job's overrides (``task``), comma-separated; the chip's name when nothing is
    swept. Passwords are masked and characters a folder name should not hold replaced."""
    from nas.storage import mask_url

    chosen = []
    for item in task:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key in SWEPT_KEYS:
            value = re.sub(r"[^\w.+-]", "_", mask_url(value))
            chosen.append(f"{key}={value}")
    return ",".join(chosen) or hw_name


def register_configs(profiles: Iterable[str] | None = None) -> None:
    """Fill the ConfigStore: schemas, plugin options and hardware profiles.

    Only the profiles named in ``profiles`` (what the command line selects) are read; None
    reads every available one (bounded per file by `nas.hardware.read_profile_file`)."""
    OmegaConf.register_new_resolver("nas_sweep_job", sweep_job_name, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="nas_schema", node=NasConfig)
    for name, schema in SAMPLERS.items():
        cs.store(group="sampler", name=name, node=schema)
    for name, storage in STORAGES.items():
        cs.store(group="storage", name=name, node=storage)
    pm = get_plugin_manager()
    for kind in KINDS:
        for name, cls in pm.registry(kind).items():
            node = _named(cls.Config, name)
            package = f"compression.{name}" if kind == "compression" else None
            cs.store(group=kind, name=name, node=node, package=package)
    names = available_profiles() if profiles is None else profiles
    for name in dict.fromkeys(names):
        cs.store(group="hw", name=name, node=_hw_node(name))


def plugin_config(cls: Any, cfg: DictConfig) -> Any:
    """The plugin's own ``Config`` instance from its config node (``name`` dropped)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    known = {f.name for f in dataclasses.fields(cls.Config)}
    return cls.Config(**{k: v for k, v in data.items() if k in known})


def backend_given(overrides: list[str]) -> bool:
    """Whether the command line chose a backend."""
    return any(o.split("=", 1)[0].lstrip("+~") == "backend" for o in overrides)


def use_space_backend(cfg: DictConfig, overrides: list[str]) -> str | None:
    """When the command line names no backend and the default cannot run the search
    space's models (e.g. ``bonsai`` on ``tflm``), switch to the first backend the space
    declares; returns its name, or ``None`` when nothing changed. An explicit backend is
    kept, and `nas.spaces.check_supported` refuses it if it does not fit."""
    pm = get_plugin_manager()
    space = pm.get("search_space", cfg.search_space.name)
    if backend_given(overrides) or space.backends is None or cfg.backend.name in space.backends:
        return None
    name = space.backends[0]
    cfg.backend = OmegaConf.structured(_named(pm.get("backend", name).Config, name))
    return name
