"""The command line as a user runs it: subprocesses on small budgets."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import yaml

import nas
from nas.hardware import BUILTIN_DIR, load_profile

REQUIRED_COLUMNS = [
    "number",
    "state",
    "feasible",
    "acc_float",
    "acc_int8",
    "flash_bytes",
    "sram_bytes",
    "macs",
    "latency_ms",
    "energy_uj",
    "train_s",
]
FAST = ["search_space.resolutions=[8]", "search_space.widths=[8,16]"]


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


@pytest.mark.slow
def test_help(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for word in ("search", "list", "+hw=", "search.n_trials", "sampler=tpe|nsga2|random"):
        assert word in proc.stdout
    # plugin commands come through the nas_register_commands hook, with their plugin
    assert "plugin commands:\n  calibrate +hw=<profile>" in proc.stdout
    assert "(plugin c_sim)" in proc.stdout
    # every command's help works the same way: usage, what it does, exit 0
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mcu-nas {nas.__version__}"
    for args, words in (
        (("list", "--help"), ("usage: python -m nas list", "profiles|spaces")),
        (("calibrate", "--help"), ("usage: python -m nas calibrate", "fit=N", "-h, --help")),
        (("report", "--help"), ("usage: python -m nas report", "--out")),
    ):
        proc = cli(*args)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        for word in words:
            assert word in proc.stdout, (args, proc.stdout)
    # a command's bad arguments are one line, not argparse's usage block
    _one_line_error(cli("report"), "report: the following arguments are required: sources")


@pytest.mark.slow
def test_list_shows_profiles_plugins_and_packages(cli):
    proc = cli("list")
    assert proc.returncode == 0, proc.stderr
    for word in (
        "cortex_m4",
        "arduino_uno",
        "NUCLEO-L4R5ZI",
        "mobilenet",
        "digits",
        "ptq",
        "estimate",
        "mcu-nas==",
    ):
        assert word in proc.stdout
    _one_line_error(cli("list", "nonsense"), "unknown list section 'nonsense'")


@pytest.mark.slow
def test_missing_and_unknown_hw(cli):
    _one_line_error(cli("search"), "+hw=<profile>", "cortex_m4", "arduino_uno")
    _one_line_error(
        cli("search", "+hw=cortex_m9"), "unknown hardware profile 'cortex_m9'", "cortex_m4"
    )
    _one_line_error(
        cli("frobnicate"),
        "unknown command 'frobnicate'; valid: search, list, report, finalize, calibrate",
    )


@pytest.mark.slow
def test_malformed_profile_names_file_and_field(cli, tmp_path):
    data = yaml.safe_load((BUILTIN_DIR / "cortex_m4.yaml").read_text())
    data["sram_bytes"] = "lots"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(data))
    proc = cli("search", "+hw=broken", env={"NAS_HARDWARE_PROFILES": str(tmp_path)})
    _one_line_error(proc, "broken.yaml", "sram_bytes")


@pytest.mark.slow
def test_default_search_finds_accurate_int8_model(cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "search.n_trials=3",
        "search.epochs=8",
        *FAST,
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 trials on cortex_m4: 3 trained and scored" in proc.stdout
    assert "Best: trial " in proc.stdout and "FIRMWARE.md" in proc.stdout  # what to do next
    # no terminal here: one progress line per trial instead of a redrawn bar
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("trials ")]
    assert [ln.split(":")[0] for ln in lines] == ["trials 1/3", "trials 2/3", "trials 3/3"]
    assert all("best feasible acc_int8" in ln for ln in lines)
    log = (run / "search.log").read_text()
    assert "search.n_trials=3" in log and "chip cortex_m4" in log
    assert log.count("[INFO] - trial ") == 3 and "3 trials on cortex_m4" in log
    # search.cheap_first: the random start is trained fewest MACs first
    macs = pd.read_csv(run / "trials.csv").sort_values("number").macs.tolist()
    assert macs == sorted(macs)
    for name in (
        "study.db",
        "trials.csv",
        "report.md",
        "best/arch.json",
        "best/model_float.pt",
        "best/model_int8.npz",
    ):
        assert (run / name).is_file(), name
    df = pd.read_csv(run / "trials.csv")
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    for number in df[df.state == "COMPLETE"].number:  # what the README says a trial keeps
        folder = run / "trials" / f"{number:05d}"
        for name in ("arch.json", "model_float.pt", "model_int8.npz", "model.tflite"):
            assert (folder / name).is_file(), (number, name)
        assert (folder / "firmware" / "Makefile").is_file()
        assert json.loads((folder / "arch.json").read_text())["input"]["raw_shape"] == [8, 8, 1]
    for choice in (
        "resolution",
        "stem_channels",
        "s1_width",
        "s1_depth",
        "s1_kernel",
        "s1_expand",
        "s1_stride",
    ):
        assert f"arch_{choice}" in df.columns
    assert len(df) == 3
    hw = load_profile("cortex_m4")
    feasible = df[df.feasible]
    assert (feasible.sram_bytes <= hw.sram_bytes).all()
    assert (feasible.flash_bytes <= hw.flash_bytes).all()
    best = json.loads((run / "best" / "arch.json").read_text())
    assert best["metrics"]["acc_int8"] >= 0.90
    assert best["metrics"]["acc_int8"] == df.acc_int8.max()
    report = (run / "report.md").read_text()
    assert "Pareto front" in report and "n_trials" in report
    study = optuna.load_study(
        study_name="cortex_m4-mobilenet-digits", storage=f"sqlite:///{run / 'study.db'}"
    )
    assert len(study.trials) == 3


@pytest.mark.slow
def test_infeasible_candidates_cost_no_training(cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=arduino_uno",
        "search.n_trials=6",
        "search.epochs=1",
        "sampler=random",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv")
    hw = load_profile("arduino_uno")
    infeasible = df[~df.feasible]
    assert len(infeasible) >= 1
    assert (infeasible.train_s == 0).all() and (infeasible.compress_s == 0).all()
    assert infeasible.acc_int8.isna().all()
    assert infeasible.reason.str.contains("sram|flash").all()
    feasible = df[df.feasible & (df.state == "COMPLETE")]
    assert (feasible.sram_bytes <= hw.sram_bytes).all()
    assert (feasible.flash_bytes <= hw.flash_bytes).all()
    assert (feasible.train_s > 0).all()
    # the sampler sees the limits as Optuna constraints (> 0: violated)
    study = optuna.load_study(
        study_name="arduino_uno-mobilenet-digits", storage=f"sqlite:///{run / 'study.db'}"
    )
    for t in study.trials:
        assert (max(t.constraints.values()) > 0) == (not t.user_attrs["feasible"])


@pytest.mark.slow
def test_storage_url_study_name_sampler_timeout(cli, tmp_path):
    db = tmp_path / "shared.db"
    for sampler in ("nsga2", "tpe"):
        proc = cli(
            "search",
            "+hw=cortex_m7",
            "search.n_trials=1",
            "search.epochs=1",
            "search.timeout_s=300",
            "search.seed=3",
            f"sampler={sampler}",
            *FAST,
            "study.name=shared",
            f"storage.url=sqlite:///{db}",
            f"hydra.run.dir={tmp_path / sampler}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2  # the second run continued the same study


@pytest.mark.slow
def test_failing_trial_is_recorded_and_study_goes_on(cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "search.n_trials=2",
        "search.epochs=1",
        "search.lr=1e30",
        "pruner.enabled=false",
        *FAST,
        f"hydra.run.dir={run}",
    )
    df = pd.read_csv(run / "trials.csv")
    assert len(df) == 2
    failed = df[df.state == "FAIL"]
    assert len(failed) >= 1 and failed.reason.str.contains("diverged").all()
    if len(failed) == len(df):  # nothing to show for the search: exit 1, reasons counted
        assert proc.returncode == 1, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: every trial failed (2 of 2): 2 x ") and "diverged" in last
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    report = (run / "report.md").read_text()
    assert "## Failures by reason" in report and "training diverged" in report


@pytest.mark.slow
def test_multirun_over_profiles(cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(
        "search",
        "-m",
        "+hw=cortex_m4,cortex_m7",
        "search.n_trials=1",
        "search.epochs=1",
        *FAST,
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for sub in ("0_hw=cortex_m4", "1_hw=cortex_m7"):  # every swept choice
        assert (sweep / sub / "trials.csv").is_file(), sorted(p.name for p in sweep.iterdir())
