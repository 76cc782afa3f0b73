"""The example third-party plugin works from `pip install` alone."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """The example installed into a folder of its own, from a copy: pip builds in the
    source folder, where test processes running side by side would build at once."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "nas-example-plugin"
    shutil.copytree(REPO / "examples" / "nas-example-plugin", source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(target)


@pytest.mark.slow
def test_example_plugin_is_listed_with_its_package(cli, plugin_path):
    proc = cli("list", "plugins", env={"PYTHONPATH": plugin_path})
    assert proc.returncode == 0, proc.stderr
    assert "nas-example-plugin==0.1.0" in proc.stdout and "nas_example_plugin" in proc.stdout


@pytest.mark.slow
def test_example_plugin_runs_in_a_search(cli, plugin_path, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "compression=[ptq,clip]",
        "backend=agreement",
        "compression.clip.percentile=99.0",
        "search.n_trials=2",
        "search.epochs=2",
        "search_space.resolutions=[8]",
        "search_space.widths=[8]",
        f"hydra.run.dir={run}",
        env={"PYTHONPATH": plugin_path},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv")
    done = df[df.state == "COMPLETE"]
    assert len(done) >= 1
    assert (done.clip_weights_clipped > 0).all()  # clip ran (before ptq, whatever the order)
    assert done.int8_float_agreement.between(0, 1).all()


def test_example_plugin_keeps_the_contract(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(plugin_path)
    from nas_example_plugin import AgreementBackend, ClipWeights

    from nas.testing import check_backend, check_compression_method

    check_compression_method(ClipWeights)
    check_backend(AgreementBackend)


@pytest.mark.slow
def test_a_bad_option_stops_the_run_before_training(cli, plugin_path, tmp_path):
    """Options are validated in the method's ``__init__`` (docs/plugins.md)."""
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "compression=[clip,ptq]",
        "compression.clip.percentile=150",
        "search.n_trials=1",
        f"hydra.run.dir={run}",
        env={"PYTHONPATH": plugin_path},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert "compression.clip.percentile=150.0: must be in (0, 100]" in err
    assert not (run / "trials.csv").exists()


def test_a_bad_option_is_refused_when_created_in_code(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(plugin_path)
    from nas_example_plugin import ClipConfig, ClipWeights

    from nas.errors import ConfigError

    with pytest.raises(ConfigError, match="percentile=0.0"):
        ClipWeights(ClipConfig(percentile=0.0))
