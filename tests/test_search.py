"""The search loop in-process: failures are recorded and the study goes on."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest
from faulty_plugins import FaultyPlugin
from hydra import compose, initialize_config_module
from torch import nn

import nas
from nas.config import SearchConfig, register_configs
from nas.cost import Cost
from nas.hardware import load_profile
from nas.plugin_manager import PluginManager, reset_plugin_manager
from nas.progress import MAX_SAMPLED_PER_TRIAL
from nas.pruner import ParetoMedianPruner
from nas.record import VAL_ACC_CURVE
from nas.search import feasibility, run_search
from nas.spaces import BaseSearchSpace
from nas.start import StartDraw, start_cells, start_size


class SigmoidSpace(BaseSearchSpace):
    """A space whose networks use an operator the graph cannot express."""

    name = "sigmoidnet"

    def sample(self, trial):
        return {"width": trial.suggest_categorical("width", [4, 8])}

    def resolution(self, spec):
        return 8

    def build(self, spec, in_channels, num_classes):
        w = spec["width"]
        return nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.Sigmoid(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(w, num_classes),
        )


class SigmoidPlugin:
    @staticmethod
    @nas.hookimpl
    def nas_register_search_spaces():
        return [SigmoidSpace]


def _config(*overrides: str):
    register_configs()
    with initialize_config_module("nas.conf", version_base="1.3"):
        return compose("config", overrides=["+hw=cortex_m4", *overrides])


@pytest.mark.slow
def test_unsupported_operator_fails_the_trial_not_the_study(tmp_path):
    pm = PluginManager()
    pm.register(SigmoidPlugin, name="sigmoid_plugin")
    reset_plugin_manager(pm)
    try:
        cfg = _config("search_space=sigmoidnet", "search.n_trials=3", "search.epochs=1")
        frame = run_search(cfg, tmp_path)
    finally:
        reset_plugin_manager(None)
    assert len(frame) == 3 and (frame.state == "FAIL").all()
    assert frame.reason.str.contains("candidate trial \\d+: unsupported operator 'Sigmoid'").all()
    csv = pd.read_csv(tmp_path / "trials.csv")
    assert len(csv) == 3 and (tmp_path / "report.md").is_file()


def _trial(study, latency, curve):
    t = optuna.trial.create_trial(
        values=[curve[-1], latency][: len(study.directions)],
        user_attrs={"latency_ms": latency, VAL_ACC_CURVE: curve},
        params={},
        distributions={},
    )
    study.add_trial(t)


def test_pruner_compares_only_with_faster_trials():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for lat in (1.0, 2.0, 3.0):
        _trial(study, lat, [0.5, 0.8, 0.9])
    pruner = ParetoMedianPruner(n_startup_trials=3, n_warmup_epochs=1)
    assert not pruner.should_prune(study, 0, 0.1, 5.0)  # warm-up epoch
    assert pruner.should_prune(study, 1, 0.7, 5.0)  # slower and worse than the median
    assert not pruner.should_prune(study, 1, 0.85, 5.0)
    assert not pruner.should_prune(study, 1, 0.1, 2.5)  # only 2 faster trials: too few
    assert not pruner.should_prune(study, 1, 0.1, 0.5)  # the fastest is never pruned


def test_pruner_without_latency_objective_compares_with_all_trials():
    study = optuna.create_study(direction="maximize")
    for lat in (1.0, 2.0, 3.0):
        _trial(study, lat, [0.5, 0.8, 0.9])
    pruner = ParetoMedianPruner(n_startup_trials=3, n_warmup_epochs=1, faster_only=False)
    assert pruner.should_prune(study, 1, 0.7, 0.5)  # even the fastest, when below the median
    assert not pruner.should_prune(study, 1, 0.85, 5.0)


@pytest.mark.slow
def test_accuracy_first_search_with_latency_ceiling(tmp_path):
    """``search.objectives=[acc_int8]``: one maximized objective; candidates over
    ``search.max_latency_ms`` are infeasible before training, and nothing trained is over."""
    cfg = _config(
        "backend=estimate",
        "search.objectives=[acc_int8]",
        "search.max_latency_ms=20",
        "search.n_trials=8",
        "search.epochs=1",
        "search.save_models=false",
        "search.cheap_first=false",  # TPE's own random start: slow draws among them
    )
    frame = run_search(cfg, tmp_path)
    study = optuna.load_study(study_name=cfg.study.name, storage=f"sqlite:///{tmp_path}/study.db")
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert study.metric_names == ["acc_int8"]
    slow = frame[frame.latency_ms > 20]
    fast = frame[frame.latency_ms <= 20]
    assert len(slow) and len(fast), frame.latency_ms.tolist()
    assert (~slow.feasible & ~slow.feasible_latency & (slow.train_s == 0)).all()
    assert slow.reason.str.contains(r"latency \d+\.\d+ ms > 20 ms").all()
    assert (fast.feasible & (fast.train_s > 0) & fast.acc_int8.notna()).all()
    assert study.best_trial.number in set(fast.number)


@pytest.mark.slow
def test_compute_floor_rejects_small_candidates_before_training(tmp_path):
    """``search.min_macs``: candidates with fewer MACs are rejected before training, say
    why, and (``search.count_infeasible=false``) do not use up the trial budget."""
    floor = 800_000
    cfg = _config(
        "backend=estimate",
        f"search.min_macs={floor}",
        "search.count_infeasible=false",
        "search.n_trials=3",
        "search.epochs=1",
        "search.save_models=false",
        "search.cheap_first=false",  # TPE's own random start: small draws among them
    )
    frame = run_search(cfg, tmp_path)
    small, big = frame[frame.macs < floor], frame[frame.macs >= floor]
    assert len(small), frame.macs.tolist()
    assert (~small.feasible & ~small.feasible_macs_floor & (small.train_s == 0)).all()
    assert small.reason.str.contains(r"[\d,]+ MACs < search.min_macs=800,000").all()
    repeat = big.duplicate_of.notna() if "duplicate_of" in big else False
    trained = big[big.feasible & ~repeat]
    assert len(trained) == 3 and (trained.train_s > 0).all() and trained.acc_int8.notna().all()


#: The MobileNet-like space with one choice each: every sample is the same architecture.
ONE_ARCHITECTURE = [
    "search_space.resolutions=[8]",
    "search_space.stem_channels=[4]",
    "search_space.stages=1",
    "search_space.widths=[8]",
    "search_space.depths=[1]",
    "search_space.kernels=[3]",
    "search_space.expansions=[1]",
    "search_space.strides=[1]",
]


@pytest.mark.slow
def test_a_repeated_architecture_is_not_trained_again(tmp_path):
    """A candidate the study already trained copies the earlier result, says so, stays out
    of the front and (``search.count_infeasible=false``) does not use up the budget."""
    base = ["backend=estimate", "search.epochs=1", "search.save_models=false"]
    frame = run_search(_config(*base, *ONE_ARCHITECTURE, "search.n_trials=3"), tmp_path / "a")
    first, repeats = frame.iloc[0], frame.iloc[1:]
    assert first.train_s > 0 and first.pareto and pd.isna(first.duplicate_of)
    assert (repeats.duplicate_of == 0).all() and (repeats.train_s == 0).all()
    assert (repeats.acc_int8 == first.acc_int8).all() and not repeats.pareto.any()
    assert (repeats.reason == "same architecture as trial 0").all()

    cfg = _config(*base, *ONE_ARCHITECTURE, "search.n_trials=2", "search.count_infeasible=false")
    frame = run_search(cfg, tmp_path / "b")
    assert len(frame) == 2 * MAX_SAMPLED_PER_TRIAL and (frame.train_s > 0).sum() == 1


def test_pruner_median_includes_pruned_trials():
    """Candidates pruned earlier count at the epochs they reached, so the median does not
    ratchet up to that of the survivors."""
    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        _trial(study, 1.0, [0.5, 0.9, 0.95])
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED,
                user_attrs={"latency_ms": 1.0, VAL_ACC_CURVE: [0.4, 0.6]},
                params={},
                distributions={},
            )
        )
    pruner = ParetoMedianPruner(n_startup_trials=3, n_warmup_epochs=1, faster_only=False)
    assert not pruner.should_prune(study, 1, 0.7, 1.0)  # median of 0.9, 0.9, 0.6 x3 is 0.6
    assert pruner.should_prune(study, 1, 0.5, 1.0)
    assert not pruner.should_prune(study, 2, 0.1, 1.0)  # only 2 trials reached epoch 2


@pytest.mark.slow
def test_infeasible_candidates_need_not_count(tmp_path):
    """``search.count_infeasible=false``: ``n_trials`` counts trained candidates; those
    rejected before training come on top, and a budget nothing fits still ends."""
    base = ["backend=estimate", "search.epochs=1", "search.save_models=false"]
    cfg = _config(  # TPE's own random start (cheap_first=false): draws over the ceiling
        *base,
        "search.cheap_first=false",
        "search.max_latency_ms=3",
        "search.count_infeasible=false",
        "search.n_trials=3",
    )
    frame = run_search(cfg, tmp_path / "some")
    assert frame.feasible.sum() == 3, frame[["latency_ms", "feasible"]]
    assert (~frame.feasible).sum() > 0 and (frame[~frame.feasible].train_s == 0).all()
    assert (frame[frame.feasible].train_s > 0).all()

    cfg = _config(
        *base, "search.max_latency_ms=0.001", "search.count_infeasible=false", "search.n_trials=2"
    )
    frame = run_search(cfg, tmp_path / "none")
    assert len(frame) == 2 * MAX_SAMPLED_PER_TRIAL and not frame.feasible.any()


#: A small candidate's static cost: it fits every built-in Cortex-M profile.
SMALL = Cost(
    flash_bytes=100_000,
    sram_bytes=50_000,
    model_bytes=60_000,
    arena_bytes=40_000,
    arena_head_bytes=38_000,
    arena_tail_bytes=2_000,
    macs=500_000,
    params=20_000,
    latency_ms=10.0,
    energy_uj=400.0,
)


def test_feasibility_is_a_pure_function_of_cost_profile_and_settings():
    """No trial, no study: the constraints Optuna gets and the reason the row shows."""
    m4 = load_profile("cortex_m4")
    constraints, reason = feasibility(SMALL, m4, SearchConfig())
    assert reason == "" and set(constraints) == {"sram", "flash"}
    assert all(v < 0 for v in constraints.values())

    constraints, reason = feasibility(SMALL, m4, SearchConfig(max_latency_ms=5, min_macs=10**6))
    assert constraints["latency"] == pytest.approx(1.0)  # twice the ceiling
    assert constraints["macs_floor"] == pytest.approx(0.5)  # half the floor
    assert reason == "latency 10.00 ms > 5 ms; 500,000 MACs < search.min_macs=1,000,000"

    big = dataclasses.replace(SMALL, sram_bytes=2 * m4.sram_bytes)
    constraints, reason = feasibility(big, m4, SearchConfig(max_latency_ms=20))
    assert constraints["sram"] == pytest.approx(1.0) and constraints["latency"] < 0
    assert reason == f"sram {big.sram_bytes} B > {m4.sram_bytes} B"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "plugin", "key"),
    [
        (
            ["backend=estimate", "compression=[ptq,flash_overwrite]"],
            "compression method 'flash_overwrite'",
            "flash_bytes",
        ),
        (["backend=says_feasible"], "backend 'says_feasible'", "feasible"),
    ],
)
def test_a_plugin_may_not_overwrite_a_core_column(tmp_path, overrides, plugin, key):
    """A metric named like a core column fails the trial, naming the key and the plugin;
    the study goes on and the core's figures stand."""
    pm = PluginManager()
    pm.register(FaultyPlugin, name="faulty_plugin")
    reset_plugin_manager(pm)
    try:
        cfg = _config(
            *overrides,
            *ONE_ARCHITECTURE,
            "search.n_trials=2",
            "search.epochs=1",
            "search.save_models=false",
        )
        frame = run_search(cfg, tmp_path)
    finally:
        reset_plugin_manager(None)
    assert len(frame) == 2 and (frame.state == "FAIL").all()
    why = f"{plugin} returned core column '{key}'; plugins may not overwrite core columns"
    assert frame.reason.str.contains(why, regex=False).all(), frame.reason.tolist()
    assert (frame.flash_bytes > 1).all() and frame.feasible.all()


