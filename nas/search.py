"""The search loop: one Optuna study over a search space on one chip.

Every trial walks the line of ``docs/architecture.md``: sample -> build -> trace -> static
cost -> feasibility (infeasible: stop, no training) -> train -> compression pipeline ->
backend score -> save; `Objective` has one method per step, and `feasibility` is a pure
function of the static cost, the profile and the search settings.

Objectives (``search.objectives``): maximize ``acc_int8`` (validation accuracy of the int8
model) and minimize ``latency_ms``, or maximize ``acc_int8`` alone (the most accurate model
that fits). SRAM and flash limits, and when set ``search.max_latency_ms`` and
``search.min_macs`` (a compute floor), are Optuna constraints (``trial.set_constraint``),
set from the static cost before any training, so the sampler learns what does not fit.
Everything a trial produces is a user attribute in the storage, named in `nas.record`;
`nas.report` reads them.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.study import StudyDirection
from torch import nn

from nas import codegen, firmware, report, workers
from nas.backends import REQUIRED_METRICS, BaseBackend
from nas.compression import (
    BaseCompressionMethod,
    Candidate,
    Plan,
    measure,
    order,
    predict,
    run_pipeline,
)
from nas.config import SAMPLERS, SearchConfig, plugin_config
from nas.cost import Cost
from nas.data import Arrays, BaseDataset, check_arrays, one_vs_rest
from nas.errors import ConfigError, NasError, TrialError
from nas.frontend_c import frontend_cost
from nas.graph import Graph
from nas.hardware import HardwareProfile, profile_from_mapping
from nas.interrupt import CTRL_C
from nas.plugin_manager import PluginManager, get_plugin_manager
from nas.progress import Progress
from nas.pruner import ParetoMedianPruner
from nas.record import (
    ACC_FLOAT,
    ACC_FLOAT_TEST,
    ACC_INT8,
    ACC_INT8_INHERITED,
    AFTER_COMPRESSION,
    ARCH,
    COMPRESS_S,
    DECODED_SUFFIX,
    DUPLICATE_OF,
    FAIL_REASON,
    FAMILY,
    FEASIBLE,
    FINALIST_OF,
    FITS_UNCOMPRESSED,
    HEARTBEAT,
    INFEASIBLE_REASON,
    INPUT_HW,
    LATENCY_MS,
    MEASURED_BY_BACKEND,
    NOT_REPEATED,
    PREDICTED,
    PREDICTED_SUFFIX,
    PRUNE_REASON,
    RETRY_OF,
    SCORE_S,
    SCORED_BY,
    SUPERNET,
    TRAIN_S,
    UNCOMPRESSED_SUFFIX,
    VAL_ACC_CURVE,
    check_plugin_metrics,
)
from nas.spaces import (
    BaseSearchSpace,
    Supernet,
    build_model,
    check_kind,
    check_supported,
    pin_resolution,
)
from nas.start import enqueue_cheap_first
from nas.storage import Heartbeat, fail_stale_trials, mask_url, open_storage, storage_url
from nas.supernet import (
    bn_images,
    int8_val_accuracy,
    open_supernet,
    recalibrate_bn,
    train_supernet,
)
from nas.train import TrainSettings, accuracy

log = logging.getLogger(__name__)
#: Each objective a search may optimize, and its direction.
OBJECTIVES = {ACC_INT8: StudyDirection.MAXIMIZE, LATENCY_MS: StudyDirection.MINIMIZE}
#: The ``search.objectives`` a search accepts: accuracy vs latency, or accuracy first.
VALID_OBJECTIVES = ([ACC_INT8, LATENCY_MS], [ACC_INT8])


def objectives(cfg: DictConfig) -> list[str]:
    """The validated ``search.objectives``."""
    names = [str(n) for n in cfg.search.objectives]
    if names not in VALID_OBJECTIVES:
        valid = " or ".join(f"[{','.join(v)}]" for v in VALID_OBJECTIVES)
        raise ConfigError(f"search.objectives=[{','.join(names)}] is not valid; use {valid}")
    cap = cfg.search.max_latency_ms
    if cap is not None and not cap > 0:
        raise ConfigError(f"search.max_latency_ms={cap} must be a positive number of ms or null")
    floor = cfg.search.min_macs
    if floor is not None and not floor > 0:
        raise ConfigError(f"search.min_macs={floor} must be a positive number of MACs or null")
    return names


@dataclass
class Components:
    """Everything a trial needs, built once from the config."""

    hw: HardwareProfile
    space: BaseSearchSpace
    data: Arrays
    methods: list[BaseCompressionMethod]
    backend: BaseBackend
    #: The dataset itself: its `BaseDataset.choices` are searched with the network.
    dataset: BaseDataset | None = None


def profile_from_cfg(cfg: DictConfig) -> HardwareProfile:
    """The validated profile under ``cfg.hw`` (command-line overrides included)."""
    data = OmegaConf.to_container(cfg.hw, resolve=True)
    assert isinstance(data, dict)
    return profile_from_mapping(data, str(data.get("source_file") or "hw"))


def build_components(cfg: DictConfig, pm: PluginManager | None = None) -> Components:
    """The profile, space, dataset, compression methods and backend ``cfg`` selects."""
    pm = pm or get_plugin_manager()

    def make(kind: str, node: DictConfig) -> Any:
        cls = pm.get(kind, node.name)
        return cls(plugin_config(cls, node))

    methods = [make("compression", node) for node in cfg.compression.values()]
    check_supported(
        pm.get("search_space", cfg.search_space.name), cfg.backend.name, [m.name for m in methods]
    )
    hw, backend = profile_from_cfg(cfg), make("backend", cfg.backend)
    backend.check(hw)
    for method in methods:
        method.check(hw, backend.name, methods)
    space = make("search_space", cfg.search_space)
    for note in space.restrict(hw, backend.name, methods):
        log.warning("search_space=%s: %s", space.name, note)
    dataset = make("dataset", cfg.dataset)
    data = load_dataset(dataset)
    check_kind(type(space), data.kind)
    pin_resolution(space, data)
    check_predictions(space, data, hw, order(methods))
    return Components(
        hw=hw,
        space=space,
        data=data,
        methods=order(methods),
        backend=backend,
        dataset=dataset,
    )


def check_predictions(
    space: BaseSearchSpace,
    data: Arrays,
    hw: HardwareProfile,
    methods: list[BaseCompressionMethod],
) -> None:
    """Predict the compression of one architecture of the space before anything runs, so
    that options a method cannot apply to this space's models (a `ConfigError` from its
    ``predict``) stop the run with one line instead of failing every trial. Any other
    error is left to the trials, which record it."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    try:
        spec = space.sample(trial)
        module, shape = build_model(
            space, spec, data.in_channels, data.num_classes, data.kind, data.fixed_hw
        )
        predict(methods, uncompressed_plan(space, module, shape, "check", hw, space.cost))
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a trial will fail with it and say why
        return


