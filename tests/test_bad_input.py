"""Bad input: one clear line, exit code 2, no traceback, nothing written over."""

from __future__ import annotations

import math
import random
import string

import optuna
import pytest
import yaml

from nas.__main__ import main
from nas.errors import NasError, ProfileError
from nas.hardware import BUILTIN_DIR, load_profile
from nas.validate import check_search_args

M4 = yaml.safe_load((BUILTIN_DIR / "cortex_m4.yaml").read_text())


def _profile(tmp_path, mutate, name="custom"):
    data = yaml.safe_load(yaml.safe_dump(M4))
    data["name"] = name
    mutate(data)
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def _error_line(capsys, args, *needles):
    assert main(["search", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ([], ["+hw=<profile>", "cortex_m4"]),
        (["+hw=cortex_m9"], ["unknown hardware profile 'cortex_m9'", "arduino_uno"]),
        (["+hw=cortex_m4", "search_space=resnet"], ["unknown search_space 'resnet'", "mobilenet"]),
        (["+hw=cortex_m4", "dataset=imagenet"], ["unknown dataset 'imagenet'", "digits"]),
        (["+hw=cortex_m4", "backend=tensorrt"], ["unknown backend 'tensorrt'", "tflm"]),
        (["+hw=cortex_m4", "compression=[ptq,zip]"], ["unknown compression 'zip'", "ptq"]),
        (["+hw=cortex_m4", "sampler=cmaes"], ["unknown sampler 'cmaes'", "tpe, nsga2, random"]),
        (["+hw=cortex_m4", "storage=redis"], ["unknown storage 'redis'", "sqlite, journal"]),
        (["+hw=cortex_m4", "search.n_trials=many"], ["search.n_trials", "Integer"]),
        (["+hw=cortex_m4", "search.nope=1"], ["search.nope"]),
        (["+hw=cortex_m4", "search.workers=0"], ["search.workers >= 1"]),
        (
            ["+hw=cortex_m4", "search.objectives=[latency_ms]"],
            ["search.objectives=[latency_ms]", "[acc_int8,latency_ms] or [acc_int8]"],
        ),
        (["+hw=cortex_m4", "search.max_latency_ms=0"], ["search.max_latency_ms=0", "positive"]),
        (["+hw=cortex_m4", "search.min_macs=-5"], ["search.min_macs=-5", "positive"]),
        (["+hw=cortex_m4", "hw.sram_bytes=-5"], ["cortex_m4.yaml", "sram_bytes", "> 0"]),
        (["+hw=cortex_m4", "x=[1,2"], ["cannot parse the overrides"]),
        (["-m", "+hw=cortex_m4,pdp11"], ["unknown hardware profile 'pdp11'"]),
        (
            ["+hw=cortex_m4", "hydra.run.dir=/etc/hostname/run"],
            ["/etc/hostname", "not a directory"],
        ),
    ],
)
def test_bad_command_lines(capsys, args, needles):
    _error_line(capsys, args, *needles)


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [
        (lambda d: d.pop("flash_bytes"), ["missing required field 'flash_bytes'"]),
        (lambda d: d.__setitem__("clock_hz", "fast"), ["'clock_hz' must be a integer"]),
        (lambda d: d.__setitem__("sram_bytes", -1024), ["'sram_bytes' must be > 0"]),
        (lambda d: d["latency_lut"].pop("add"), ["latency_lut has no entry for add", "mobilenet"]),
    ],
)
def test_malformed_profiles(capsys, monkeypatch, tmp_path, mutate, needles):
    monkeypatch.setenv("NAS_HARDWARE_PROFILES", str(_profile(tmp_path, mutate)))
    _error_line(capsys, ["+hw=custom"], "custom.yaml", *needles)