def test_a_sampler_that_keeps_repeating_itself_is_named_once(caplog):
    from nas.progress import REPEAT_WINDOW, Progress

    study = optuna.create_study()
    quiet = Progress(10, nas.plugin_manager.get_plugin_manager(), 60, True, True)
    for i in range(3 * REPEAT_WINDOW):  # every other trial a repeat: half, not most
        quiet.watch_repeats(i % 2 == 0, study)
    assert not quiet.warned
    settled = Progress(10, nas.plugin_manager.get_plugin_manager(), 60, True, True)
    with caplog.at_level("WARNING", logger="nas.progress"):
        for i in range(3 * REPEAT_WINDOW):
            settled.watch_repeats(i % 3 != 0, study)
    warnings = [
        r.getMessage() for r in caplog.records if "repeated an architecture" in r.getMessage()
    ]
    assert len(warnings) == 1 and "sampler=nsga2" in warnings[0] and "TPESampler" in warnings[0]


def test_trial_line_says_where_the_time_went():
    """A finalize's distillation runs in the compression pipeline: its trial line names
    that time too, where a plain search's quantization (under a second) adds nothing."""
    from nas.progress import trial_line

    rec = {"state": "COMPLETE", "feasible": True, "acc_int8": 0.9133, "scored_by": "tflm"}
    rec |= {"latency_ms": 44.46, "train_s": 24.2, "compress_s": 561.4}
    assert trial_line(rec) == "acc_int8 0.9133 (tflm), 44.46 ms, 24 s training, 561 s compression"
    rec["compress_s"] = 0.4
    assert trial_line(rec) == "acc_int8 0.9133 (tflm), 44.46 ms, 24 s training"


