"""Many workers on one study, kill and resume, Ctrl-C: real processes, real storages."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
import weakref

import optuna
import pandas as pd
import pytest
import yaml
from conftest import spawn_cli

from nas.interrupt import CtrlC

FAST = [
    "search_space.resolutions=[8]",
    "search_space.widths=[8,16]",
    "search.epochs=1",
    "backend=estimate",
]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # several workers share 2 cores
optuna.logging.set_verbosity(optuna.logging.ERROR)


def _no_duplicates_no_losses(study: optuna.Study, expected: int) -> None:
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(trials) == expected
    assert sorted(numbers) == list(range(expected))  # none duplicated, none lost
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_search_workers_share_one_sqlite_study(cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "search.workers=3",
        "search.n_trials=5",
        *FAST,
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(
        study_name="cortex_m4-mobilenet-digits", storage=f"sqlite:///{run / 'study.db'}"
    )
    _no_duplicates_no_losses(study, 5)
    assert len(pd.read_csv(run / "trials.csv")) == 5
    assert (run / "worker_1.log").is_file() and (run / "worker_2.log").is_file()
    # the run's config files show the user's command, not a worker's
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert overrides == ["+hw=cortex_m4", "search.workers=3", "search.n_trials=5", *FAST]


@pytest.mark.slow
def test_journal_storage_two_processes(tmp_path):
    url = f"journal://{tmp_path / 'study.log'}"
    procs = [
        spawn_cli(
            "search",
            "+hw=cortex_m7",
            "search.n_trials=2",
            f"search.seed={k}",
            *FAST,
            "study.name=j",
            f"storage.url={url}",
            f"hydra.run.dir={tmp_path / f'run{k}'}",
            env=ONE_THREAD,
        )
        for k in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
    _no_duplicates_no_losses(optuna.load_study(study_name="j", storage=storage), 4)


@pytest.mark.slow
def test_four_workers_on_postgresql(postgres_url, tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    procs = [
        spawn_cli(
            "search",
            "+hw=cortex_m4",
            "search.n_trials=2",
            f"search.seed={k}",
            *FAST,
            f"study.name={name}",
            f"storage.url={postgres_url}",
            f"hydra.run.dir={tmp_path / f'w{k}'}",
            env=ONE_THREAD,
        )
        for k in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=name, storage=postgres_url)
    _no_duplicates_no_losses(study, 8)
    # the last worker's report accounts for every trial of the shared study
    sizes = [len(pd.read_csv(tmp_path / f"w{k}" / "trials.csv")) for k in range(4)]
    assert max(sizes) == 8


def _wait_for(predicate, proc, timeout_s: float = 900.0) -> None:
    """Poll until ``predicate()``; on timeout kill ``proc`` so that no worker outlives the
    test (generous: a loaded CI machine trains slowly)."""
    end = time.time() + timeout_s
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("condition not reached in time")


def _states(db) -> list[str]:
    if not db.exists():
        return []
    try:
        study = optuna.load_study(
            study_name="cortex_m4-mobilenet-digits", storage=f"sqlite:///{db}"
        )
    except Exception:
        return []
    return [t.state.name for t in study.get_trials(deepcopy=False)]


LONG = [
    "search_space.resolutions=[8]",
    "search_space.widths=[8]",
    "search.epochs=60",
    "pruner.enabled=false",
    "backend=estimate",
    "study.heartbeat_s=1",
]


@pytest.mark.slow
def test_killed_search_resumes(tmp_path):
    run = tmp_path / "run"
    db = run / "study.db"
    args = ["search", "+hw=cortex_m4", *LONG, f"hydra.run.dir={run}"]
    # 15 epochs: long enough to catch the second trial running, a quarter of LONG's wait
    p = spawn_cli(*args, "search.n_trials=4", "search.epochs=15")
    _wait_for(lambda: "COMPLETE" in _states(db) and _states(db)[-1] == "RUNNING", p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = _states(db)
    assert before.count("RUNNING") == 1
    time.sleep(5)  # the dead worker's heartbeat goes stale
    p = spawn_cli(*args, "search.n_trials=2", "study.grace_s=4", "search.epochs=1")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="cortex_m4-mobilenet-digits", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    abandoned = trials[len(before) - 1]
    assert abandoned.state.name == "FAIL"
    assert "abandoned: no heartbeat" in abandoned.user_attrs["fail_reason"]
    # completed trials are kept; the abandoned one was queued again and ran first
    assert [t.state.name for t in trials[: len(before) - 1]] == before[:-1]
    assert trials[len(before)].user_attrs.get("retry_of") == abandoned.number
    assert trials[len(before)].params == abandoned.params
    assert "RUNNING" not in [t.state.name for t in trials]
    df = pd.read_csv(run / "trials.csv")
    assert sorted(df.number) == [t.number for t in trials]  # every trial accounted for


@pytest.mark.slow
def test_ctrl_c_records_the_trial_and_writes_the_report(tmp_path):
    run = tmp_path / "run"
    db = run / "study.db"
    p = spawn_cli("search", "+hw=cortex_m4", *LONG, "search.n_trials=3", f"hydra.run.dir={run}")
    _wait_for(lambda: "RUNNING" in _states(db), p)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    df = pd.read_csv(run / "trials.csv")
    last = df.iloc[-1]
    assert last.state == "FAIL" and last.reason == "interrupted (Ctrl-C)"
    assert (run / "report.md").is_file()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_in_a_weakref_callback_is_raised_again():
    """Python ignores a KeyboardInterrupt raised in a weakref callback; the search must not
    train on. (A search once ignored Ctrl-C this way in the test above.)"""

    class Thing:
        pass

    guard = CtrlC()
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with guard:
            thing = Thing()
            ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGINT))
            del thing  # the callback runs, SIGINT arrives in it, and Python swallows it
            assert ref() is None
            with pytest.raises(KeyboardInterrupt):
                guard.check()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job: left alone
        with guard:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            guard.check()
    finally:
        signal.signal(signal.SIGINT, outer)


def _running_trial(db) -> optuna.trial.FrozenTrial | None:
    try:
        study = optuna.load_study(study_name="stall", storage=f"sqlite:///{db}")
    except Exception:
        return None
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return running[0] if running else None


def _state(pid: int) -> str:
    """The process state letter of ``/proc/PID/stat`` (``T``: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _pause_outside_a_write(proc, db) -> None:
    """SIGSTOP ``proc`` at a moment it holds no lock on ``db``. Its heartbeat writes
    every second; stopped inside that write (or a read), it would keep SQLite locked for
    everyone until resumed (SQLite's locks belong to the process), and the peer would
    fail with ``database is locked``: a property of SQLite, not of the code under test."""
    for _ in range(50):
        proc.send_signal(signal.SIGSTOP)
        while _state(proc.pid) not in ("T", "t"):  # the signal arrives asynchronously
            time.sleep(0.01)
        probe = sqlite3.connect(db, timeout=0.5)
        try:
            probe.execute("BEGIN EXCLUSIVE")  # fails while any lock, shared or not, is held
            probe.rollback()
            return
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        finally:
            probe.close()
    raise AssertionError(f"{db} stayed locked by the worker")


@pytest.mark.slow
def test_a_paused_worker_survives_its_trial_taken_by_a_peer(tmp_path):
    """SIGSTOP a worker in a trial past ``study.grace_s``: a peer marks the trial abandoned.
    Resumed (SIGCONT), the worker records its finished result as a new trial, runs the rest
    of its share and exits 0 (it used to die with ``Cannot tell a FAIL trial``)."""
    db = tmp_path / "study.db"
    common = [
        "search",
        "+hw=cortex_m4",
        *LONG[:-1],
        "search.epochs=8",
        "study.name=stall",
        "study.heartbeat_s=1",
        "study.grace_s=4",
        f"storage.url=sqlite:///{db}",
    ]
    paused = spawn_cli(*common, "search.n_trials=2", f"hydra.run.dir={tmp_path / 'a'}")
    # paused in training, after the check for an earlier twin
    _wait_for(lambda: "val_acc_curve" in getattr(_running_trial(db), "user_attrs", {}), paused)
    _pause_outside_a_write(paused, db)
    try:
        taken = _running_trial(db)
        assert taken is not None
        time.sleep(6)  # past the grace period
        peer = spawn_cli(
            *common, "search.n_trials=1", "search.epochs=1", f"hydra.run.dir={tmp_path / 'b'}"
        )
        _, err = peer.communicate(timeout=600)
        assert peer.returncode == 0, err[-3000:]
    finally:
        paused.send_signal(signal.SIGCONT)
    _, err = paused.communicate(timeout=600)
    assert paused.returncode == 0, err[-3000:]
    assert "Cannot tell" not in err and "Traceback" not in err, err[-3000:]
    study = optuna.load_study(study_name="stall", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    first = trials[taken.number]
    assert first.state.name == "FAIL"
    assert "abandoned" in first.user_attrs["fail_reason"]
    recovered = [
        t
        for t in trials
        if t.params == first.params
        and t.state.name == "COMPLETE"
        and "retry_of" not in t.user_attrs  # not the peer's retry (it may be a repeat of it)
    ]
    assert len(recovered) == 1 and "acc_int8" in recovered[0].user_attrs
    assert recovered[0].user_attrs["train_s"] > 0  # its training was kept, not repeated
    states = [t.state.name for t in trials]
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert states.count("COMPLETE") == 3  # the paused worker's 2, the peer's retry


def test_a_result_for_a_trial_taken_meanwhile_is_recorded_as_a_new_trial():
    """In-process: the writes and the result of a trial that a peer failed meanwhile."""
    from nas.search import Objective, ShadowTrial

    study = optuna.create_study(directions=["maximize"])
    trial = study.ask()
    trial.suggest_categorical("w", [8, 16])
    shadow = ShadowTrial(trial)
    shadow.set_user_attr("before", 1)
    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    shadow.set_user_attr("after", 2)  # refused by the storage, kept by the shadow
    assert shadow.taken
    objective = Objective.__new__(Objective)
    assert objective.keep_if_taken(shadow, optuna.trial.TrialState.COMPLETE, [0.75])
    new = study.trials[-1]
    assert objective.recovered is not None and objective.recovered.number == new.number == 1
    assert new.state.name == "COMPLETE" and new.values == [0.75]
    assert new.params == trial.params and new.user_attrs == {"before": 1, "after": 2}
