"""The search loop: one Optuna study over a search space on one chip.

Every trial walks the line of ``shared/DESIGN.md``: sample -> build -> trace -> static
cost -> (infeasible: stop, no training) -> train -> compression pipeline -> backend score.
Objectives (``search.objectives``): maximize ``acc_int8`` (validation accuracy of the int8
model) and minimize ``latency_ms``, or maximize ``acc_int8`` alone (the most accurate model
that fits). SRAM and flash limits, and when set ``search.max_latency_ms`` and
``search.min_macs`` (a compute floor), are Optuna constraints (``trial.set_constraint``),
set from the static cost before any training, so the sampler learns what does not fit.
Everything a trial produces is a user attribute in the storage; `nas.report` reads them.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.study import StudyDirection
from tqdm import tqdm

from nas import report, workers
from nas.backends import REQUIRED_METRICS, BaseBackend
from nas.compression import BaseCompressionMethod, Candidate, order, run_pipeline
from nas.config import plugin_config
from nas.cost import Cost
from nas.data import Arrays, one_vs_rest
from nas.errors import ConfigError, NasError, TrialError
from nas.hardware import HardwareProfile, profile_from_mapping
from nas.interrupt import CTRL_C
from nas.plugin_manager import PluginManager, get_plugin_manager
from nas.report import DUPLICATE_ATTR
from nas.spaces import BaseSearchSpace, check_supported
from nas.storage import (
    HEARTBEAT_ATTR,
    Heartbeat,
    fail_stale_trials,
    open_storage,
    storage_url,
)
from nas.train import CURVE_ATTR, ParetoMedianPruner, TrainSettings, accuracy

log = logging.getLogger(__name__)
#: Each objective a search may optimize, and its direction.
OBJECTIVES = {"acc_int8": StudyDirection.MAXIMIZE, "latency_ms": StudyDirection.MINIMIZE}
#: The ``search.objectives`` a search accepts: accuracy vs latency, or accuracy first.
VALID_OBJECTIVES = (["acc_int8", "latency_ms"], ["acc_int8"])


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


def profile_from_cfg(cfg: DictConfig) -> HardwareProfile:
    """The validated profile under ``cfg.hw`` (command-line overrides included)."""
    data = OmegaConf.to_container(cfg.hw, resolve=True)
    assert isinstance(data, dict)
    return profile_from_mapping(data, str(data.get("source_file") or "hw"))


def build_components(cfg: DictConfig, pm: PluginManager | None = None) -> Components:
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
    return Components(
        hw=hw,
        space=make("search_space", cfg.search_space),
        data=load_dataset(make("dataset", cfg.dataset)),
        methods=order(methods),
        backend=backend,
    )


def load_dataset(dataset: Any) -> Arrays:
    """The dataset's arrays (one-vs-rest when ``positive_class`` is set); any failure of
    its loader becomes one clear `ConfigError`."""
    try:
        data = dataset.load()
        positive = getattr(dataset.config, "positive_class", None)
        return data if positive is None else one_vs_rest(data, positive)
    except NasError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"dataset '{dataset.name}': cannot load ({type(exc).__name__}: {exc})"
        ) from None


def make_sampler(cfg: DictConfig) -> optuna.samplers.BaseSampler:
    s, seed = cfg.sampler, cfg.search.seed
    if s.name == "tpe":
        return optuna.samplers.TPESampler(
            n_startup_trials=s.n_startup_trials, multivariate=s.multivariate, seed=seed
        )
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population_size, seed=seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler '{s.name}'; valid: tpe, nsga2, random")


class Objective:
    """Callable for `optuna.Study.optimize`: one candidate from sample to score."""

    def __init__(self, cfg: DictConfig, comp: Components, run_dir: Path) -> None:
        self.cfg = cfg
        self.comp = comp
        self.run_dir = run_dir
        self._resized: dict[int, Arrays] = {}
        self.objectives = objectives(cfg)
        p, self.by_latency = cfg.pruner, "latency_ms" in self.objectives
        self.pruner = (
            ParetoMedianPruner(p.n_startup_trials, p.n_warmup_epochs, self.by_latency)
            if p.enabled
            else None
        )

    def data_at(self, size: int) -> Arrays:
        if size not in self._resized:
            self._resized[size] = self.comp.data.resized(size)
        return self._resized[size]

    def values(self, acc: float, latency_ms: float) -> list[float]:
        """The trial's objective values, in ``search.objectives`` order."""
        scores = {"acc_int8": acc, "latency_ms": latency_ms}
        return [scores[name] for name in self.objectives]

    def __call__(self, trial: optuna.Trial) -> list[float]:
        storage = trial.study._storage  # noqa: SLF001 - heartbeats write to the trial directly
        try:
            with Heartbeat(storage, trial._trial_id, self.cfg.study.heartbeat_s):
                return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, NasError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            raise

    def _run(self, trial: optuna.Trial) -> list[float]:
        comp, s = self.comp, self.cfg.search
        spec = comp.space.sample(trial)
        trial.set_user_attr("arch", spec)
        size = comp.space.resolution(spec)
        data = self.data_at(size)
        module = comp.space.build(spec, data.in_channels, data.num_classes)
        name = f"trial {trial.number}"
        shape = (1, data.in_channels, size, size)
        cost = comp.space.cost(module, comp.space.trace(module, shape, name), comp.hw)
        for key, value in cost.as_dict().items():
            trial.set_user_attr(key, value)
        limits, reason = cost.violations(comp.hw), cost.infeasible_reason(comp.hw)
        reasons = [reason] if reason else []
        if (cap := s.max_latency_ms) is not None:
            limits["latency"] = (cost.latency_ms - cap) / cap
            if cost.latency_ms > cap:
                reasons.append(f"latency {cost.latency_ms:.2f} ms > {cap:g} ms")
        if (floor := s.min_macs) is not None:
            limits["macs_floor"] = (floor - cost.macs) / floor
            if cost.macs < floor:
                reasons.append(f"{cost.macs:,} MACs < search.min_macs={floor:,}")
        reason = "; ".join(reasons)
        for key, value in limits.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("feasible", not reason)
        trial.set_user_attr("train_s", 0.0)
        if reason:
            trial.set_user_attr("infeasible_reason", reason)
            return self.values(0.0, cost.latency_ms)
        if (twin := trained_twin(trial)) is not None:
            return self.repeat(trial, twin)

        settings = TrainSettings(
            s.epochs, s.batch_size, s.lr, s.weight_decay, s.seed * 1000 + trial.number
        )
        curve: list[float] = []

        def on_epoch(epoch: int, acc: float) -> None:
            CTRL_C.check()
            curve.append(acc)
            trial.set_user_attr(CURVE_ATTR, curve)
            if self.pruner and self.pruner.should_prune(trial.study, epoch, acc, cost.latency_ms):
                than = "faster trials" if self.by_latency else "completed trials"
                why = f"val acc {acc:.3f} at epoch {epoch} below the median of {than}"
                trial.set_user_attr("train_s", time.perf_counter() - t0)
                trial.set_user_attr("prune_reason", why)
                raise optuna.TrialPruned(why)

        t0 = time.perf_counter()
        comp.space.fit(module, data, settings, on_epoch)
        trial.set_user_attr("train_s", time.perf_counter() - t0)
        trial.set_user_attr("acc_float", accuracy(module, data.x_val, data.y_val))
        trial.set_user_attr("acc_float_test", accuracy(module, data.x_test, data.y_test))

        graph = comp.space.trace(module, shape, name)  # again: trained BN statistics fold in
        cand = Candidate(name, spec, module, graph, data, comp.hw, train=settings)
        cand = run_pipeline(comp.methods, cand)
        if cand.qgraph is None:
            raise TrialError(f"{name}: the quantization method set no int8 model")
        cost = self.recost(trial, cost, cand)
        try:
            metrics = {**cand.metrics, **comp.backend.score(cand, cost)}
        except NasError:
            raise
        except Exception as exc:
            raise TrialError(
                f"{name}: backend '{comp.backend.name}' failed: {type(exc).__name__}: {exc}"
            ) from exc
        missing = [m for m in REQUIRED_METRICS if m not in metrics]
        if missing:
            raise TrialError(f"backend '{comp.backend.name}' returned no {', '.join(missing)}")
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        if s.save_models:
            self.save(trial.number, cand, cost, metrics)
        return self.values(float(metrics["acc_int8"]), cost.latency_ms)

    def repeat(self, trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> list[float]:
        """A candidate the study already trained: the earlier result again, no training.
        The sampler sees the repeat as an observation; reports and the trial count skip it."""
        trial.set_user_attr(DUPLICATE_ATTR, twin.number)
        if twin.state == optuna.trial.TrialState.PRUNED:
            why = f"same architecture as trial {twin.number}, which was pruned"
            trial.set_user_attr("prune_reason", why)
            raise optuna.TrialPruned(why)
        for key, value in twin.user_attrs.items():
            if key not in NOT_REPEATED:
                trial.set_user_attr(key, value)
        return list(twin.values)

    def recost(self, trial: optuna.Trial, before: Cost, cand: Candidate) -> Cost:
        """The static cost of the compressed graph; when compression changed it, the trial
        records the new figures and keeps the searched ones as ``<name>_uncompressed``."""
        after = self.comp.space.cost(cand.module, cand.graph, self.comp.hw)
        if after != before:
            for key, value in after.as_dict().items():
                trial.set_user_attr(key, value)
                trial.set_user_attr(f"{key}_uncompressed", getattr(before, key))
        return after

    def save(self, number: int, cand: Candidate, cost: Cost, metrics: dict[str, Any]) -> None:
        out = self.run_dir / "trials" / f"{number:05d}"
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "trial": number,
            "arch": cand.spec,
            "search_space": self.comp.space.name,
            "in_channels": cand.data.in_channels,
            "num_classes": cand.data.num_classes,
            "hw": self.comp.hw.name,
            "cost": cost.as_dict(),
            "metrics": metrics,
        }
        (out / "arch.json").write_text(json.dumps(info, indent=2, default=float))
        torch.save(cand.module.state_dict(), out / "model_float.pt")
        assert cand.qgraph is not None
        cand.qgraph.save(out / "model_int8.npz")
        for name, data in cand.artifacts.items():  # names may hold folders: "c/model.c"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)


