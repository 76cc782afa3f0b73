"""Every benchmark script still loads against today's code and parses its own options:
each one is run as ``python SCRIPT -h`` would run it (in this process, so torch is
imported once). A renamed function or option the script uses fails here, not months later
when someone reruns the benchmark. What the scripts measure is tested where they have a
quick mode (`test_reference`, `test_kws_benchmark`)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPTS = sorted(
    p.relative_to(REPO).as_posix()
    for p in (REPO / "benchmarks").rglob("*.py")
    if 'if __name__ == "__main__":' in p.read_text()  # not the modules they share
)


def test_the_scripts_are_found():
    assert "benchmarks/fashion_mnist/run.py" in SCRIPTS and len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_loads_and_prints_its_help(script, monkeypatch, capsys, tmp_path):
    path, modules = list(sys.path), set(sys.modules)
    monkeypatch.chdir(tmp_path)  # a script that ignored -h writes nothing into the checkout
    monkeypatch.setattr(sys, "argv", [script, "-h"])
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(REPO / script), run_name="__main__")
    finally:  # what the script added: its folder on the path, the sibling it imports
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if Path(file).is_relative_to(REPO / "benchmarks"):
                del sys.modules[name]
    assert stop.value.code in (0, None)
    assert f"usage: {Path(script).name}" in capsys.readouterr().out


def test_proxy_noise_counts_the_finalists_both_samples_choose(tmp_path):
    """`benchmarks/fashion_mnist/proxy_noise.py` on a run of five scored candidates, one
    pruned trial and one repeat: validation picks 0 and 1, the test images 1 and 2; the
    final recipe kept the finalist with the better validation score."""
    import pandas as pd

    noise = runpy.run_path(str(REPO / "benchmarks/fashion_mnist/proxy_noise.py"))
    trials = pd.DataFrame(
        {
            "number": range(7),
            "state": ["COMPLETE"] * 5 + ["PRUNED", "COMPLETE"],
            "acc_int8": [0.90, 0.89, 0.88, 0.87, 0.86, None, 0.90],
            "acc_int8_test": [0.87, 0.90, 0.89, 0.86, 0.85, None, 0.87],
            "duplicate_of": [None] * 6 + [0],
            "feasible": True,
            "family": ["cnn", "cnn", "mlp", "cnn", "mlp", "cnn", "cnn"],
            "arch_resolution": [28, 28, 20, 16, 20, 28, 28],
        }
    )
    run = tmp_path / "search-s0"
    (run / "final").mkdir(parents=True)
    pd.DataFrame(
        {
            "number": [20, 21],
            "state": "COMPLETE",
            "feasible": True,
            "family": ["cnn", "mlp"],
            "arch_resolution": [28, 20],
            "acc_int8": [0.91, 0.92],
            "acc_int8_test": [0.9125, 0.9050],
            "latency_ms": [30.0, 2.0],
        }
    ).to_csv(run / "final" / "trials.csv", index=False)
    row = noise["run_row"]("m4-tight", run, trials)
    assert row["trained: family@resolution, candidates (best validation)"] == (
        "cnn@28 2 (0.900), mlp@20 2 (0.880), cnn@16 1 (0.870)"
    )
    assert row["final model (test)"] == "mlp@20 0.9050"
    assert row["repeated proposals"] == "1 (1 of trial 0)"
    assert row["candidates"] == 5
    assert row["finalists also top by test"] == "1 of 2"
    assert row["top-5 spread (pt)"] == 4.0
    assert row["tau(val, test)"] == 0.6  # 8 of 10 pairs in the same order
    # val - test: 3, -1, -1, 1, 1 points; their standard deviation 1.67, over sqrt(2)
    assert row["ranking noise of a 1,000-image score (pt)"] == 1.18
    assert noise["run_row"]("m4-tight", run, trials.iloc[1:5]) is None
    assert noise["final_model"]("m4-tight", tmp_path / "not-finalized") == ""