def test_the_random_start_takes_every_family_and_resolution_before_a_second_draw_of_one():
    """Where one family has most of the feasible draws (MobileNet-like here, as on the
    Fashion-MNIST m4-tight budget), a start of the first draws would hold only it. Families
    take turns; each takes its least-used resolution first, the first drawn among equals."""

    def draws(*cells: tuple[str, int]) -> list[StartDraw]:
        return [StartDraw(c, float(i), {"i": i}) for i, c in enumerate(cells)]

    drawn = draws(
        *[("mobilenet", 20)] * 5,
        ("mobilenet", 16),
        ("cnn", 20),
        ("cnn", 20),
        ("dscnn", 16),
        ("cnn", 28),
    )
    start = start_cells(drawn, 6)
    assert [d.cell for d in start] == [
        ("mobilenet", 20),
        ("cnn", 20),
        ("dscnn", 16),
        ("mobilenet", 16),
        ("cnn", 28),
        ("mobilenet", 20),  # dscnn has no second draw
    ]
    assert [d.params["i"] for d in start] == [0, 6, 8, 5, 9, 1]
    assert start_cells(drawn[:2], 6) == drawn[:2]  # fewer draws than wanted: all of them
    assert start_cells([], 3) == []
    # the benchmark's m4-tight seed 2 with cnn_convs (replayed): the MobileNet-like
    # family, both its cells taken, passes its turn to the CNN's unused resolutions
    drawn = draws(
        ("dscnn", 20),
        ("mobilenet", 20),
        ("cnn", 16),
        ("mobilenet", 16),
        ("cnn", 12),
        ("dscnn", 28),
        ("dscnn", 16),
        ("cnn", 20),
        ("mobilenet", 20),
        ("cnn", 28),
    )
    assert start_size(8, 9, 20) == 9  # one place per cell found
    assert start_size(8, 30, 20) == 10  # at most half the trials: the sampler keeps 10
    assert start_size(8, 3, 20) == 8  # fewer cells: the sampler's own start
    start = start_cells(drawn, 9)
    assert sorted(d.cell for d in start) == sorted(set(d.cell for d in drawn))
    assert [d.cell for d in start][6:] == [("dscnn", 16), ("cnn", 20), ("cnn", 28)]
