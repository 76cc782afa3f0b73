"""``search.strategy=supernet``: the elastic MobileNet-like network, its checkpoints, and
the search that scores candidates with inherited weights (`nas.supernet`)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from nas_space_mobilenet import MobileNetConfig, MobileNetSearchSpace

from nas.__main__ import main
from nas.config import register_configs
from nas.data import IMAGES, WINDOWS
from nas.errors import ConfigError
from nas.hardware import load_profile
from nas.search import Objective, build_components
from nas.spaces import build_model
from nas.supernet import open_supernet, train_supernet

HW = "+hw=cortex_m4"
#: A small space, so that a supernet trains on digits in seconds.
TINY = [
    "search_space.resolutions=[8,12]",
    "search_space.stem_channels=[4,8]",
    "search_space.stages=2",
    "search_space.widths=[4,8]",
    "search_space.depths=[0,1,2]",
    "search_space.kernels=[3,5]",
    "search_space.expansions=[1,2]",
]
SN = ["search.strategy=supernet", "search.supernet.epochs=2", "search.batch_size=64"]


def _space() -> MobileNetSearchSpace:
    return MobileNetSearchSpace(
        MobileNetConfig(stem_strides=[1, 2], widths=[8, 16, 24], expansions=[1, 2, 4])
    )


def _net_with_random_statistics(space: MobileNetSearchSpace):
    torch.manual_seed(0)
    net = space.supernet(3, 5)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("kind", [IMAGES, WINDOWS])
def test_extracted_subnet_computes_what_the_supernet_computes(kind):
    """For the largest, the smallest and random subnets (skipped stages, stem stride 2,
    kernels cropped, residual and non-residual blocks), on images and on sensor windows
    (k x 1 kernels cropped from the shared k x k ones)."""
    space = _space()
    net = _net_with_random_statistics(space)
    rng = random.Random(0)
    specs = [net.largest(), net.smallest(), *(net.random(rng) for _ in range(12))]
    assert len({json.dumps(s, sort_keys=True) for s in specs}) == len(specs)
    for spec in specs:
        module, shape = build_model(space, spec, 3, 5, kind)
        x = torch.rand(3, *shape[1:])
        module = net.extract(spec, module)
        with torch.no_grad():
            assert torch.allclose(net(x, spec), module(x), atol=1e-5), spec


def test_extracted_subnet_has_the_static_cost_of_the_stand_alone_architecture():
    space, hw = _space(), load_profile("cortex_m4")
    net = _net_with_random_statistics(space)
    rng = random.Random(1)
    for spec in [net.largest(), *(net.random(rng) for _ in range(5))]:
        shape = (1, 3, space.resolution(spec), space.resolution(spec))
        alone = space.build(spec, 3, 5).eval()
        extracted = net.extract(spec, space.build(spec, 3, 5))
        costs = [space.cost(m, space.trace(m, shape, "x"), hw) for m in (alone, extracted)]
        assert costs[0] == costs[1]


def test_subnet_choices_stay_inside_the_space():
    space = _space()
    net = space.supernet(1, 10)
    c = space.config
    big, small = net.largest(), net.smallest()
    assert big["resolution"] == max(c.resolutions) and small["resolution"] == min(c.resolutions)
    assert big["stem_stride"] == 1 and small["stem_stride"] == 2
    assert big["s2_depth"] == max(c.depths) and small["s2_depth"] == 0
    assert small["s1_depth"] == 1  # the first stage is never skipped
    rng = random.Random(2)
    for spec in (net.random(rng) for _ in range(50)):
        assert spec["s1_depth"] > 0 and spec["s2_width"] in c.widths


def _scored_study(rows: list[tuple[float, float]]):
    """A study of supernet-scored candidates with these (acc_int8, latency_ms)."""
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (acc, lat) in enumerate(rows):
        attrs = {"scored_by": "supernet", "feasible": True, "acc_int8": acc, "latency_ms": lat}
        study.add_trial(
            optuna.trial.create_trial(
                params={"w": i},
                distributions={"w": optuna.distributions.IntDistribution(0, 100)},
                values=[acc, lat],
                user_attrs=attrs,
            )
        )
    return study


def test_finalists_by_accuracy_or_spread_along_the_inherited_front():
    from nas.search import finalist_sources

    # (acc, latency): the front is 0 (0.9, 9 ms), 2 (0.8, 5), 4 (0.7, 3), 5 (0.5, 1)
    rows = [(0.9, 9.0), (0.85, 9.5), (0.8, 5.0), (0.75, 6.0), (0.7, 3.0), (0.5, 1.0)]
    study = _scored_study(rows)
    numbers = lambda ts: [t.number for t in ts]  # noqa: E731
    assert numbers(finalist_sources(study, 3)) == [0, 1, 2]
    assert numbers(finalist_sources(study, 3, by_latency=True)) == [0, 4, 5]
    assert numbers(finalist_sources(study, 4, by_latency=True)) == [0, 2, 4, 5]
    assert numbers(finalist_sources(study, 6, by_latency=True)) == [0, 2, 4, 5, 1, 3]
    assert numbers(finalist_sources(study, 1, by_latency=True)) == [0]


def _cfg(*overrides: str):
    register_configs(["cortex_m4"])
    with initialize_config_module("nas.conf", version_base="1.3"):
        return compose("config", overrides=[HW, *TINY, *SN, *overrides])


def test_a_supernet_trained_for_other_options_is_refused(tmp_path, monkeypatch, capsys):
    path = tmp_path / "sn.pt"
    cfg = _cfg(f"search.supernet.path={path}", "search.supernet.epochs=1")
    comp = build_components(cfg)
    obj = Objective(cfg, comp, tmp_path)
    train_supernet(open_supernet(cfg, comp.space, comp.data, tmp_path), obj.data_at, cfg)
    assert torch.load(path, weights_only=True)["complete"]
    assert open_supernet(cfg, comp.space, comp.data, tmp_path).trained  # reused as it is
    other = _cfg(f"search.supernet.path={path}", "search.supernet.epochs=1", "search.seed=3")
    with pytest.raises(ConfigError, match=r"seed=0 \(this search: 3\)"):
        open_supernet(other, comp.space, comp.data, tmp_path)
    # As a user meets it: one line, exit 2, no run directory.
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    code = main(
        [
            "search",
            HW,
            *TINY[:-1],
            "search_space.expansions=[1,2,3]",
            *SN,
            "search.supernet.epochs=1",
            f"search.supernet.path={path}",
            f"hydra.run.dir={run_dir}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "was trained for other settings: search_space.expansions=[1, 2]" in err
    assert not run_dir.exists()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a supernet checkpoint"):
        open_supernet(cfg, comp.space, comp.data, tmp_path)


def _search(run_dir: Path, *extra: str) -> subprocess.Popen:
    args = [HW, *TINY, *SN, "search.n_trials=12", "search.epochs=2", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "nas", "search", *args, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_killed_training_resumes_and_the_search_finishes_its_finalists(tmp_path):
    """Killed (SIGKILL) after the first epoch's checkpoint, the same command resumes at
    the second epoch and ends with the weights of an uninterrupted run; the search then
    scores its candidates on the supernet and trains its finalists."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = _search(killed, "search.supernet.epochs=3", "search.objectives=[acc_int8]")
    ckpt = killed / "supernet.pt"
    deadline = time.monotonic() + 300
    while not (ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not torch.load(ckpt, weights_only=True)["complete"]
    spent = torch.load(ckpt, weights_only=True)["cpu_s"]
    resumed = _search(killed, "search.supernet.epochs=3", "search.objectives=[acc_int8]")
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    # the checkpoint's CPU time counts the killed process's epoch and the resumed ones
    assert 0 < spent < torch.load(ckpt, weights_only=True)["cpu_s"]
    # training goes on after the checkpoint's epoch (one line per epoch: no terminal here)
    assert "supernet epoch 1/3" not in out and "supernet epoch 2/3" in out
    ref = _search(
        whole, "search.supernet.epochs=3", "search.objectives=[acc_int8]", "search.report=false"
    )
    assert ref.wait(timeout=600) == 0
    a = torch.load(ckpt, weights_only=True)["model"]
    b = torch.load(whole / "supernet.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)

    df = pd.read_csv(killed / "trials.csv")
    inherited = df[df.scored_by == "supernet"]
    finalists = df[df.finalist_of.notna()]
    assert len(inherited) == 12 and len(finalists) == 3
    assert (finalists.scored_by == "tflm").all() and finalists.train_s.gt(0).all()
    assert not inherited.pareto.any() and finalists.pareto.any()
    best = json.loads((killed / "best" / "arch.json").read_text())
    assert best["trial"] in set(finalists.number)
    sources = set(finalists.finalist_of.astype(int))
    first = inherited.get("duplicate_of", pd.Series(index=inherited.index)).isna()
    top = inherited[inherited.feasible & first].sort_values("acc_int8", ascending=False)
    assert top.acc_int8.iloc[2] <= min(df.set_index("number").acc_int8[list(sources)])
    assert "scored on the supernet" in out
    # Run again: the trained supernet and the finished finalists are reused.
    again = _search(
        killed, "search.supernet.epochs=3", "search.objectives=[acc_int8]", "search.n_trials=0"
    )
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out
    assert "supernet:" not in out and "finalists:" not in out
    assert len(pd.read_csv(killed / "trials.csv")) == len(df)


@pytest.mark.slow
def test_workers_score_on_the_trained_supernet_and_the_first_process_finishes(tmp_path):
    """Two processes: the first trains the supernet before the second starts, the second
    scores its share with it, and only the first trains the finalists, once both are done."""
    run = tmp_path / "run"
    args = ["search.supernet.epochs=1", "search.workers=2", "search.supernet.finalists=2"]
    proc = _search(run, *args)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    df = pd.read_csv(run / "trials.csv")
    assert (df.scored_by == "supernet").sum() == 12
    assert df.finalist_of.notna().sum() == 2
    worker_log = (run / "worker_1.log").read_text()
    assert "supernet:" not in worker_log and "finalists" not in worker_log
    assert (
        "12 feasible candidates were scored with weights inherited"
        in (run / "report.md").read_text()
    )


@pytest.mark.slow
def test_ctrl_c_during_supernet_training_keeps_the_last_epoch(tmp_path):
    """Ctrl-C while the supernet trains: exit 130, no traceback, the checkpoint of the
    last finished epoch kept, and a report written."""
    from conftest import spawn_cli

    run = tmp_path / "run"
    args = [HW, *TINY, *SN, "search.supernet.epochs=50", "search.n_trials=2"]
    p = spawn_cli("search", *args, f"hydra.run.dir={run}")
    ckpt = run / "supernet.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    state = torch.load(ckpt, weights_only=True)
    assert 1 <= state["epoch"] < 50 and not state["complete"]
    assert (run / "report.md").is_file()
