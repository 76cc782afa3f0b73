"""Secrets stay secret: a storage URL's password is masked wherever the project writes or
prints the URL, kept out of ``.hydra/`` and off the workers' command lines."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import run_cli, spawn_cli

from nas import workers
from nas.errors import ConfigError
from nas.storage import (
    OVERRIDE_LOGGERS,
    URL_ENV,
    MaskFilter,
    display_url,
    driver_hint,
    mask_override_logs,
    mask_url,
    open_storage,
    storage_url,
    without_masked_password,
)

#: The password of the role the end-to-end tests create (when the server lets them).
SECRET = "S3cr3t-xyz"
FAST = [
    "search_space.resolutions=[8]",
    "search_space.widths=[8,16]",
    "search.epochs=1",
    "backend=estimate",
]


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:S3cr3t-xyz@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql+psycopg://u:pw@h/db?sslmode=require",
            "postgresql+psycopg://u:***@h/db?sslmode=require",
        ),
        ("postgresql://u:p%40ss%3Aw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("mysql://root:x@localhost/optuna", "mysql://root:***@localhost/optuna"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:@h/db", "postgresql://u:@h/db"),
        ("postgresql:///db", "postgresql:///db"),
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
        ("journal:///tmp/study.log", "journal:///tmp/study.log"),
        ("postgresql://u:${oc.env:PW}@h/db", "postgresql://u:${oc.env:PW}@h/db"),
        (r"postgresql\://u\:pw@h\:5432/db", r"postgresql\://u\:***@h\:5432/db"),
        ("not a url: user@host", "not a url: user@host"),
        ("", ""),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_mask_url_in_text_and_overrides():
    text = "storage.url=postgresql://a:one@h/d and mysql://b:two@h/d, then 'x'"
    assert mask_url(text) == "storage.url=postgresql://a:***@h/d and mysql://b:***@h/d, then 'x'"


def test_mask_filter_masks_log_records():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "#0 : %s", ("u=mysql://a:b@h/d",), None
    )
    assert MaskFilter().filter(record)
    assert record.getMessage() == "#0 : u=mysql://a:***@h/d"
    mask_override_logs()
    mask_override_logs()
    launcher = logging.getLogger(OVERRIDE_LOGGERS[0])
    assert sum(isinstance(f, MaskFilter) for f in launcher.filters) == 1


def test_display_url_still_opens(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert display_url(url) == url  # nothing to mask
    assert without_masked_password("postgresql://u:***@h/db") == "postgresql://u@h/db"
    assert without_masked_password("postgresql://u@h/db") == "postgresql://u@h/db"


def test_storage_url_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    assert storage_url(None, tmp_path).endswith("study.db")
    monkeypatch.setenv(URL_ENV, "postgresql://u@h/db")
    assert storage_url(None, tmp_path) == "postgresql://u@h/db"
    assert storage_url("sqlite:///x.db", tmp_path) == "sqlite:///x.db"  # the config wins


# --------------------------------------------------------------------------- driver hints


@pytest.mark.parametrize(
    ("scheme", "words"),
    [
        ("postgresql", "psycopg[binary]"),
        ("postgresql+psycopg", "psycopg[binary]"),
        ("postgresql+psycopg2", "psycopg2-binary"),
        ("mysql", "mysqlclient"),
        ("mysql+pymysql", "pip install pymysql"),
        ("MySQL+PyMySQL", "pip install pymysql"),
        ("oracle", "'oracle'"),
    ],
)
def test_driver_hint_per_scheme(scheme, words):
    hint = driver_hint(scheme)
    assert words in hint
    if scheme.lower().startswith("mysql"):
        assert "PostgreSQL" not in hint and "psycopg" not in hint


def test_missing_mysql_driver_gets_a_mysql_hint():
    with pytest.raises(ConfigError) as err:
        open_storage(f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/optuna")
    message = str(err.value)
    assert SECRET not in message and "mysql+pymysql://root:***@" in message
    assert "pymysql" in message and "psycopg" not in message


def test_storage_error_is_masked():
    with pytest.raises(ConfigError) as err:
        open_storage(f"postgresql://nobody:{SECRET}@127.0.0.1:1/nas_test")
    assert SECRET not in str(err.value)
    assert "postgresql://nobody:***@127.0.0.1:1/nas_test" in str(err.value)


# --------------------------------------------------------------------------- no password


def _no_password(postgres_url: str) -> tuple[str, str]:
    """``postgres_url`` without its password, and the password."""
    parts = urlsplit(postgres_url)
    if not parts.password:
        pytest.skip("the test server's URL has no password")
    return postgres_url.replace(f":{parts.password}@", "@", 1), parts.password


@pytest.mark.parametrize("way", ["PGPASSWORD", "PGPASSFILE"])
def test_password_free_url_opens_with_libpq_settings(postgres_url, tmp_path, monkeypatch, way):
    url, password = _no_password(postgres_url)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    if way == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", password)
    else:  # what ~/.pgpass holds; PGPASSFILE points libpq at it
        parts = urlsplit(postgres_url)
        passfile = tmp_path / "pgpass"
        line = f"{parts.hostname}:{parts.port or 5432}:*:{parts.username}:{password}"
        passfile.write_text(line + "\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert open_storage(url) is not None


def test_password_free_url_without_settings_says_how(postgres_url, monkeypatch, tmp_path):
    url, _ = _no_password(postgres_url)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        open_storage(url)


# --------------------------------------------------------------------------- workers


def test_worker_command_line_has_no_url(tmp_path):
    url = f"postgresql://u:{SECRET}@h/db"
    argv = workers.worker_args(["+hw=cortex_m4", "search.epochs=1"], 2, 7, "s", tmp_path)
    assert not any("storage.url" in a or SECRET in a for a in argv)
    assert argv[:4] == [sys.executable, "-m", "nas", "search"]
    env = workers.worker_env(url, 2)
    assert env[URL_ENV] == url


def test_spawn_keeps_the_url_off_argv(tmp_path, monkeypatch):
    seen = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            seen.append((args, kwargs["env"]))

    monkeypatch.setattr(workers.subprocess, "Popen", FakePopen)
    url = f"postgresql://u:{SECRET}@h/db"
    overrides = ["+hw=cortex_m4", f"storage.url={url}", "search.workers=3"]
    workers.spawn(overrides, [1, 1], 0, url, "s", tmp_path)
    assert len(seen) == 2
    for args, env in seen:
        assert not any(SECRET in a for a in args)
        assert env[URL_ENV] == url


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def secret_url(postgres_url):
    """A URL with a distinctive password: a role made for the test when the server lets
    the test role create one, else the test role's own URL."""
    import psycopg

    role = f"nas_secret_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
            conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    except psycopg.errors.InsufficientPrivilege:
        yield postgres_url, parts.password or ""
        return
    host = parts.hostname or "127.0.0.1"
    url = f"postgresql://{role}:{SECRET}@{host}:{parts.port or 5432}{parts.path}"
    yield url, SECRET
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _needles(password: str) -> list[bytes]:
    """What a leak looks like: the password itself when it is distinctive, else the places
    a short one sits in a URL or a connection string."""
    forms = [f":{password}@", f"password={password}", f"PASSWORD={password}"]
    if len(password) >= 8:
        forms.append(password)
    return [f.encode() for f in forms]