#: What a repeat does not copy from the trial that trained it.
NOT_REPEATED = {CURVE_ATTR, HEARTBEAT_ATTR, "train_s", "prune_reason", "fail_reason"}


def trained_twin(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """The earlier trial of the study that trained the same architecture (completed or
    pruned; not itself a repeat), or None. Categorical samplers such as TPE propose the
    same choices again once they settle on a region; training them again is waste."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in trial.study.get_trials(deepcopy=False, states=done):
        if (
            t.params == trial.params
            and t.user_attrs.get("feasible")
            and DUPLICATE_ATTR not in t.user_attrs
            and (t.state == optuna.trial.TrialState.PRUNED or "acc_int8" in t.user_attrs)
        ):
            return t
    return None


#: With ``search.count_infeasible=false``, a process samples at most this many candidates
#: per trial it is to count, so a budget that nothing fits still ends.
MAX_SAMPLED_PER_TRIAL = 50


class Progress:
    """After each trial: the tqdm bar (trial n/N, best feasible int8 accuracy so far), the
    observer hook, and the check for trials abandoned by dead workers.

    With ``count_infeasible=False`` it counts only candidates that were not rejected
    before training, and stops the study when ``total`` of them are done (or after
    ``MAX_SAMPLED_PER_TRIAL * total`` candidates in all)."""

    def __init__(
        self, total: int, pm: PluginManager, grace_s: float, retry: bool, count_infeasible: bool
    ) -> None:
        self.bar = tqdm(total=total, desc="trials", unit="trial", dynamic_ncols=True)
        self.pm = pm
        self.grace_s, self.retry = grace_s, retry
        self.total, self.count_infeasible = total, count_infeasible
        self.counted = self.sampled = 0
        self.best: tuple[float, float] | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        CTRL_C.check()
        fail_stale_trials(study, self.grace_s, self.retry)
        rec = report.record(trial)
        acc = rec.get("acc_int8")
        if rec["feasible"] and acc == acc and acc is not None:
            key = (acc, -rec["latency_ms"])
            if self.best is None or key > (self.best[0], -self.best[1]):
                self.best = (acc, rec["latency_ms"])
        if rec["state"] == "FAIL":
            self.bar.write(f"trial {trial.number} failed: {rec['reason']}")
        best = f"{self.best[0]:.3f} @ {self.best[1]:.2f} ms" if self.best else "none yet"
        self.bar.set_postfix_str(f"best feasible acc_int8 {best}")
        self.sampled += 1
        rejected = rec["state"] == "COMPLETE" and not rec["feasible"]
        rejected |= DUPLICATE_ATTR in rec  # a repeat: no training either
        if self.count_infeasible or not rejected:
            self.counted += 1
            self.bar.update(1)
        self.pm.observe_trial(trial.number, rec)
        if self.count_infeasible:
            return
        if self.counted >= self.total:
            study.stop()
        elif self.sampled >= MAX_SAMPLED_PER_TRIAL * self.total:
            self.bar.write(
                f"stopping: {self.sampled} candidates sampled, only {self.counted} of "
                f"{self.total} were new architectures that fit the budget "
                "(search.count_infeasible=false)"
            )
            study.stop()


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
            f"study '{cfg.study.name}' in {url} already exists with objectives "
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
        "backend": cfg.backend.name,
        "compression": list(cfg.compression),
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def run_search(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> Any:
    """Run (or continue) the study, write the run directory, return the trials frame.

    With ``search.workers`` > 1, ``overrides`` (the command line) start the other workers.
    """
    pm = get_plugin_manager()
    check_writable(run_dir)
    comp = build_components(cfg, pm)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url(cfg.storage.url, run_dir, cfg.storage.name)
    study = open_study(cfg, url)
    record_settings(study, cfg, comp)
    st = cfg.study
    fail_stale_trials(study, st.grace_s, st.retry_stale)
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    n = workers.shares(cfg.search.n_trials, max(1, cfg.search.workers))
    if len(n) > 1:
        torch.set_num_threads(workers.threads_per_worker(len(n)))
    procs = workers.spawn(overrides or [], n[1:], cfg.search.seed, url, cfg.study.name, run_dir)
    count_all = cfg.search.count_infeasible
    progress = Progress(n[0], pm, st.grace_s, st.retry_stale, count_all)
    interrupted = False
    try:
        with CTRL_C:
            study.optimize(
                Objective(cfg, comp, run_dir),
                n_trials=n[0] if count_all else (None if n[0] else 0),
                timeout=cfg.search.timeout_s,
                catch=(Exception,),
                callbacks=[progress],
                gc_after_trial=False,
            )
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        progress.bar.close()
        codes = workers.wait(procs, interrupt=interrupted)
        if any(codes):
            log.warning("worker exit codes %s: see worker_*.log in %s", codes, run_dir)
        frame = report.frame(study)
        if cfg.search.report:
            best_dir = report.write_run(run_dir, frame, cfg, comp.hw)
            if best_dir is not None:
                comp.backend.deploy(best_dir)
            pm.observe_study(str(run_dir), frame)
    return frame


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
