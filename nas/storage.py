"""Optuna storages: opening them, sharing one study between workers, and recovering trials
that a dead worker left ``RUNNING``.

``storage.url`` accepts ``sqlite:///file.db`` (one machine), ``journal:///path/file.log``
(Optuna's journal file: many processes on one file system), ``postgresql://...`` (many
machines) or ``mysql://...``; with no URL the study goes to ``study.db`` in the run
directory. Every running trial writes a heartbeat (a user attribute with the time) from a
background thread; a worker that starts, or finishes a trial, fails every ``RUNNING`` trial
whose heartbeat is older than the grace period, records why, and (``study.retry_stale``)
queues its parameters again, so a killed run resumes without losing or duplicating work.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.record import FAIL_REASON, HEARTBEAT, RETRY_OF

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


def storage_url(url: str | None, run_dir: Path, kind: str = "sqlite") -> str:
    """The effective URL: ``url`` or a file in the run directory."""
    if url:
        return url
    if kind == "journal":
        return f"journal://{(run_dir / 'study.log').resolve()}"
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for ``url``; a bad or unreachable URL is one clear `ConfigError`."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    try:
        if scheme == "journal":
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix("journal://"))
            if not path.parent.is_dir():
                raise ConfigError(f"storage.url '{url}': folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if scheme in RDB_SCHEMES:
            return _rdb_storage(url, scheme)
    except ConfigError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ImportError):
            first += "; for PostgreSQL: pip install 'psycopg[binary]'"
        raise ConfigError(f"storage.url '{url}': cannot open the storage ({first})") from None
    raise ConfigError(
        f"storage.url '{url}': unsupported scheme '{scheme}'; valid: sqlite:///FILE, "
        "journal:///FILE, postgresql://USER:PASSWORD@HOST/DB, mysql://..."
    )


def _rdb_storage(url: str, scheme: str, attempts: int = 6) -> RDBStorage:
    """RDBStorage, retried: workers that start together on an empty database race to create
    Optuna's tables (PostgreSQL: a unique violation in ``pg_type``); the losers retry."""
    kwargs = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {}
    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs=kwargs)
        except ImportError:
            raise
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5 * (attempt + 1))
    raise AssertionError("unreachable")


class Heartbeat:
    """Writes the time into a running trial every ``interval_s`` seconds."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval_s: float) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nas-heartbeat")

    def _beat(self) -> None:
        try:
            self._storage.set_trial_user_attr(self._trial_id, HEARTBEAT, time.time())
        except Exception:  # the trial finished meanwhile, or the storage is briefly busy
            pass

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def fail_stale_trials(study: optuna.Study, grace_s: float, retry: bool) -> list[int]:
    """Fail ``RUNNING`` trials without a heartbeat for ``grace_s``; returns their numbers."""
    now = time.time()
    stale = []
    storage = study._storage  # the public Study API has no way to finish another's trial
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.user_attrs.get(HEARTBEAT)
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        if beat is None or now - beat <= grace_s:
            continue
        reason = f"abandoned: no heartbeat for {now - beat:.0f} s (its worker stopped)"
        try:
            storage.set_trial_user_attr(t._trial_id, FAIL_REASON, reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except Exception:  # another worker failed it first
            continue
        stale.append(t.number)
        if retry and t.params:
            study.enqueue_trial(t.params, user_attrs={RETRY_OF: t.number})
    return stale
