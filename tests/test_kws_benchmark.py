"""The keyword-spotting benchmark runner (`benchmarks/kws/run.py`) on the Fashion-MNIST
runner's machinery, which it imports: its commands are valid searches, and a whole call
(every method's search and finalize, then the report, and the report again with
``--report-only``) works on a tiny synthetic folder."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import need_tools

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kws():
    """The runner, loaded as `test_reference` loads the Fashion-MNIST one; what it adds to
    ``sys.path`` and ``sys.modules`` (the Fashion-MNIST runner as ``run``) is taken away
    afterwards."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("kws_run", REPO / "benchmarks/kws/run.py")
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runner  # its dataclasses look it up
    try:
        spec.loader.exec_module(runner)
        yield runner
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name in ("kws_run", "run", "plots"):
                del sys.modules[name]


def test_the_commands_are_valid_searches_of_each_method(kws, tmp_path):
    """Every method's search command passes the search's own validation on a synthetic
    Speech Commands folder (the budget with the front-end, the spaces, the DS-CNN)."""
    need_tools(("espeak-ng",), "espeak-ng")
    from nas.synthetic import speech_commands_folder
    from nas.validate import check_search_args

    root = speech_commands_folder(tmp_path / "sc", 4, seed=3, others=("bed",), per_other=4)
    recipe = dataclasses.replace(kws.QUICK, root=str(root), cache_dir=str(tmp_path / "c"))
    for method in ("search", "random", "dscnn"):
        args = recipe.search_command(kws.BUDGET, method, 0, tmp_path / method)
        assert args[0] == "search"
        check_search_args(args[1:])
        assert "dataset=speech_commands" in args and "backend=tflm" in args
        assert "hw.sram_bytes=32768" in args and "hw.flash_bytes=65536" in args
    assert kws.dscnn() == {"family": "dscnn", "width": 64, "resolution": 49}


@pytest.mark.slow
def test_the_quick_benchmark_runs_each_method_then_reports(kws, tmp_path):
    """The whole pipeline for real on a tiny synthetic folder: search, random search and
    the DS-CNN (trained once), each finalized without a teacher and scored in TFLite
    Micro, the front-end's RAM counted in the report, and ``--report-only`` rebuilding
    the same report from the runs folder."""
    need_tools(("espeak-ng",), "espeak-ng")
    paths = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    cmd = [sys.executable, "benchmarks/kws/run.py", "--quick", "--per-word", "20", "--root",
           str(tmp_path / "speech"), "--jobs", "1", "--threads", "1", *paths]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out"
    df = pd.read_csv(out / "results.csv").set_index("method")
    assert sorted(df.index) == ["dscnn", "random", "search"]
    assert df["acc_int8_test"].between(0.0, 1.0).all() and df["fits"].all()
    assert (df["scored_by"] == "tflm").all() and (df["final_cpu_s"] > 0).all()
    front = kws.frontend()["frontend_sram_bytes"]
    assert (df["sram_bytes"] == df["arena_bytes"] + front).all()
    assert json.loads(df.loc["dscnn", "arch"]) == kws.dscnn()
    final_log = (tmp_path / "runs" / kws.BUDGET / "search-s0" / "final.log").read_text()
    assert "--teacher none" in final_log.splitlines()[0]
    report = (out / "RESULTS.md").read_text()
    assert "| DS-CNN (MLPerf Tiny KWS shape) | 0." in report
    assert (out / "models" / kws.BUDGET / "dscnn" / "seed0" / "model.tflite").is_file()
    (out / "RESULTS.md").unlink()
    r = subprocess.run([*cmd[:2], "--report-only", *paths], cwd=REPO, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "RESULTS.md").read_text() == report
