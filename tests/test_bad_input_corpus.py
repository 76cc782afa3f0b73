"""The bad-input corpus: every row is a ``search`` command line that must be refused.

Each case runs in this process through `nas.__main__.main` under a time limit and must end
with its exit code, one ``error:`` line holding its fragment, no traceback, and nothing
written: neither its own run directory (a fresh one under ``tmp_path``) nor ``outputs/``.
The groups cover command-line values, samplers and pruner, ``search.enqueue``, the study's
clock, storages, run directories, datasets, plugins and hardware-profile overrides (the
file-level profile cases are in ``tests/test_hardware.py``).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from nas.__main__ import main

#: Seconds one in-process case may take (a case that hangs fails, it does not stall).
CASE_LIMIT_S = 20
HW = "+hw=cortex_m4"
#: The marker a case puts where its own (fresh) run directory goes.
RUN = "{run}"


class Case(NamedTuple):
    """One refused command line."""

    id: str
    args: list[str]
    fragment: str
    code: int = 2


def _cases(group: str, rows: list[tuple[str, list[str], str]]) -> list[Case]:
    return [Case(f"{group}-{name}", args, fragment) for name, args, fragment in rows]


VALUES = _cases(
    "values",
    [
        ("no-hw", [], "+hw=<profile>"),
        ("n_trials-type", [HW, "search.n_trials=many"], "search.n_trials"),
        ("n_trials-negative", [HW, "search.n_trials=-1"], "search.n_trials must be >= 0"),
        ("n_trials-float", [HW, "search.n_trials=1.5"], "search.n_trials"),
        ("workers-0", [HW, "search.workers=0"], "search.workers >= 1"),
        ("epochs-0", [HW, "search.epochs=0"], "search.epochs >= 1"),
        ("epochs-type", [HW, "search.epochs=ten"], "search.epochs"),
        ("timeout-negative", [HW, "search.timeout_s=-5"], "search.timeout_s=-5.0"),
        ("timeout-zero", [HW, "search.timeout_s=0"], "search.timeout_s=0.0"),
        ("timeout-type", [HW, "search.timeout_s=soon"], "search.timeout_s"),
        ("seed-negative", [HW, "search.seed=-1"], "search.seed=-1"),
        ("seed-huge", [HW, "search.seed=4294967296"], "search.seed=4294967296"),
        ("batch-0", [HW, "search.batch_size=0"], "search.batch_size=0"),
        ("batch-negative", [HW, "search.batch_size=-8"], "search.batch_size=-8"),
        ("lr-0", [HW, "search.lr=0"], "search.lr=0.0"),
        ("lr-negative", [HW, "search.lr=-0.1"], "search.lr=-0.1"),
        ("weight-decay", [HW, "search.weight_decay=-1"], "search.weight_decay=-1.0"),
        ("bool-type", [HW, "search.save_models=maybe"], "search.save_models"),
        ("unknown-key", [HW, "search.nope=1"], "search.nope"),
        ("unknown-top", [HW, "nope=1"], "nope"),
        ("unknown-study-key", [HW, "study.nope=1"], "study.nope"),
        ("objectives", [HW, "search.objectives=[latency_ms]"], "search.objectives"),
        ("objectives-unknown", [HW, "search.objectives=[acc_int8,flash]"], "search.objectives"),
        ("max-latency-0", [HW, "search.max_latency_ms=0"], "search.max_latency_ms=0"),
        ("min-macs", [HW, "search.min_macs=-5"], "search.min_macs=-5"),
        ("augment", [HW, "search.augment=rotate"], "search.augment=rotate is not valid"),
        ("parse", [HW, "x=[1,2"], "cannot parse the overrides"),
        ("sweep-unknown-hw", ["-m", "+hw=cortex_m4,pdp11"], "unknown hardware profile 'pdp11'"),
        ("sweep-bad-value", ["-m", HW, "search.epochs=1,0"], "search.epochs >= 1"),
    ],
)
SN = "search.strategy=supernet"
SUPERNET = _cases(
    "supernet",
    [
        ("strategy", [HW, "search.strategy=oneshot"], "search.strategy=oneshot"),
        ("epochs-0", [HW, SN, "search.supernet.epochs=0"], "search.supernet.epochs=0"),
        (
            "random-negative",
            [HW, SN, "search.supernet.random_subnets=-1"],
            "search.supernet.random_subnets=-1",
        ),
        ("bn-images-0", [HW, SN, "search.supernet.bn_images=0"], "search.supernet.bn_images=0"),
        ("finalists", [HW, SN, "search.supernet.finalists=-2"], "search.supernet.finalists=-2"),
        ("init", [HW, SN, "search.supernet.finalist_init=zeros"], "finalist_init=zeros"),
        ("no-supernet", [HW, SN, "search_space=bonsai"], "'bonsai' has no supernet"),
        ("path-dir", [HW, SN, "search.supernet.path=/"], "is not a regular file"),
        ("path-folder", [HW, SN, "search.supernet.path=/nonexistent/s.pt"], "does not exist"),
    ],
)
STUDY = _cases(
    "study",
    [
        ("heartbeat-0", [HW, "study.heartbeat_s=0"], "study.heartbeat_s=0.0"),
        ("heartbeat-negative", [HW, "study.heartbeat_s=-1"], "study.heartbeat_s=-1.0"),
        ("grace-negative", [HW, "study.grace_s=-5"], "study.grace_s=-5.0"),
        ("grace-few-beats", [HW, "study.grace_s=3", "study.heartbeat_s=1"], "3 heartbeats"),
        ("grace-below-beat", [HW, "study.grace_s=5", "study.heartbeat_s=10"], "study.grace_s"),
        ("retry-type", [HW, "study.retry_stale=often"], "study.retry_stale"),
    ],
)
SAMPLERS = _cases(
    "sampler",
    [
        ("unknown", [HW, "sampler=cmaes"], "unknown sampler 'cmaes'"),
        ("nsga2-population-1", [HW, "sampler=nsga2", "sampler.population_size=1"], ">= 2"),
        ("nsga2-population-0", [HW, "sampler=nsga2", "sampler.population_size=0"], ">= 2"),
        ("tpe-startup", [HW, "sampler.n_startup_trials=-1"], "sampler.n_startup_trials=-1"),
        ("tpe-unknown-key", [HW, "sampler.population_size=4"], "population_size"),
        ("pruner-startup", [HW, "pruner.n_startup_trials=-1"], "pruner.n_startup_trials"),
        ("pruner-warmup", [HW, "pruner.n_warmup_epochs=-2"], "pruner.n_warmup_epochs"),
        ("pruner-unknown", [HW, "pruner.nope=1"], "pruner.nope"),
    ],
)
ENQUEUE = _cases(
    "enqueue",
    [
        ("unknown-key", [HW, "search.enqueue=[{bogus:1}]"], "'bogus' is not a choice"),
        ("not-a-mapping", [HW, "search.enqueue=[1]"], "is not a mapping"),
        ("bad-value", [HW, "search.enqueue=[{resolution:5}]"], "search.enqueue"),
        (
            "second-entry",
            [HW, "search.enqueue=[{resolution:8},{depth:2}]"],
            "'depth' is not a choice",
        ),
        (
            "reference-family",
            [HW, "search_space=reference", "search.enqueue=[{family:transformer}]"],
            "search.enqueue",
        ),
        (
            "families-other-familys-choice",
            [HW, "search_space=families", "search.enqueue=[{family:mlp,dscnn_blocks:2}]"],
            "'dscnn_blocks' is not a choice",
        ),
    ],
)
STORAGES = _cases(
    "storage",
    [
        ("unknown-group", [HW, "storage=redis"], "unknown storage 'redis'"),
        ("scheme", [HW, "storage.url=redis://localhost/0"], "unsupported scheme 'redis'"),
        ("no-scheme", [HW, "storage.url=study.db"], "unsupported scheme"),
        ("memory", [HW, "storage.url=sqlite://"], "in-memory database"),
        ("memory-explicit", [HW, "storage.url=sqlite:///:memory:"], "in-memory database"),
        ("sqlite-no-folder", [HW, "storage.url=sqlite:////nonexistent/x/study.db"], "does not"),
        ("sqlite-directory", [HW, "storage.url=sqlite:////tmp"], "is a directory"),
        ("journal-no-folder", [HW, "storage=journal", "storage.url=journal:///no/x.log"], "no"),
        (
            "postgres-unreachable",
            [HW, "storage.url=postgresql://u:secret@127.0.0.1:1/db"],
            "cannot open the storage",
        ),
    ],
)
RUN_DIRS = _cases(
    "rundir",
    [
        ("file", [HW, "hydra.run.dir=/etc/hostname/run"], "not a directory"),
        ("proc", [HW, "hydra.run.dir=/proc/nas_run"], "hydra.run.dir '/proc/nas_run'"),
        ("sys", [HW, "hydra.run.dir=/sys/nas_run"], "hydra.run.dir '/sys/nas_run'"),
        ("sweep-file", ["-m", HW, "hydra.sweep.dir=/etc/hostname/s"], "not a directory"),
        ("is-a-file", [HW, "hydra.run.dir=/etc/hostname"], "not a directory"),
    ],
)
DATASETS = _cases(
    "dataset",
    [
        ("unknown", [HW, "dataset=imagenet"], "unknown dataset 'imagenet'"),
        ("positive-class-missing", [HW, "dataset.positive_class=10"], "not a class"),
        ("positive-class-negative", [HW, "dataset.positive_class=-1"], "not a class"),
        ("val-fraction-1", [HW, "dataset.val_fraction=1.0"], "dataset.val_fraction=1.0"),
        ("val-fraction-neg", [HW, "dataset.val_fraction=-0.1"], "dataset.val_fraction"),
        ("test-fraction", [HW, "dataset.test_fraction=2"], "dataset.test_fraction"),
        (
            "fractions-sum",
            [HW, "dataset.val_fraction=0.5", "dataset.test_fraction=0.5"],
            "sum must be < 1",
        ),
        (
            "empty-test-split",
            [HW, "dataset.val_fraction=0.99", "dataset.test_fraction=0"],
            "the test split is empty",
        ),
        ("unknown-option", [HW, "dataset.nope=1"], "dataset.nope"),
        ("seed-type", [HW, "dataset.seed=abc"], "dataset.seed"),
        (
            "fmnist-root",
            [HW, "dataset=fashion_mnist", "dataset.root=/nonexistent"],
            "not found under /nonexistent",
        ),
        ("folder-unset", [HW, "dataset=image_folder"], "dataset.root=(unset): not a folder"),
        (
            "folder-missing",
            [HW, "dataset=image_folder", "dataset.root=/nonexistent"],
            "not a folder",
        ),
        (
            "folder-no-classes",
            [HW, "dataset=image_folder", "dataset.root=/proc/self/fdinfo"],
            "no class folders",
        ),
        (
            "folder-channels",
            [HW, "dataset=image_folder", "dataset.channels=4"],
            "dataset.channels=4",
        ),
        ("folder-size", [HW, "dataset=image_folder", "dataset.size=2"], "dataset.size=2"),
        ("arrays-unset", [HW, "dataset=arrays"], "dataset.path=(unset)"),
        (
            "arrays-missing",
            [HW, "dataset=arrays", "dataset.path=/nonexistent.npz"],
            "no such file",
        ),
        (
            "arrays-not-npz",
            [HW, "dataset=arrays", "dataset.path=/etc/hostname"],
            "cannot read as .npz",
        ),
        (
            "fmnist-root-file",
            [HW, "dataset=fashion_mnist", "dataset.root=/etc/hostname"],
            "not found under",
        ),
        (
            "fmnist-subset-negative",
            [HW, "dataset=fashion_mnist", "dataset.train_subset=-3"],
            "dataset.train_subset=-3",
        ),
        (
            "fmnist-val-fraction",
            [HW, "dataset=fashion_mnist", "dataset.val_fraction=1"],
            "dataset.val_fraction",
        ),
    ],
)
FMNIST_SMALL = _cases(
    "dataset",
    [
        (
            "fmnist-3-images",
            [HW, "dataset=fashion_mnist", "dataset.train_subset=3"],
            "dataset 'fashion_mnist'",
        ),
        (
            "fmnist-1-test-class",
            [HW, "dataset=fashion_mnist", "dataset.train_subset=3", "dataset.test_subset=1"],
            "dataset 'fashion_mnist'",
        ),
    ],
)
PLUGINS = _cases(
    "plugin",
    [
        ("space-unknown", [HW, "search_space=resnet"], "unknown search_space 'resnet'"),
        ("backend-unknown", [HW, "backend=tensorrt"], "unknown backend 'tensorrt'"),
        ("compression-unknown", [HW, "compression=[ptq,zip]"], "unknown compression 'zip'"),
        ("space-option", [HW, "search_space.nope=1"], "search_space.nope"),
        ("space-option-type", [HW, "search_space.stages=three"], "search_space.stages"),
        ("space-empty-choices", [HW, "search_space.resolutions=[]"], "search_space"),
        ("space-negative-width", [HW, "search_space.widths=[-4]"], "search_space=mobilenet"),
        (
            "families-unknown",
            [HW, "search_space=families", "search_space.families=[resnet]"],
            "unknown family 'resnet'",
        ),
        (
            "families-nested-option",
            [HW, "search_space=families", "search_space.mobilenet.nope=1"],
            "search_space.mobilenet.nope",
        ),
        (
            "families-none-can-run",
            [HW, "search_space=families", "search_space.families=[bonsai]", "compression=[qat]"],
            "no family can run here",
        ),
        ("backend-option", [HW, "backend.nope=1"], "backend.nope"),
        ("c_sim-option-type", [HW, "backend=c_sim", "backend.sim_inputs=x"], "sim_inputs"),
        ("ptq-option", [HW, "compression.ptq.nope=1"], "compression.ptq.nope"),
        ("ptq-option-type", [HW, "compression.ptq.per_channel=maybe"], "per_channel"),
        ("prune-option-type", [HW, "compression=[prune,ptq]", "compression.prune.amount=x"], "x"),
        (
            "prune-amount-range",
            [HW, "compression=[prune,ptq]", "compression.prune.amount=1.5"],
            "compression.prune.amount=1.5 is not valid",
        ),
        (
            "ptq-calibration-range",
            [HW, "compression.ptq.calibration_samples=0"],
            "compression.ptq.calibration_samples=0",
        ),
        (
            "qat-momentum-range",
            [HW, "compression=[qat]", "compression.qat.momentum=0"],
            "compression.qat.momentum=0",
        ),
        (
            "distill-alpha-range",
            [HW, "compression=[distill,ptq]", "compression.distill.alpha=2"],
            "compression.distill.alpha=2",
        ),
        ("c-sim-inputs-range", [HW, "backend=c_sim", "backend.sim_inputs=0"], "sim_inputs=0"),
        ("no-quantization", [HW, "compression=[prune]"], "quantization"),
        (
            "cluster-bits-9",
            [HW, "compression=[cluster,ptq]", "compression.cluster.bits=9"],
            "compression.cluster.bits=9 is not valid",
        ),
        (
            "int4-weight-bits-3",
            [HW, "compression.ptq.weight_bits=3"],
            "compression.ptq.weight_bits=3 is not valid",
        ),
        (
            "int4-on-c-sim",
            [HW, "backend=c_sim", "compression.ptq.weight_bits=4"],
            "int4 weights run in TensorFlow Lite Micro only",
        ),
        (
            "int4-with-huffman",
            [HW, "compression=[ptq,huffman]", "compression.ptq.weight_bits=4"],
            "cannot be combined with huffman",
        ),
        (
            "cluster-with-qat",
            [HW, "compression=[cluster,qat]"],
            "use compression=[cluster,ptq]",
        ),
        (
            "int4-bonsai",
            [HW, "search_space=bonsai", "backend=estimate", "compression.ptq.weight_bits=4"],
            "the search space's models are not layer graphs",
        ),
        (
            "huffman-no-decoder",
            ["+hw=esp32", "compression=[ptq,huffman]"],
            "no measured 'huffman' weight decoder for esp32",
        ),
        (
            "cluster-no-decoder",
            ["+hw=arduino_uno", "backend=estimate", "compression=[cluster,ptq]"],
            "no measured 'cluster' weight decoder for arduino_uno",
        ),
        ("bonsai-tflm", [HW, "search_space=bonsai", "backend=tflm"], "bonsai"),
    ],
)
PROFILES = _cases(
    "profile",
    [
        ("unknown", ["+hw=cortex_m9"], "unknown hardware profile 'cortex_m9'"),
        ("sram-negative", [HW, "hw.sram_bytes=-1"], "sram_bytes"),
        ("sram-zero", [HW, "hw.sram_bytes=0"], "sram_bytes"),
        ("flash-negative", [HW, "hw.flash_bytes=-5"], "flash_bytes"),
        ("clock-type", [HW, "hw.clock_hz=fast"], "clock_hz"),
        ("hw-without-plus", ["hw=cortex_m9"], "unknown hardware profile 'cortex_m9'"),
    ],
)
ALL = (
    VALUES
    + SUPERNET
    + STUDY
    + SAMPLERS
    + ENQUEUE
    + STORAGES
    + RUN_DIRS
    + DATASETS
    + PLUGINS
    + PROFILES
)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"a bad-input case ran past {CASE_LIMIT_S} s")


def _run(case: Case, tmp_path: Path, monkeypatch, capsys) -> tuple[int, str, Path]:
    """Run ``case`` in a fresh working folder; its exit code, stderr and run directory."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    run_dir = tmp_path / "run"
    args = list(case.args)
    if not any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args):
        key = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
        args.append(f"{key}={run_dir}")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    try:
        code = main(["search", *args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, capsys.readouterr().err, run_dir


def _check(case: Case, code: int, err: str, run_dir: Path, work: Path) -> None:
    assert "Traceback" not in err, err
    assert code == case.code, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    assert case.fragment in lines[0], err
    assert not run_dir.exists(), sorted(p.name for p in run_dir.iterdir())
    assert not (work / "outputs").exists()


def test_corpus_size():
    """At least 80 cases, across every group."""
    assert len(ALL) + len(FMNIST_SMALL) + 1 >= 80  # + the study-objectives clash
    assert len({c.id for c in ALL + FMNIST_SMALL}) == len(ALL) + len(FMNIST_SMALL)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_refused(case, tmp_path, monkeypatch, capsys):
    code, err, run_dir = _run(case, tmp_path, monkeypatch, capsys)
    _check(case, code, err, run_dir, tmp_path / "cwd")


@pytest.mark.parametrize("case", FMNIST_SMALL, ids=[c.id for c in FMNIST_SMALL])
def test_too_small_fashion_mnist(case, tmp_path, monkeypatch, capsys, real_root):
    code, err, run_dir = _run(case, tmp_path, monkeypatch, capsys)
    _check(case, code, err, run_dir, tmp_path / "cwd")


def _limit_memory() -> None:
    limit = 4 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [ALL[0], VALUES[10], STORAGES[3], DATASETS[1]], ids=lambda c: c.id
)
def test_refused_in_a_process_under_limits(case, tmp_path):
    """A few cases as a user runs them, under a memory and a time limit."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "nas", "search", *case.args, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    _check(case, proc.returncode, proc.stderr, run_dir, tmp_path)


def test_a_study_with_other_objectives_is_refused(tmp_path, monkeypatch, capsys):
    """The clash is found once the storage is open: the run directory is removed again."""
    import optuna

    db = tmp_path / "other.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", direction="maximize")
    study.set_metric_names(["acc_int8"])
    case = Case(
        "study-objectives-clash",
        [HW, "study.name=s", f"storage.url=sqlite:///{db}", "backend=estimate"],
        "already exists with objectives [acc_int8]",
    )
    code, err, run_dir = _run(case, tmp_path, monkeypatch, capsys)
    _check(case, code, err, run_dir, tmp_path / "cwd")