def uncompressed_plan(
    space: BaseSearchSpace,
    module: nn.Module,
    shape: tuple[int, ...],
    name: str,
    hw: HardwareProfile,
    chip_cost: Callable[[nn.Module, Graph | None, HardwareProfile], Cost],
) -> Plan:
    """The `Plan` of ``module`` as built (int8, uncompressed), whose structures are traced
    by the space and costed by ``chip_cost``: where compression predictions start."""

    def restructure(new: nn.Module) -> tuple[Graph | None, Cost]:
        graph = space.trace(new, shape, name)
        return graph, chip_cost(new, graph, hw)

    graph, cost = restructure(module)
    return Plan.plain(module, graph, cost, hw, restructure)


#: The last dataset loaded, by (name, options): command-line validation loads it first.
_LOADED: dict[tuple[str, str], Arrays] = {}


def load_dataset(dataset: Any) -> Arrays:
    """The dataset's arrays (one-vs-rest when ``positive_class`` is set); any failure of
    its loader becomes one clear `ConfigError`."""
    key = (dataset.name, repr(dataset.config))
    if key in _LOADED:
        return _LOADED[key]
    try:
        data = dataset.load()
        positive = getattr(dataset.config, "positive_class", None)
        data = data if positive is None else one_vs_rest(data, positive)
        _LOADED.clear()  # keep one dataset: validation loads it, the search reuses it
        _LOADED[key] = check_arrays(data, dataset.name)
        return data
    except NasError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"dataset '{dataset.name}': cannot load ({type(exc).__name__}: {exc})"
        ) from None


def make_sampler(cfg: DictConfig) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``cfg.sampler`` names (`nas.config.SAMPLERS`), seeded."""
    node = OmegaConf.to_container(cfg.sampler, resolve=True)
    assert isinstance(node, dict)
    options = {str(k): v for k, v in node.items()}
    schema = SAMPLERS.get(str(options.get("name")))
    if schema is None:
        valid = ", ".join(SAMPLERS)
        raise ConfigError(f"unknown sampler '{options.get('name')}'; valid: {valid}")
    return schema(**options).build(cfg.search.seed)


class Feasibility(NamedTuple):
    """Whether a candidate may be trained, decided from its static cost alone."""

    #: Optuna constraint values: relative excess over each limit (> 0 breaks it).
    constraints: dict[str, float]
    #: Which limits it breaks and by how much; empty when it fits.
    reason: str


def feasibility(cost: Cost, hw: HardwareProfile, search: SearchConfig | DictConfig) -> Feasibility:
    """The constraints and the infeasibility reason of ``cost`` on ``hw``: the SRAM and
    flash limits, and the search's ``max_latency_ms`` and ``min_macs`` when set."""
    constraints, reason = cost.violations(hw), cost.infeasible_reason(hw)
    reasons = [reason] if reason else []
    if (cap := search.max_latency_ms) is not None:
        constraints["latency"] = (cost.latency_ms - cap) / cap
        if cost.latency_ms > cap:
            reasons.append(f"latency {cost.latency_ms:.2f} ms > {cap:g} ms")
    if (floor := search.min_macs) is not None:
        constraints["macs_floor"] = (floor - cost.macs) / floor
        if cost.macs < floor:
            reasons.append(f"{cost.macs:,} MACs < search.min_macs={floor:,}")
    return Feasibility(constraints, "; ".join(reasons))


@dataclass
class Sampled:
    """A sampled candidate, built and untrained, with the data at its resolution."""

    name: str
    spec: dict[str, Any]
    module: nn.Module
    data: Arrays
    #: The NCHW input shape it is traced with (batch 1).
    shape: tuple[int, int, int, int]


