"""Comparing runs: the tidy DataFrame on hand-built studies, and the HTML in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution

from nas import report, report_html

DIST = {
    "resolution": CategoricalDistribution([8, 12]),
    "s1_width": CategoricalDistribution([8, 16]),
}


def _study(path, hw, trials):
    storage = f"sqlite:///{path / 'study.db'}"
    path.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=f"{hw}-s", storage=storage, directions=["maximize", "minimize"]
    )
    for key, value in {
        "hw": hw,
        "search_space": "mobilenet",
        "dataset": "digits",
        "backend": "estimate",
        "compression": ["ptq"],
    }.items():
        study.set_user_attr(key, value)
    for acc, lat, sram_excess, params, state in trials:
        feasible = sram_excess <= 0
        attrs = {
            "feasible": feasible,
            "latency_ms": lat,
            "sram_bytes": 1000,
            "flash_bytes": 10,
            "macs": 5,
            "train_s": 1.0 if feasible else 0.0,
        }
        if state == "COMPLETE" and feasible:
            attrs.update(acc_int8=acc, acc_float=acc + 0.01)
        if state == "FAIL":
            attrs["fail_reason"] = "boom"
        study.add_trial(
            optuna.trial.create_trial(
                state=getattr(optuna.trial.TrialState, state),
                values=[acc if feasible else 0.0, lat] if state == "COMPLETE" else None,
                params=params,
                distributions=DIST,
                user_attrs=attrs,
                constraints={"sram": sram_excess, "flash": -0.5},
            )
        )
    return path


@pytest.fixture
def two_runs(tmp_path):
    a = _study(
        tmp_path / "a",
        "cortex_m4",
        [
            (0.90, 1.0, -0.1, {"resolution": 8, "s1_width": 8}, "COMPLETE"),  # 0 front
            (0.95, 2.0, -0.1, {"resolution": 8, "s1_width": 16}, "COMPLETE"),  # 1 front
            (0.93, 3.0, -0.1, {"resolution": 12, "s1_width": 8}, "COMPLETE"),  # 2 dominated by 1
            (0.99, 0.5, 0.2, {"resolution": 12, "s1_width": 16}, "COMPLETE"),  # 3 infeasible
            (0.0, 0.0, -0.1, {"resolution": 8, "s1_width": 8}, "FAIL"),  # 4 failed
        ],
    )
    b = _study(
        tmp_path / "b",
        "arduino_uno",
        [
            (0.97, 5.0, -0.2, {"resolution": 8, "s1_width": 16}, "COMPLETE"),  # 0 front
            (0.80, 9.0, -0.2, {"resolution": 8, "s1_width": 8}, "COMPLETE"),  # 1 dominated
        ],
    )
    return a, b


def test_load_columns_and_pareto_flags(two_runs):
    df = report.load(two_runs)
    assert list(df.columns[: len(report.LOAD_COLUMNS)]) == report.LOAD_COLUMNS
    for col in (
        "number",
        "state",
        "feasible",
        "feasible_sram",
        "feasible_flash",
        "acc_int8",
        "latency_ms",
        "pareto_run",
        "pareto_all",
        "reason",
        "arch_resolution",
        "arch_s1_width",
    ):
        assert col in df.columns, col
    a = df[df.hw == "cortex_m4"].set_index("number")
    b = df[df.hw == "arduino_uno"].set_index("number")
    assert a.pareto_run.tolist() == [True, True, False, False, False]
    assert b.pareto_run.tolist() == [True, False]
    # across runs: uno trial 0 (0.97 @ 5 ms) is not beaten; uno 1 is beaten by m4 trial 1
    assert a.pareto_all.tolist() == [True, True, False, False, False]
    assert b.pareto_all.tolist() == [True, False]
    assert a.feasible_sram.tolist() == [True, True, True, False, True]
    assert a.loc[4, "state"] == "FAIL" and a.loc[4, "reason"] == "boom"
    assert set(df.compression) == {"ptq"}


def test_comparison_helpers(two_runs):
    df = report.load(two_runs)
    best = report.best_feasible(df).set_index("hw")
    assert best.loc["cortex_m4", "number"] == 1 and best.loc["arduino_uno", "number"] == 0
    front = report.pareto_front(df)
    assert sorted(zip(front.hw, front.number, strict=True)) == [
        ("arduino_uno", 0),
        ("cortex_m4", 0),
        ("cortex_m4", 1),
    ]
    same = report.same_architecture(df)  # resolution 8 / width 16 ran on both chips
    assert len(same) == 2 and {"acc_int8@cortex_m4", "acc_int8@arduino_uno"} <= set(same)
    effect = report.compression_effect(df)
    assert (effect.method == "ptq").all() and effect.change.round(6).eq(-0.01).all()
    assert len(effect) == 5  # feasible completed trials of both runs


def _table_cells(line: str) -> list[str]:
    """The cells of a Markdown table row, splitting at unescaped pipes only."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def assert_tables_render(md: str) -> None:
    """Every Markdown table has as many cells in each row as in its header."""
    header = None
    for line in md.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = _table_cells(line)
        if header is None:
            header = len(cells)
        assert len(cells) == header, line


