"""Hostile or broken profile files: one bad file must not stop, hang or swamp a search.

Every case runs in-process under a time limit (`_time_limit`); the alias bomb also runs in a
subprocess with a capped address space (`_run_capped`), so a regression fails the test
instead of taking the machine's memory.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from nas.__main__ import main
from nas.errors import ProfileError
from nas.hardware import BUILTIN_DIR, MAX_PROFILE_BYTES, load_profile
from nas.validate import check_search_args

REPO = Path(__file__).resolve().parent.parent
M4 = yaml.safe_load((BUILTIN_DIR / "cortex_m4.yaml").read_text())
#: Seconds any one case may take; the legitimate work (a profile read, a config composed)
#: takes well under one.
LIMIT_S = 20


@contextmanager
def _time_limit(seconds: int = LIMIT_S) -> Iterator[None]:
    """Fail the test instead of hanging when the block runs longer than ``seconds``."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _alias_bomb(path: Path, levels: int = 6) -> None:
    """A "billion laughs" under 1 KB: ``levels`` levels of nine aliases, 9**levels leaves if
    expanded (in-process cases use 6, which a regression still takes minutes to expand)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    path.write_text("\n".join(lines) + "\nname: " + path.stem + "\n")


def _valid(path: Path) -> None:
    data = dict(M4, name=path.stem)
    path.write_text(yaml.safe_dump(data))


def _symlink_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _too_large(path: Path) -> None:
    _valid(path)
    with path.open("a") as f:
        f.write("# padding\n" * (MAX_PROFILE_BYTES // 10 + 1))


def _deep(path: Path) -> None:
    path.write_text(f"name: {path.stem}\nx: " + "[" * 5000 + "]" * 5000 + "\n")


def _long_integer(path: Path) -> None:
    path.write_text(f"name: {path.stem}\nclock_hz: {'9' * 20000}\n")


def _dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere.yaml")


def _binary(path: Path) -> None:
    path.write_bytes(b"name: x\n\xff\xfe\x00")


def _wrong_name(path: Path) -> None:
    data = dict(M4, name="cortex_m4")  # mychip.yaml claiming to be the built-in
    path.write_text(yaml.safe_dump(data))


#: name -> (how to make the file, what its one-line error must say).
BROKEN: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "alias_bomb": (_alias_bomb, ["anchors and aliases", "line 1"]),
    "dev_zero": (_symlink_dev_zero, ["a character device", "not a regular file"]),
    "fifo": (_fifo, ["a FIFO", "not a regular file"]),
    "directory": (_directory, ["a directory", "not a regular file"]),
    "too_large": (_too_large, [f"larger than {MAX_PROFILE_BYTES} bytes"]),
    "deep": (_deep, ["nested deeper than"]),
    "long_integer": (_long_integer, ["not a valid value"]),
    "dangling": (_dangling_symlink, ["cannot read hardware profile", "No such file"]),
    "binary": (_binary, ["not a text file"]),
    "wrong_name": (_wrong_name, ["field 'name' is 'cortex_m4'", "wrong_name.yaml", "rename"]),
}


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    monkeypatch.setenv("NAS_HARDWARE_PROFILES", str(folder))
    return folder


def _error_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run ``python -m nas search ARGS`` in-process; it must exit 2 with one line."""
    with _time_limit():
        assert main(["search", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_does_not_affect_other_profiles(user_dir, case):
    """Choosing ``cortex_m4`` never opens the bad file: the command line validates."""
    BROKEN[case][0](user_dir / f"{case}.yaml")
    with _time_limit():
        assert check_search_args(["+hw=cortex_m4"]) == ["+hw=cortex_m4"]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_selected_broken_file_is_one_line_and_exit_2(user_dir, tmp_path, capsys, case):
    make, needles = BROKEN[case]
    make(user_dir / f"{case}.yaml")
    run = tmp_path / "run"
    err = _error_line(capsys, [f"+hw={case}", f"hydra.run.dir={run}"])
    assert f"{case}.yaml" in err
    for needle in needles:
        assert needle in err, err
    assert not run.exists()


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_list_profiles_shows_a_broken_file(user_dir, capsys, case):
    BROKEN[case][0](user_dir / f"{case}.yaml")
    with _time_limit():
        assert main(["list", "profiles"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(case + " "))
    assert "INVALID: " in row and BROKEN[case][1][0] in row, row
    assert "cortex_m4 " in out and "ST NUCLEO-L4R5ZI" in out  # the others still listed


def test_registering_every_profile_is_bounded(user_dir):
    """``register_configs()`` with no selection (``search --help``, scripts) reads every
    file: the broken ones become raw nodes, quickly, and the good ones stay usable."""
    from hydra import compose, initialize_config_module

    from nas.config import register_configs

    for case, (make, _) in BROKEN.items():
        make(user_dir / f"{case}.yaml")
    with _time_limit():
        register_configs()
        with initialize_config_module("nas.conf", version_base="1.3"):
            cfg = compose("config", overrides=["+hw=cortex_m4"])
    assert cfg.hw.name == "cortex_m4"


def test_a_multirun_reads_only_its_profiles(user_dir):
    _alias_bomb(user_dir / "bomb.yaml")
    with _time_limit():
        check_search_args(["-m", "+hw=cortex_m4,cortex_m7"])
    with pytest.raises(ProfileError, match="bomb.yaml: YAML anchors"), _time_limit():
        check_search_args(["-m", "+hw=cortex_m4,bomb"])


def test_a_user_file_named_like_a_builtin_is_refused(user_dir, capsys):
    shadow = user_dir / "cortex_m4.yaml"
    _valid(shadow)
    err = _error_line(capsys, ["+hw=cortex_m4"])
    assert "more than one file" in err and str(shadow) in err, err
    assert str(BUILTIN_DIR / "cortex_m4.yaml") in err and "rename" in err
    with _time_limit():
        assert check_search_args(["+hw=cortex_m7"]) == ["+hw=cortex_m7"]  # others unaffected
        assert main(["list", "profiles"]) == 0
    out = capsys.readouterr().out
    assert "cortex_m4 " in out and "INVALID: hardware profile 'cortex_m4'" in out


def test_the_same_folder_twice_is_not_a_duplicate(monkeypatch):
    monkeypatch.setenv("NAS_HARDWARE_PROFILES", os.pathsep.join([str(BUILTIN_DIR)] * 2))
    assert load_profile("cortex_m4").source_file == str(BUILTIN_DIR / "cortex_m4.yaml")


def test_a_valid_user_profile_says_its_file(user_dir):
    path = user_dir / "mychip.yaml"
    _valid(path)
    assert load_profile("mychip").source_file == str(path)


def _run_capped(code: str, limit_bytes: int = 1 << 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with at most ``limit_bytes`` of address space."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        preexec_fn=cap,
    )


@pytest.mark.slow
def test_the_alias_bomb_under_a_memory_cap(user_dir):
    """Nine levels took over 3 GB before the fix; now it fails well under the 1 GiB cap."""
    _alias_bomb(user_dir / "bomb.yaml", levels=9)
    code = """
        import sys
        from nas.errors import ProfileError
        from nas.hardware import load_profile
        from nas.validate import check_search_args
        check_search_args(["+hw=cortex_m4"])
        try:
            load_profile("bomb")
        except ProfileError as exc:
            print(exc)
            sys.exit(0)
        sys.exit(1)
    """
    r = _run_capped(code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "anchors and aliases" in r.stdout


@pytest.mark.slow
def test_the_profile_file_is_in_the_output_report_and_arch_json(user_dir, tmp_path, capsys):
    """A user profile's file is named by the search's first line, report.md and arch.json."""
    import json

    path = user_dir / "mychip.yaml"
    _valid(path)
    run = tmp_path / "run"
    args = [
        "search",
        "+hw=mychip",
        "backend=estimate",
        "search.n_trials=1",
        "search.epochs=1",
        "search.count_infeasible=false",
        f"hydra.run.dir={run}",
    ]
    assert main(args) == 0
    assert f"hardware profile: mychip from {path}" in capsys.readouterr().out
    assert f"Hardware profile file: `{path}`" in (run / "report.md").read_text()
    saved = sorted(run.glob("trials/*/arch.json"))
    assert saved and json.loads(saved[0].read_text())["hw_file"] == str(path)