def set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Record every item of ``attrs`` as a user attribute of ``trial``."""
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def trial_seed(search_seed: int, trial_number: int) -> int:
    """The torch seed of one trial: its initial weights and its training order."""
    return search_seed * 1000 + trial_number


class ShadowTrial:
    """An Optuna trial whose user attributes are also kept here, so that a result can
    still be recorded when another worker finished the trial meanwhile (its writes then
    fail with `optuna.exceptions.UpdateFinishedTrialError` and are only kept here)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.attrs: dict[str, Any] = {}
        self.taken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trial, name)

    def _write(self, write: Callable[[str, Any], None], key: str, value: Any) -> None:
        if self.taken:
            return
        try:
            write(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.taken = True

    def set_user_attr(self, key: str, value: Any) -> None:
        """Record ``key`` on the trial (and here)."""
        self.attrs[key] = value
        self._write(self.trial.set_user_attr, key, value)

    def set_constraint(self, key: str, value: float) -> None:
        """Set an Optuna constraint (lost when the trial was taken: rare, set early)."""
        self._write(self.trial.set_constraint, key, value)


class Objective:
    """Callable for `optuna.Study.optimize`: one candidate from sample to score.

    `_run` is the trial top-down, one method per step: sample, static cost, feasibility,
    train, compress, score, save. Each step records what it found on the trial (the names
    of `nas.record`) and hands plain data to the next.
    """

    def __init__(self, cfg: DictConfig, comp: Components, run_dir: Path) -> None:
        self.cfg = cfg
        self.comp = comp
        self.run_dir = run_dir
        self._resized: dict[int, Arrays] = {}
        #: Choices of the data searched with the network, and the data per their values.
        self.data_choices = comp.dataset.choices() if comp.dataset is not None else []
        self._variants: dict[tuple[Any, ...], Arrays] = {}
        self._frontends: dict[Any, dict[str, float]] = {}
        self._backends: dict[str, BaseBackend] = {comp.backend.name: comp.backend}
        #: The new trial that holds the result of a trial another worker took meanwhile.
        self.recovered: optuna.trial.FrozenTrial | None = None
        #: ``search.strategy=supernet``: the trained supernet candidates inherit from, and
        #: the seed of their scoring (the supernet's: the same in every worker).
        self.supernet: Supernet | None = None
        self.score_seed = 0
        self.objectives = objectives(cfg)
        p, by_latency = cfg.pruner, LATENCY_MS in self.objectives
        self.pruner = (
            ParetoMedianPruner(p.n_startup_trials, p.n_warmup_epochs, by_latency)
            if p.enabled
            else None
        )

    def data_at(self, size: int) -> Arrays:
        """The dataset resized to ``size`` (cached per size)."""
        if size not in self._resized:
            self._resized[size] = self.comp.data.resized(size)
        return self._resized[size]

    def base_data(self, spec: dict[str, Any]) -> Arrays:
        """The dataset for the data choices in ``spec`` (the loaded one without them)."""
        values = {name: spec[name] for name, _ in self.data_choices if name in spec}
        if not values:
            return self.comp.data
        key = tuple(sorted(values.items()))
        if key not in self._variants:
            dataset = self.comp.dataset
            assert dataset is not None
            data = dataset.variant(values)
            positive = getattr(dataset.config, "positive_class", None)
            data = data if positive is None else one_vs_rest(data, positive)
            self._variants[key] = check_arrays(data, dataset.name)
        return self._variants[key]

    def data_for(self, spec: dict[str, Any]) -> Arrays:
        """The data a candidate trains on: its data choices, at its resolution."""
        base = self.base_data(spec)
        size = self.comp.space.resolution(spec)
        return self.data_at(size) if base is self.comp.data else base.resized(size)

    def values(self, acc: float, latency_ms: float) -> list[float]:
        """The trial's objective values, in ``search.objectives`` order."""
        scores = {ACC_INT8: acc, LATENCY_MS: latency_ms}
        return [scores[name] for name in self.objectives]

    def __call__(self, trial: optuna.Trial) -> list[float]:
        storage = trial.study._storage  # noqa: SLF001 - heartbeats write to the trial directly
        shadow = ShadowTrial(trial)
        try:
            with Heartbeat(storage, trial._trial_id, self.cfg.study.heartbeat_s):
                values = self._run(shadow)  # type: ignore[arg-type]
        except optuna.TrialPruned:
            self.keep_if_taken(shadow, optuna.trial.TrialState.PRUNED)
            raise
        except KeyboardInterrupt:
            shadow.set_user_attr(FAIL_REASON, "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
                exc = TrialError("the trial was finished by another worker")
            reason = str(exc) if isinstance(exc, NasError) else f"{type(exc).__name__}: {exc}"
            shadow.set_user_attr(FAIL_REASON, reason)
            self.keep_if_taken(shadow, optuna.trial.TrialState.FAIL)
            raise
        if self.keep_if_taken(shadow, optuna.trial.TrialState.COMPLETE, values):
            raise TrialError(f"trial {trial.number} was taken by another worker")
        return values

    def keep_if_taken(
        self,
        shadow: ShadowTrial,
        state: optuna.trial.TrialState,
        values: list[float] | None = None,
    ) -> bool:
        """When another worker marked this trial abandoned while this process was paused
        (SIGSTOP, a suspended laptop, a long pause), Optuna can no longer be told its result:
        record the result as a new trial, and leave it in `recovered` for the search loop.
        True when it did."""
        trial = shadow.trial
        frozen = trial.study._storage.get_trial(trial._trial_id)  # noqa: SLF001
        if frozen.state == optuna.trial.TrialState.RUNNING:
            return False
        attrs = {**frozen.user_attrs, **shadow.attrs}
        attrs.pop(HEARTBEAT, None)
        if state != optuna.trial.TrialState.FAIL:
            attrs.pop(FAIL_REASON, None)
        new = optuna.trial.create_trial(
            state=state,
            values=values if state == optuna.trial.TrialState.COMPLETE else None,
            params=frozen.params,
            distributions=frozen.distributions,
            user_attrs=attrs,
            system_attrs=frozen.system_attrs,
            intermediate_values=frozen.intermediate_values,
        )
        trial.study.add_trial(new)
        self.recovered = trial.study.get_trials(deepcopy=False)[-1]
        log.warning(
            "trial %d was marked abandoned by another worker while this one was paused; its "
            "result (%s) is recorded as trial %d",
            trial.number,
            state.name,
            self.recovered.number,
        )
        return True

    def _run(self, trial: optuna.Trial) -> list[float]:
        """The trial, step by step; the objective values."""
        sampled = self.sample(trial)
        plain, cost = self.static_cost(trial, sampled)
        if not self.check_feasible(trial, cost):
            return self.values(0.0, cost.latency_ms)
        inherit = self.supernet is not None and FINALIST_OF not in trial.user_attrs
        if (twin := trained_twin(trial, inherit)) is not None:
            return self.repeat(trial, twin)
        if inherit:
            return self.values(self.inherit(trial, sampled), cost.latency_ms)
        settings = self.train(trial, sampled, cost.latency_ms)
        compressed = self.compress(trial, sampled, settings)
        measured, fits = self.recost(trial, plain, cost, compressed)
        cost = measured.cost
        if not fits:
            return self.values(0.0, cost.latency_ms)
        metrics = self.score(compressed, cost, decoded=any(s.decoders for s in measured.stored))
        set_attrs(trial, metrics)
        if self.cfg.search.save_models:
            self.save(trial.number, compressed, cost, metrics)
        return self.values(float(metrics[ACC_INT8]), cost.latency_ms)

    def sample(self, trial: optuna.Trial) -> Sampled:
        """Sample a spec from the space and build its module (untrained)."""
        space = self.comp.space
        spec = space.sample(trial)
        spec.update({n: trial.suggest_categorical(n, opts) for n, opts in self.data_choices})
        trial.set_user_attr(ARCH, spec)
        trial.set_user_attr(FAMILY, space.family(spec))
        data = self.data_for(spec)
        if self.data_choices and data.fixed_hw is not None:
            trial.set_user_attr(INPUT_HW, list(data.fixed_hw))
        torch.manual_seed(trial_seed(self.cfg.search.seed, trial.number))  # initial weights
        module, shape = build_model(
            space, spec, data.in_channels, data.num_classes, data.kind, data.fixed_hw
        )
        finalist = FINALIST_OF in trial.user_attrs
        inherit = self.cfg.search.supernet.finalist_init == "inherited"
        if finalist and self.supernet is not None and inherit:
            self.supernet.extract(spec, module)
        return Sampled(f"trial {trial.number}", spec, module, data, shape)

    def static_cost(self, trial: optuna.Trial, cand: Sampled) -> tuple[Cost, Cost]:
        """Trace the candidate, cost its graph on the chip and predict what the selected
        compression makes of it; records both. Returns (uncompressed, predicted)."""
        plain, cost = self.cost_of(cand.module, cand.shape, cand.name, cand.data)
        set_attrs(trial, cost.as_dict())
        set_attrs(trial, {k + PREDICTED_SUFFIX: getattr(cost, k) for k in PREDICTED})
        if cost != plain:
            set_attrs(trial, {k + UNCOMPRESSED_SUFFIX: v for k, v in plain.as_dict().items()})
            fits = not feasibility(plain, self.comp.hw, self.cfg.search).reason
            trial.set_user_attr(FITS_UNCOMPRESSED, fits)
        return plain, cost

    def cost_of(
        self, module: nn.Module, shape: tuple[int, ...], name: str, data: Arrays
    ) -> tuple[Cost, Cost]:
        """The static cost of ``module`` (for ``data``) on the chip, uncompressed, and as
        the selected compression methods predict it (`nas.compression.predict`)."""
        plan = uncompressed_plan(
            self.comp.space,
            module,
            shape,
            name,
            self.comp.hw,
            lambda m, graph, _hw: self.chip_cost(m, graph, data),
        )
        return plan.cost, predict(self.comp.methods, plan).cost

    def chip_cost(self, module: nn.Module, graph: Graph | None, data: Arrays) -> Cost:
        """The space's cost of the model on the chip, plus that of ``data``'s front-end."""
        cost = self.comp.space.cost(module, graph, self.comp.hw)
        if data.frontend is None:
            return cost
        if data.frontend not in self._frontends:
            self._frontends[data.frontend] = frontend_cost(data.frontend, self.comp.hw)
        return cost.with_frontend(self._frontends[data.frontend])

    def spec_cost(self, spec: dict[str, Any]) -> Cost:
        """The static cost of the architecture ``spec``, built untrained."""
        d = self.base_data(spec)
        module, shape = build_model(
            self.comp.space, spec, d.in_channels, d.num_classes, d.kind, d.fixed_hw
        )
        return self.cost_of(module, shape, "subnet", d)[1]

    def fits(self, spec: dict[str, Any]) -> bool:
        """Whether the architecture ``spec`` is feasible, from its static cost alone."""
        return self.cost_fits(self.spec_cost(spec))

    def cost_fits(self, cost: Cost) -> bool:
        """Whether a candidate of static ``cost`` is feasible (`feasibility`)."""
        return not feasibility(cost, self.comp.hw, self.cfg.search).reason

    def check_feasible(self, trial: optuna.Trial, cost: Cost) -> bool:
        """Set the Optuna constraints and record whether the candidate fits (and why
        not); True when it is to be trained."""
        verdict = feasibility(cost, self.comp.hw, self.cfg.search)
        for key, value in verdict.constraints.items():
            trial.set_constraint(key, value)
        trial.set_user_attr(FEASIBLE, not verdict.reason)
        trial.set_user_attr(TRAIN_S, 0.0)
        if verdict.reason:
            trial.set_user_attr(INFEASIBLE_REASON, verdict.reason)
        return not verdict.reason

    def inherit(self, trial: optuna.Trial, cand: Sampled) -> float:
        """Score the candidate with the weights it inherits from the supernet: batch norm
        recalibrated, int8 post-training quantization, validation accuracy (`nas.supernet`).
        Records ``acc_int8`` and ``scored_by=supernet``; no training, no backend."""
        assert self.supernet is not None
        started = time.perf_counter()
        seed = self.score_seed
        self.supernet.extract(cand.spec, cand.module)
        recalibrate_bn(cand.module, bn_images(cand.data, self.cfg.search.supernet.bn_images, seed))
        graph = self.comp.space.trace(cand.module, cand.shape, cand.name)
        acc = int8_val_accuracy(graph, cand.data, seed)
        set_attrs(
            trial,
            {ACC_INT8: acc, SCORED_BY: SUPERNET, SCORE_S: time.perf_counter() - started},
        )
        return acc

    def train(self, trial: optuna.Trial, cand: Sampled, latency_ms: float) -> TrainSettings:
        """Train the candidate's module (the pruner may stop it: `optuna.TrialPruned`);
        records the training time. Returns the recipe, which compression methods that
        fine-tune reuse."""
        s = self.cfg.search
        seed = trial_seed(s.seed, trial.number)
        settings = TrainSettings(s.epochs, s.batch_size, s.lr, s.weight_decay, seed, s.augment)
        started = time.perf_counter()
        on_epoch = self.epoch_callback(trial, latency_ms, started)
        self.comp.space.fit(cand.module, cand.data, settings, on_epoch)
        trial.set_user_attr(TRAIN_S, time.perf_counter() - started)
        return settings

    def epoch_callback(
        self, trial: optuna.Trial, latency_ms: float, started: float
    ) -> Callable[[int, float], None]:
        """What runs after each epoch: Ctrl-C check, the validation curve recorded, and
        the pruner's verdict (a pruned trial records why and how long it trained)."""
        curve: list[float] = []
        finalist = FINALIST_OF in trial.user_attrs  # the chosen few are trained to the end
        pruner = None if finalist else self.pruner

        def on_epoch(epoch: int, acc: float) -> None:
            CTRL_C.check()
            curve.append(acc)
            trial.set_user_attr(VAL_ACC_CURVE, curve)
            if pruner and pruner.should_prune(trial.study, epoch, acc, latency_ms):
                why = pruner.reason(epoch, acc)
                trial.set_user_attr(TRAIN_S, time.perf_counter() - started)
                trial.set_user_attr(PRUNE_REASON, why)
                raise optuna.TrialPruned(why)

        return on_epoch

    def compress(self, trial: optuna.Trial, cand: Sampled, settings: TrainSettings) -> Candidate:
        """Run the compression pipeline on the trained candidate; it must end quantized.
        The float accuracies are those of the model quantization starts from: trained,
        then pruned or distilled where those methods are selected."""
        # Traced again: the trained batch-norm statistics fold into the graph.
        graph = self.comp.space.trace(cand.module, cand.shape, cand.name)
        trained = Candidate(
            cand.name, cand.spec, cand.module, graph, cand.data, self.comp.hw, train=settings
        )

        def float_accuracy(c: Candidate) -> None:
            trial.set_user_attr(ACC_FLOAT, accuracy(c.module, c.data.x_val, c.data.y_val))
            trial.set_user_attr(ACC_FLOAT_TEST, accuracy(c.module, c.data.x_test, c.data.y_test))

        started = time.perf_counter()
        try:
            out = run_pipeline(self.comp.methods, trained, float_accuracy)
        finally:  # a method that fails has still spent the time
            trial.set_user_attr(COMPRESS_S, time.perf_counter() - started)
        if out.qgraph is None:
            raise TrialError(f"{cand.name}: the quantization method set no int8 model")
        return out

    def recost(
        self, trial: optuna.Trial, plain: Cost, predicted: Cost, cand: Candidate
    ) -> tuple[Plan, bool]:
        """The measured cost of the compressed candidate (its traced graph's, changed by
        each method's ``measure``) replaces the prediction in the cost columns; a
        candidate that no longer fits is recorded infeasible with both figures. Returns
        the measurement (its cost, and how the weights are stored) and whether it fits."""
        traced = self.chip_cost(cand.module, cand.graph, cand.data)
        measured = measure(self.comp.methods, cand, traced)
        after = measured.cost
        set_attrs(trial, after.as_dict())
        if after != plain:
            set_attrs(trial, {k + UNCOMPRESSED_SUFFIX: v for k, v in plain.as_dict().items()})
        verdict = feasibility(after, self.comp.hw, self.cfg.search)
        if verdict.reason:
            for key, value in verdict.constraints.items():
                trial.set_constraint(key, value)
            trial.set_user_attr(FEASIBLE, False)
            trial.set_user_attr(
                INFEASIBLE_REASON,
                f"{AFTER_COMPRESSION}: {verdict.reason} (predicted flash "
                f"{predicted.flash_bytes} B, sram {predicted.sram_bytes} B)",
            )
        return measured, not verdict.reason

    def score(self, cand: Candidate, cost: Cost, decoded: bool = False) -> dict[str, Any]:
        """The compression methods' metrics and the backend's (which must hold
        `REQUIRED_METRICS` and no core column). With ``decoded`` weights (stored encoded,
        decoded on the chip) the backend ran the decoded model: its ``model_bytes`` is
        kept as ``model_bytes_decoded``, and ``model_bytes`` stays the measured stored
        model."""
        backend = self.backend_for(cand.spec)
        try:
            measured = backend.score(cand, cost)
        except NasError:
            raise
        except Exception as exc:
            raise TrialError(
                f"{cand.name}: backend '{backend.name}' failed: {type(exc).__name__}: {exc}"
            ) from exc
        check_plugin_metrics(
            f"{cand.name}: backend '{backend.name}'", measured, MEASURED_BY_BACKEND
        )
        if decoded:
            measured = {
                (k + DECODED_SUFFIX if k in MEASURED_BY_BACKEND else k): v
                for k, v in measured.items()
            }
        metrics = {**cand.metrics, **measured, SCORED_BY: backend.name}
        missing = [m for m in REQUIRED_METRICS if m not in metrics]
        if missing:
            raise TrialError(f"backend '{backend.name}' returned no {', '.join(missing)}")
        return metrics

    def backend_for(self, spec: dict[str, Any]) -> BaseBackend:
        """The backend that scores ``spec`` (`BaseSearchSpace.backend_for`)."""
        return self.backend(self.comp.space.backend_for(spec, self.comp.backend.name))

    def backend(self, name: str | None) -> BaseBackend:
        """The selected backend (``name`` None or its name), or another with its
        default options, made and checked once."""
        name = name or self.comp.backend.name
        if name not in self._backends:
            cls = get_plugin_manager().get("backend", name)
            backend = cls()
            backend.check(self.comp.hw)
            self._backends[name] = backend
        return self._backends[name]

    def repeat(self, trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> list[float]:
        """A candidate the study already trained: the earlier result again, no training.
        The sampler sees the repeat as an observation; reports and the trial count skip it."""
        trial.set_user_attr(DUPLICATE_OF, twin.number)
        if twin.state == optuna.trial.TrialState.PRUNED:
            why = f"same architecture as trial {twin.number}, which was pruned"
            trial.set_user_attr(PRUNE_REASON, why)
            raise optuna.TrialPruned(why)
        kept = NOT_REPEATED | {RETRY_OF}  # the twin's own history, not this trial's
        set_attrs(trial, {k: v for k, v in twin.user_attrs.items() if k not in kept})
        return list(twin.values)

    def save(self, number: int, cand: Candidate, cost: Cost, metrics: dict[str, Any]) -> None:
        """Write the trial's folder: ``arch.json``, both models, the artifacts and, for a
        model that has C, its input contract and firmware project (`nas.firmware`)."""
        out = self.run_dir / "trials" / f"{number:05d}"
        out.mkdir(parents=True, exist_ok=True)
        torch.save(cand.module.state_dict(), out / "model_float.pt")
        assert cand.qgraph is not None
        cand.qgraph.save(out / "model_int8.npz")
        for name, data in cand.artifacts.items():  # names may hold folders: "c/model.c"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
        info = {
            "trial": number,
            "arch": cand.spec,
            "search_space": self.comp.space.name,
            "in_channels": cand.data.in_channels,
            "num_classes": cand.data.num_classes,
            "input_kind": cand.data.kind,
            "input_hw": cand.data.fixed_hw,
            "hw": self.comp.hw.name,
            "hw_file": self.comp.hw.source_file,
            "cost": cost.as_dict(),
            "metrics": metrics,
            "input": self.firmware(out / "firmware", cand),
        }
        (out / "arch.json").write_text(json.dumps(info, indent=2, default=float))

    def firmware(self, folder: Path, cand: Candidate) -> dict[str, Any] | str:
        """`nas.firmware.write_project` for the candidate; a model without C, or C that
        cannot be written, keeps its trial and says why instead."""
        try:
            model = codegen.as_c(cand.qgraph)
        except ConfigError as exc:
            return f"no input contract: {exc}"
        try:
            base = self.base_data(cand.spec)
            return firmware.write_project(folder, model, self.comp.hw, base, cand.data)
        except Exception as exc:  # noqa: BLE001 - the trained model is kept either way
            log.warning("%s: no firmware project: %s: %s", cand.name, type(exc).__name__, exc)
            return f"no firmware project: {type(exc).__name__}: {exc}"


def trained_twin(trial: optuna.Trial, inherited: bool = False) -> optuna.trial.FrozenTrial | None:
    """The earlier trial of the study that trained the same architecture (completed or
    pruned; not itself a repeat), or None. Categorical samplers such as TPE propose the
    same choices again once they settle on a region; training them again is waste.
    ``inherited``: look for one scored on the supernet instead (`nas.supernet`)."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    params = trial.params  # a copy each time it is read: once, not once per trial
    for t in trial.study.get_trials(deepcopy=False, states=done):
        if (
            t.params == params
            and t.user_attrs.get(FEASIBLE)
            and DUPLICATE_OF not in t.user_attrs
            and (t.user_attrs.get(SCORED_BY) == SUPERNET) == inherited
            and (t.state == optuna.trial.TrialState.PRUNED or ACC_INT8 in t.user_attrs)
        ):
            return t
    return None


def open_study(cfg: DictConfig, url: str) -> optuna.Study:
    """Create or join the study; refuse one that exists with other objectives."""
    names = objectives(cfg)
    directions = [OBJECTIVES[n] for n in names]
    study = optuna.create_study(
        study_name=cfg.study.name,
        storage=open_storage(url),
        sampler=make_sampler(cfg),
        directions=directions,
        load_if_exists=True,
    )
    found = study.metric_names  # None for a study made elsewhere: compare directions
    if (found != names) if found else (study.directions != directions):
        found = found or [d.name.lower() for d in study.directions]
        raise ConfigError(
            f"study '{cfg.study.name}' in {mask_url(url)} already exists with objectives "
            f"[{','.join(found)}], not search.objectives=[{','.join(names)}]: choose another "
            "study.name or those objectives"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    return study


def record_settings(study: optuna.Study, cfg: DictConfig, comp: Components) -> None:
    """Store what `nas.report.load` compares studies by, in the study itself."""
    attrs = {
        "hw": cfg.hw.name,
        "hw_profile": OmegaConf.to_container(cfg.hw, resolve=True),
        "search_space": cfg.search_space.name,
        "search_space_config": OmegaConf.to_container(cfg.search_space, resolve=True),
        "dataset": cfg.dataset.name,
        "in_channels": comp.data.in_channels,
        "num_classes": comp.data.num_classes,
        "input_kind": comp.data.kind,
        "input_hw": comp.data.fixed_hw,
        "backend": cfg.backend.name,
        "compression": list(cfg.compression),
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def run_search(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    on_start: Callable[[], None] | None = None,
) -> Any:
    """Run (or continue) the study, write the run directory, return the trials frame.

    With ``search.workers`` > 1, ``overrides`` (the command line) start the other workers.
    ``on_start`` is called once every input has been checked and the study is open, right
    before the first trial: what fails before it is bad input, and nothing ran.
    """
    pm = get_plugin_manager()
    check_writable(run_dir)
    comp = build_components(cfg, pm)
    print(f"hardware profile: {comp.hw.name} from {comp.hw.source_file}", flush=True)
    supernet = None
    if cfg.search.strategy == SUPERNET:  # a file trained for other settings is bad input
        supernet = open_supernet(cfg, comp.space, comp.data, run_dir, not workers.is_worker())
        if not supernet.trained and workers.is_worker():
            raise ConfigError(f"{supernet.path}: the supernet is not trained yet")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url(cfg.storage.url, run_dir, cfg.storage.name)
    study = open_study(cfg, url)
    record_settings(study, cfg, comp)
    st = cfg.study
    fail_stale_trials(study, st.grace_s, st.retry_stale)
    new_study = not study.get_trials(deepcopy=False)
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    n = workers.shares(cfg.search.n_trials, max(1, cfg.search.workers))
    objective = Objective(cfg, comp, run_dir)
    if new_study and cfg.search.cheap_first and not workers.is_worker():
        enqueue_cheap_first(study, objective)
    if on_start is not None:
        on_start()
    log_settings(cfg, comp, overrides or [], url)
    procs: list[Any] = []
    progress: Progress | None = None
    interrupted = False
    try:
        with CTRL_C:
            if supernet is not None:  # every worker's trials need it: trained first
                objective.supernet = train_supernet(
                    supernet, objective.data_at, cfg, objective.fits
                )
                objective.score_seed = supernet.seed
                if not workers.is_worker():
                    unqueue_finalists(study)
            if len(n) > 1:
                torch.set_num_threads(workers.threads_per_worker(len(n)))
            procs = workers.spawn(
                overrides or [], n[1:], cfg.search.seed, url, cfg.study.name, run_dir
            )
            count_all = cfg.search.count_infeasible
            progress = Progress(n[0], pm, st.grace_s, st.retry_stale, count_all)
            optimize(study, objective, progress, cfg.search.timeout_s)
            if supernet is not None and not workers.is_worker():
                progress.bar.close()
                workers.wait(procs)  # the finalists are chosen among every worker's trials
                run_finalists(study, objective, pm, cfg)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if progress is not None:
            progress.bar.close()
        codes = workers.wait(procs, interrupt=interrupted)
        if any(codes):
            log.warning("worker exit codes %s: see worker_*.log in %s", codes, run_dir)
        frame = report.frame(study)
        if cfg.search.report:
            best_dir = report.write_run(run_dir, frame, cfg, comp.hw)
            best = report.best_row(frame)
            scored_by = None if best is None else best.get(SCORED_BY)
            # the backend that scored the best model writes its firmware
            backend = objective.backend(scored_by if isinstance(scored_by, str) else None)
            if best_dir is not None:
                backend.deploy(best_dir)
            steps = report.next_steps(run_dir, best, best_dir, backend.name)
            print(steps)
            log.info(steps)
            pm.observe_study(str(run_dir), frame)
    return frame


def log_settings(cfg: DictConfig, comp: Components, overrides: list[str], url: str) -> None:
    """``search.log``: the command line and the choices that shape the search."""
    log.info("python -m nas search %s", mask_url(" ".join(overrides)))
    s = cfg.search
    log.info(
        "chip %s (%s: SRAM %d B, flash %d B), search space %s, dataset %s (%d training "
        "images), backend %s, compression [%s], strategy %s, sampler %s, objectives [%s], "
        "%d trials, seed %d, storage %s",
        comp.hw.name,
        comp.hw.source_file,
        comp.hw.sram_bytes,
        comp.hw.flash_bytes,
        comp.space.name,
        cfg.dataset.name,
        len(comp.data.x_train),
        comp.backend.name,
        ",".join(cfg.compression),
        s.strategy,
        cfg.sampler.name,
        ",".join(objectives(cfg)),
        s.n_trials,
        s.seed,
        mask_url(url),
    )


def finalist_sources(
    study: optuna.Study, k: int, by_latency: bool = False
) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` feasible candidates to train, one per architecture, by inherited int8
    accuracy (ties: the faster, then the earlier). ``by_latency`` (latency is an
    objective): spread along the inherited Pareto front of accuracy against latency,
    from the fastest to the most accurate, then the most accurate of the rest."""
    scored = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs.get(SCORED_BY) == SUPERNET
        and t.user_attrs.get(FEASIBLE)
        and DUPLICATE_OF not in t.user_attrs
    ]
    scored.sort(key=lambda t: (-t.user_attrs[ACC_INT8], t.user_attrs[LATENCY_MS], t.number))
    unique: list[optuna.trial.FrozenTrial] = []
    for t in scored:
        if all(t.params != u.params for u in unique):
            unique.append(t)
    if not by_latency or k < 2:
        return unique[:k]
    front, fastest = [], float("inf")
    for t in unique:  # most accurate first: each new fastest is on the front
        if t.user_attrs[LATENCY_MS] < fastest:
            front.append(t)
            fastest = t.user_attrs[LATENCY_MS]
    if len(front) > k:  # evenly spaced by rank, both ends kept
        front = [front[round(i * (len(front) - 1) / (k - 1))] for i in range(k)]
    rest = [t for t in unique if t not in front]
    return front + rest[: k - len(front)]


def unqueue_finalists(study: optuna.Study) -> None:
    """Fail the finalists an interrupted run left queued: Optuna hands queued trials out
    oldest first, and the candidates must not take them (`run_finalists` queues them
    again when it gets there)."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        if FINALIST_OF in t.user_attrs:
            study._storage.set_trial_user_attr(t._trial_id, FAIL_REASON, "interrupted")  # noqa: SLF001
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)  # noqa: SLF001


def run_finalists(
    study: optuna.Study, objective: Objective, pm: PluginManager, cfg: DictConfig
) -> None:
    """Train, compress and score the best candidates of a supernet search, each as a new
    trial with ``finalist_of`` set. A finalist completed by an earlier run of the same
    study is not trained again."""
    by_latency = LATENCY_MS in objective.objectives
    sources = finalist_sources(study, cfg.search.supernet.finalists, by_latency)
    done = {
        t.user_attrs[FINALIST_OF]
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if FINALIST_OF in t.user_attrs
    }
    todo = [t for t in sources if t.number not in done]
    for t in todo:
        attrs = {FINALIST_OF: t.number, ACC_INT8_INHERITED: t.user_attrs[ACC_INT8]}
        study.enqueue_trial(t.params, user_attrs=attrs)
    if not todo:
        return
    # Every queued trial runs, oldest first: entries of search.enqueue a stopped
    # candidate phase left (scored on the supernet), then the finalists.
    queued = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    st = cfg.study
    progress = Progress(queued, pm, st.grace_s, st.retry_stale, True, desc="finalists")
    try:
        optimize(study, objective, progress, None)
    finally:
        progress.bar.close()


def optimize(
    study: optuna.Study, objective: Objective, progress: Progress, timeout_s: float | None
) -> None:
    """`optuna.Study.optimize` until this process ran its share or ``timeout_s`` passed.

    A worker paused longer than the grace period finds its trial marked abandoned by its
    peers, and Optuna refuses to be told that trial's result (``ValueError: Cannot tell a
    FAIL trial``): the objective has recorded the result as a new trial, which is counted
    here, and the search goes on."""
    started = time.monotonic()
    while not progress.done():
        left = None if timeout_s is None else timeout_s - (time.monotonic() - started)
        if left is not None and left <= 0:
            return
        n_trials = progress.total - progress.counted if progress.count_infeasible else None
        try:
            study.optimize(
                objective,
                n_trials=n_trials,
                timeout=left,
                catch=(Exception,),
                callbacks=[progress],
                gc_after_trial=False,
            )
            return
        except ValueError:
            recovered, objective.recovered = objective.recovered, None
            if recovered is None:
                raise
            progress(study, recovered)


def check_writable(run_dir: Path) -> None:
    """A clear error when the run directory cannot be created or written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"run directory '{run_dir}' is not writable ({exc.strerror}); "
            "choose another with hydra.run.dir=DIR"
        ) from None
