"""Optuna storages: opening them, sharing one study between workers, and recovering trials
that a dead worker left ``RUNNING``.

``storage.url`` accepts ``sqlite:///file.db`` (one machine), ``journal:///path/file.log``
(Optuna's journal file: many processes on one file system), ``postgresql://...`` (many
machines) or ``mysql://...``; with no URL the study goes to ``study.db`` in the run
directory. Every running trial writes a heartbeat (a user attribute with the time) from a
background thread; a worker that starts, or finishes a trial, fails every ``RUNNING`` trial
whose heartbeat is older than the grace period, records why, and (``study.retry_stale``)
queues its parameters again, so a killed run resumes without losing or duplicating work.

Passwords: wherever the project writes or prints a URL (``.hydra/``, ``report.md``, the
``storage`` column of comparisons, error lines, Hydra's multirun log and ``multirun.yaml``)
its password is masked (`mask_url`: ``postgresql://user:***@host/db``), and workers get the
URL in ``NAS_STORAGE_URL``, never on their command line. To keep the password off the
command line too, leave it out of the URL and let libpq find it (``PGPASSWORD``,
``~/.pgpass``), or write ``postgresql://user:${oc.env:NAME}@host/db``: the saved config
keeps the reference, not the secret. With ``storage.url`` unset, ``NAS_STORAGE_URL`` is
the URL. A run directory saved with a masked URL is reopened without the password, so
``python -m nas report RUN_DIR`` needs ``PGPASSWORD`` or ``~/.pgpass`` (or the URL itself).
"""

from __future__ import annotations

import logging
import os
import random
import re
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
#: The storage URL when ``storage.url`` is not set; workers get theirs here, never on argv.
URL_ENV = "NAS_STORAGE_URL"
#: What a URL's password is replaced with wherever the project writes or prints it.
MASK = "***"
#: ``scheme://user:password@``: the password is group 2 (up to the last ``@`` of the host
#: part, so an unencoded ``@`` in the password is masked too). Hydra's multirun passes
#: overrides with ``:`` escaped (``postgresql\://u\:pw@h``): the backslashes are optional.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*\\?://[^:/?#@\s\\]*\\?:)([^/?#\s]*)(@)")
#: The install hint for a missing database driver, per URL scheme.
DRIVER_HINTS = {
    "postgresql": "for PostgreSQL: pip install 'psycopg[binary]'",
    "postgresql+psycopg": "for PostgreSQL: pip install 'psycopg[binary]'",
    "postgresql+psycopg2": "for PostgreSQL with psycopg2: pip install psycopg2-binary",
    "mysql": "for MySQL: pip install mysqlclient, or pip install pymysql and write "
    "mysql+pymysql://...",
    "mysql+mysqldb": "for MySQL: pip install mysqlclient",
    "mysql+pymysql": "for MySQL with PyMySQL: pip install pymysql",
    "sqlite": "for SQLite: this Python was built without the sqlite3 module",
}
#: Why a URL without a password may still open a PostgreSQL storage.
NO_PASSWORD_HINT = (
    "the URL has no password (saved run directories keep it masked): set PGPASSWORD, add "
    "it to ~/.pgpass, or write it as ${oc.env:NAME} in storage.url"
)
#: Masked URL -> the real one, for URLs this process showed masked and may open again.
_REVEAL: dict[str, str] = {}


def mask_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by
    ``***``; an interpolation such as ``${oc.env:NAME}`` is not a secret and is kept."""

    def repl(m: re.Match[str]) -> str:
        secret = m.group(2)
        if not secret or (secret.startswith("${") and secret.endswith("}")):
            return m.group(0)
        return m.group(1) + MASK + m.group(3)

    return _USERINFO.sub(repl, text)


class MaskFilter(logging.Filter):
    """Masks URL passwords in the records of the logger it is added to."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with `mask_url`; keep every record."""
        message = record.getMessage()
        masked = mask_url(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


#: Loggers that print the command line's overrides (Hydra's launcher, one line per job).
OVERRIDE_LOGGERS = ("hydra._internal.core_plugins.basic_launcher",)


def mask_override_logs() -> None:
    """Mask URL passwords in what Hydra logs about the jobs it launches (a multirun)."""
    for name in OVERRIDE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskFilter) for f in logger.filters):
            logger.addFilter(MaskFilter())


def display_url(url: str) -> str:
    """``url`` masked for output; `open_storage` still opens the masked form in this process."""
    shown = mask_url(url)
    if shown != url:
        _REVEAL[shown] = url
    return shown


def without_masked_password(url: str) -> str:
    """A URL read back from a saved file with its password masked, minus the mask, so that
    libpq looks the password up itself (``PGPASSWORD``, ``~/.pgpass``)."""
    return url.replace(f":{MASK}@", "@", 1) if f":{MASK}@" in url else url


def driver_hint(scheme: str) -> str:
    """What to install for a storage URL's scheme (``mysql+pymysql``, else ``mysql``)."""
    scheme = scheme.lower()
    found = DRIVER_HINTS.get(scheme) or DRIVER_HINTS.get(scheme.split("+", 1)[0])
    return found or f"install the database driver for '{scheme}'"


def storage_url(url: str | None, run_dir: Path, kind: str = "sqlite") -> str:
    """The effective URL: ``url``, else ``$NAS_STORAGE_URL``, else a file in the run
    directory."""
    url = url or os.environ.get(URL_ENV)
    if url:
        return url
    if kind == "journal":
        return f"journal://{(run_dir / 'study.log').resolve()}"
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for ``url``; a bad or unreachable URL is one clear `ConfigError`
    that shows the URL masked (`mask_url`)."""
    url = _REVEAL.get(url, url)
    shown = mask_url(url)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    try:
        if scheme == "journal":
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix("journal://"))
            if not path.parent.is_dir():
                raise ConfigError(f"storage.url '{shown}': folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if scheme in RDB_SCHEMES:
            return _rdb_storage(url, scheme)
    except ConfigError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = mask_url(first).replace(url, shown)
        if isinstance(exc, ImportError):
            first += f"; {driver_hint(url.split(':', 1)[0])}"
        elif "no password supplied" in first:
            first += f"; {NO_PASSWORD_HINT}"
        raise ConfigError(f"storage.url '{shown}': cannot open the storage ({first})") from None
    raise ConfigError(
        f"storage.url '{shown}': unsupported scheme '{scheme}'; valid: sqlite:///FILE, "
        "journal:///FILE, postgresql://USER[:PASSWORD]@HOST/DB, mysql+pymysql://..."
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