def test_comparison_markdown_tables_render_with_named_architectures(two_runs):
    df = report.load(two_runs)
    md = report_html.markdown(df, [str(p) for p in two_runs])
    assert "## Same architecture on several targets" in md
    assert "mobilenet: resolution=8, s1_width=16" in md
    assert_tables_render(md)
    odd = pd.DataFrame({"a|b": ["x|y", "two\nlines"], "c": [1.5, float("nan")]})
    assert_tables_render(report.markdown_table(odd))


def _chromium():
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("NAS_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed but NAS_REQUIRE_BROWSER=1")
        pytest.skip("apt-get install chromium to render report.html")
    return path


def _browser(path, tmp_path, *args):
    return subprocess.run(
        [
            path,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_report_command_on_two_targets_renders_in_chromium(cli, tmp_path):
    chromium = _chromium()
    small = [
        "search.n_trials=3",
        "search.epochs=2",
        "backend=estimate",
        "search_space.resolutions=[8]",
        "search_space.stem_channels=[4]",
        "search_space.widths=[8]",
        "search_space.expansions=[1]",
        "search_space.depths=[1]",
    ]
    for hw in ("cortex_m4", "arduino_uno"):
        proc = cli("search", f"+hw={hw}", *small, f"hydra.run.dir={tmp_path / hw}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "cmp"
    proc = cli(
        "report", str(tmp_path / "cortex_m4"), str(tmp_path / "arduino_uno"), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(out / "comparison.csv")
    assert set(df.hw) == {"cortex_m4", "arduino_uno"} and len(df) == 6
    md = (out / "report.md").read_text()
    assert "## Which architecture to ship on which chip" in md and "arduino_uno" in md
    assert_tables_render(md)
    html = (out / "report.html").read_text()
    assert "<h1>mcu-nas comparison</h1>" in html and "Best per target: " in html
    assert "arduino_uno / mobilenet: int8 accuracy" in html
    assert html.count('"mode":"lines"') >= 3 * 2  # each Pareto plot: a front per target
    assert '"0 conv 3x3 -\\u003e' in html  # per-layer bars named by what the layer is
    assert "Report (Markdown)" not in html

    page = f"file://{out / 'report.html'}"
    dom = _browser(chromium, tmp_path, "--dump-dom", page)
    assert dom.returncode == 0
    assert "CONSOLE" not in dom.stderr, [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln]
    # 3 Pareto scatters + 2 histories + 2 per-layer charts per target, each drawn as SVG
    assert dom.stdout.count('class="main-svg"') >= 3 * (3 + 2 + 4)
    assert dom.stdout.count('class="point"') >= 6

    shot = tmp_path / "shot.png"
    _browser(chromium, tmp_path, "--window-size=1280,6000", f"--screenshot={shot}", page)
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 24) or []
    plot_bg = sum(n for n, c in colours if c == (229, 236, 246))  # plotly's plot area
    drawn = sum(n for n, c in colours if max(c) - min(c) > 80)  # saturated: markers, bars
    assert plot_bg > 0.05 * img.width * img.height, plot_bg
    assert drawn > 5000, drawn  # markers and the per-layer bar charts


@pytest.mark.slow
def test_bad_report_source_is_one_line(cli, tmp_path):
    proc = cli("report", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"error: report source '{tmp_path / 'missing'}' does not exist "
        "(a run directory or a URL)"
    )


def test_repeats_are_counted_apart_and_left_out_of_the_comparisons(tmp_path):
    """A repeat copies the trained trial's figures: the counts name it, and the front, the
    best trial and the compression effects take the trial that trained it alone."""
    path = _study(
        tmp_path / "r",
        "cortex_m4",
        [(0.90, 1.0, -0.1, {"resolution": 8, "s1_width": 8}, "COMPLETE")],
    )
    study = optuna.load_study(study_name="cortex_m4-s", storage=f"sqlite:///{path}/study.db")
    trained = study.trials[0]
    study.add_trial(
        optuna.trial.create_trial(
            values=trained.values,
            params=trained.params,
            distributions=DIST,
            user_attrs={**trained.user_attrs, "duplicate_of": 0, "train_s": 0.0},
            constraints={"sram": -0.1, "flash": -0.5},
        )
    )
    df = report.load([path])
    assert report.trained_mask(df).tolist() == [True, False]
    assert df.pareto_run.tolist() == [True, False]
    assert df.reason[1] == "same architecture as trial 0"
    counts = report.summary(df)
    assert (counts["trials"], counts["complete_feasible"], counts["repeats"]) == (2, 1, 1)
    assert len(report.compression_effect(df)) == 1
    assert report.best_feasible(df).number.tolist() == [0]