def test_nothing_written_over(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.csv").write_text("precious")
    _error_line(capsys, ["+hw=cortex_m4", "sampler=cmaes", f"hydra.run.dir={run}"])
    assert [p.name for p in run.iterdir()] == ["trials.csv"]
    assert (run / "trials.csv").read_text() == "precious"


@pytest.mark.slow
def test_unreachable_storage(cli, tmp_path):
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "storage.url=postgresql://nas:nas@127.0.0.1:1/none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "storage.url 'postgresql://nas:***@127.0.0.1:1/none'" in err[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # no .hydra/, no search.log, no directory


@pytest.mark.slow
def test_a_late_error_restores_an_earlier_run(cli, tmp_path):
    """A search that stops on bad input in an existing run directory leaves it as it was."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("earlier")
    (run / "notes.txt").write_text("mine")
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "storage.url=sqlite:////nonexistent/dir/x.db",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in run.rglob("*")) == [".hydra", "config.yaml", "notes.txt"]
    assert (run / ".hydra" / "config.yaml").read_text() == "earlier"


@pytest.mark.slow
def test_study_with_other_objectives(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="clash", storage=url, direction="minimize")
    proc = cli(
        "search",
        "+hw=cortex_m4",
        f"storage.url={url}",
        "study.name=clash",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "already exists with objectives [minimize]" in err[0], err
    assert not (tmp_path / "run").exists()


def _random_override(rng: random.Random) -> str:
    keys = [
        "search.n_trials",
        "search.epochs",
        "search.seed",
        "search.timeout_s",
        "sampler",
        "dataset",
        "search_space",
        "backend",
        "compression",
        "storage",
        "storage.url",
        "study.name",
        "hw.sram_bytes",
        "hw.latency_lut",
        "pruner.enabled",
        "search",
        "+hw",
        "hw",
        "~search",
        "++search.lr",
        "search_space.widths",
        "zz",
    ]
    alphabet = string.ascii_letters + string.digits + "[],.=:'\"{}$-_/ +~@"
    value = rng.choice(
        [
            str(rng.randint(-5, 10**6)),
            "".join(rng.choices(alphabet, k=rng.randint(0, 12))),
            "[" + ",".join(str(rng.randint(0, 40)) for _ in range(rng.randint(0, 3))) + "]",
            rng.choice(["tpe", "nsga2", "random", "ptq", "mobilenet", "digits", "null", "true"]),
        ]
    )
    return f"{rng.choice(keys)}={value}" if rng.random() < 0.9 else value


def test_fuzz_overrides_never_traceback():
    rng = random.Random(0)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(150):
        args = ["+hw=cortex_m4"] + [_random_override(rng) for _ in range(rng.randint(1, 3))]
        try:
            check_search_args(args)
            outcomes["ok"] += 1
        except NasError as exc:
            assert "\n" not in str(exc), args
            outcomes["error"] += 1
    assert outcomes["error"] > 50 and outcomes["ok"] > 0


def _mutate_randomly(rng: random.Random, data):
    if isinstance(data, dict) and data and rng.random() < 0.7:
        key = rng.choice(list(data))
        choice = rng.random()
        if choice < 0.25:
            data.pop(key)
        elif choice < 0.5:
            data[key] = rng.choice([None, -1, 0, "x", [], {}, 1e309, True, "1e3"])
        else:
            data[key] = _mutate_randomly(rng, data[key])
        return data
    return rng.choice([None, -7, "", [1, 2], {"a": 1}, 3.5, False])


def test_fuzz_profile_files_never_traceback(tmp_path):
    rng = random.Random(1)
    outcomes = {"ok": 0, "error": 0}
    for i in range(200):
        path = tmp_path / f"p{i}.yaml"
        if rng.random() < 0.1:
            path.write_bytes(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 64))))
        else:
            data = yaml.safe_load(yaml.safe_dump(M4))
            for _ in range(rng.randint(1, 3)):
                data = _mutate_randomly(rng, data)
            path.write_text(yaml.safe_dump(data))
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), exc
            outcomes["error"] += 1
        else:  # what was accepted must be a usable profile, not a half-read one
            assert profile.sram_bytes > 0 and profile.flash_bytes > 0 and profile.clock_hz > 0
            assert profile.latency_lut and all(
                math.isfinite(e.cycles_per_mac) for e in profile.latency_lut.values()
            )
            outcomes["ok"] += 1
    # Both outcomes must occur, or the fuzzing did not reach the validator's decisions.
    assert outcomes["error"] > 100 and outcomes["ok"] > 0, outcomes


def test_multirun_sweeps_are_checked_per_combination():
    args = ["-m", "hw=cortex_m4,cortex_m7", "sampler=tpe,random"]
    assert check_search_args(args) == ["-m", "+hw=cortex_m4,cortex_m7", "sampler=tpe,random"]
    with pytest.raises(NasError, match="unknown sampler 'cmaes'"):
        check_search_args(["-m", "+hw=cortex_m4,cortex_m7", "sampler=tpe,cmaes"])


def test_a_search_whose_every_trial_failed_exits_1_with_the_reasons(capsys, monkeypatch, tmp_path):
    import nas.search

    def boom(self, trial):
        raise RuntimeError("boom")

    monkeypatch.setattr(nas.search.Objective, "_run", boom)
    run = tmp_path / "run"
    args = ["+hw=cortex_m4", "search.n_trials=2", "backend=estimate", f"hydra.run.dir={run}"]
    assert main(["search", *args]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert lines == ["error: every trial failed (2 of 2): 2 x RuntimeError: boom"], err
    assert (run / "trials.csv").is_file()  # the report of what happened is still written


def test_a_repeat_does_not_copy_retry_of_from_its_twin():
    from nas.record import ACC_INT8, DUPLICATE_OF, FEASIBLE, RETRY_OF
    from nas.search import Objective

    study = optuna.create_study(directions=["maximize"])
    dist = optuna.distributions.CategoricalDistribution([8, 16])
    twin = optuna.trial.create_trial(
        params={"w": 8},
        distributions={"w": dist},
        values=[0.5],
        user_attrs={RETRY_OF: 3, FEASIBLE: True, ACC_INT8: 0.5},
    )
    study.add_trial(twin)
    trial = study.ask({"w": dist})
    Objective.repeat(Objective.__new__(Objective), trial, study.trials[0])
    attrs = study._storage.get_trial(trial._trial_id).user_attrs
    assert attrs[DUPLICATE_OF] == 0 and attrs[ACC_INT8] == 0.5
    assert RETRY_OF not in attrs