def _leaks(password: str, *roots: Path, texts: tuple[str, ...] = ()) -> list[str]:
    """Files under ``roots`` (every file, binary included) and texts that hold the password."""
    needles = _needles(password)
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and any(n in path.read_bytes() for n in needles):
                found.append(str(path))
    found += [f"text {k}" for k, t in enumerate(texts) if any(n in t.encode() for n in needles)]
    return found


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _watch_worker_argv(proc) -> list[bytes]:
    """The command lines of ``proc``'s worker processes, read while they run."""
    seen: list[bytes] = []
    while proc.poll() is None:
        for pid in _children(proc.pid):
            try:
                seen.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                pass
        time.sleep(0.05)
    return seen


@pytest.mark.slow
def test_no_password_in_run_report_or_worker_argv(secret_url, tmp_path):
    url, password = secret_url
    run, out, out_dir = tmp_path / "run", tmp_path / "report_url", tmp_path / "report_dir"
    study = f"secret-{uuid.uuid4().hex[:8]}"
    proc = spawn_cli(
        "search",
        "+hw=cortex_m4",
        "search.n_trials=2",
        "search.workers=2",
        *FAST,
        f"storage.url={url}",
        f"study.name={study}",
        f"hydra.run.dir={run}",
        env={"OMP_NUM_THREADS": "1"},
    )
    argvs = _watch_worker_argv(proc)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    workers_seen = [a for a in argvs if b"search.report=false" in a]
    assert workers_seen, "no worker process was seen running"
    assert not any(n in a for a in workers_seen for n in _needles(password))
    assert b"storage.url" not in b"".join(workers_seen)

    by_url = run_cli("report", url, "--out", str(out))
    assert by_url.returncode == 0, by_url.stderr[-3000:]
    # The run directory keeps the URL masked: libpq finds the password in PGPASSWORD.
    by_dir = run_cli("report", str(run), "--out", str(out_dir), env={"PGPASSWORD": password})
    assert by_dir.returncode == 0, by_dir.stderr[-3000:]
    texts = (stdout, stderr, by_url.stdout, by_url.stderr, by_dir.stdout, by_dir.stderr)
    assert _leaks(password, run, out, out_dir, texts=texts) == []
    assert (run / ".hydra" / "config.yaml").is_file() and (out / "comparison.csv").is_file()
    assert ":***@" in (run / ".hydra" / "overrides.yaml").read_text()
    assert ":***@" in (out / "comparison.csv").read_text()


