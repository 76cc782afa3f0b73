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
    finally:  # what the script added (its folder on the path, the runner it imports)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if not name.startswith(("nas", "torch", "optuna", "pandas", "numpy")):
                del sys.modules[name]
    assert stop.value.code in (0, None)
    assert f"usage: {Path(script).name}" in capsys.readouterr().out