@pytest.mark.slow
def test_password_from_an_environment_reference(secret_url, tmp_path):
    url, password = secret_url
    parts = urlsplit(url)
    ref = url.replace(f":{password}@", ":${oc.env:NAS_TEST_DB_PASSWORD}@", 1)
    assert "${oc.env:" in ref and parts.password == password
    run = tmp_path / "run"
    proc = run_cli(
        "search",
        "+hw=cortex_m4",
        "search.n_trials=1",
        *FAST,
        f"storage.url={ref}",
        f"study.name=secret-{uuid.uuid4().hex[:8]}",
        f"hydra.run.dir={run}",
        env={"NAS_TEST_DB_PASSWORD": password, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "${oc.env:NAS_TEST_DB_PASSWORD}" in (run / ".hydra" / "config.yaml").read_text()
    assert _leaks(password, run, texts=(proc.stdout, proc.stderr)) == []
    # the saved reference opens the storage again wherever the variable is set
    out = tmp_path / "report"
    rep = run_cli("report", str(run), "--out", str(out), env={"NAS_TEST_DB_PASSWORD": password})
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert _leaks(password, out, texts=(rep.stdout, rep.stderr)) == []


@pytest.mark.slow
def test_no_password_in_a_multirun_sweep_folder(secret_url, tmp_path):
    url, password = secret_url
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "search",
        "-m",
        "+hw=cortex_m4",
        "search.n_trials=1",
        *FAST,
        f"storage.url={url}",
        f"study.name=secret-{uuid.uuid4().hex[:8]}",
        f"hydra.sweep.dir={sweep}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ":***@" in (sweep / "multirun.yaml").read_text()
    assert _leaks(password, sweep, texts=(proc.stdout, proc.stderr)) == []


@pytest.mark.slow
def test_search_storage_error_is_masked(tmp_path):
    proc = run_cli(
        "search",
        "+hw=cortex_m4",
        "search.n_trials=1",
        f"storage.url=postgresql://someone:{SECRET}@127.0.0.1:1/nas_test",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    assert "postgresql://someone:***@127.0.0.1:1/nas_test" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists() or not any(
        SECRET.encode() in p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()
    )


def test_worker_reads_the_url_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(URL_ENV, f"sqlite:///{tmp_path / 'shared.db'}")
    assert storage_url(None, tmp_path / "run") == os.environ[URL_ENV]


def test_error_lines_are_masked(capsys):
    from nas.__main__ import main

    url = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
    assert main(["search", "+hw=cortex_m4", f"storage.url={url}", "search.n_trials=abc"]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and "search.n_trials=abc" in err  # names only the bad override
    # an error that quotes the whole command line quotes the URL masked
    assert main(["search", "+hw=cortex_m4", f"storage.url={url}", "search.lr=${oops}"]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and "postgresql://u:***@127.0.0.1:1/db" in err, err
