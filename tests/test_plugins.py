"""Plugins meet only through hooks: loading, the checks that name a broken plugin, isolated
observers and plugin commands, with real plugins registered through the real manager
(entry points in a temporary dist-info directory where it matters)."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import pytest

import nas
from nas.compression import BaseCompressionMethod, Candidate
from nas.errors import ConfigError
from nas.plugin_manager import PluginError, PluginManager


class _Dup(BaseCompressionMethod):
    name = "ptq"
    stage = "quantization"

    def apply(self, candidate: Candidate) -> Candidate:
        return candidate


class _DupPlugin:
    @staticmethod
    @nas.hookimpl
    def nas_register_compression_methods():
        return [_Dup]


def make_dist(site: Path, ep_name: str, source: str) -> str:
    """A real installed distribution in ``site``: module ``nas_t_<ep_name>`` and a
    dist-info whose ``nas`` entry point ``ep_name`` names it. Returns the module name."""
    module = f"nas_t_{ep_name}"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[nas]\n{ep_name} = {module}\n")
    return module


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for `make_dist`; its modules are forgotten afterwards."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delenv("NAS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("NAS_DISABLE_PLUGINS", raising=False)
    yield path
    for name in [m for m in sys.modules if m.startswith("nas_t_")]:
        del sys.modules[name]


def one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


TYPO = """
    import nas

    @nas.hookimpl
    def nas_register_backend():
        return []
"""
UNMARKED = """
    from nas.backends import BaseBackend

    class Quiet(BaseBackend):
        name = "quiet"

        def score(self, candidate, cost):
            return {}

    def nas_register_backends():
        return [Quiet]
"""
IMPORT_FAILS = """
    import nas
    import nas_no_such_module_anywhere
"""
REGISTRAR_RAISES = """
    import nas

    @nas.hookimpl
    def nas_register_datasets():
        raise RuntimeError("dataset folder /data/x is missing")
"""
WRONG_ARGUMENT = """
    import nas

    @nas.hookimpl
    def nas_observe_trial(trial, record):
        pass
"""


# --------------------------------------------------------------------------- loading


def test_builtins_register_through_entry_points():
    pm = PluginManager()
    names = {p.name: p.package for p in pm.plugins()}
    for name in ("mobilenet", "digits", "ptq", "estimate", "c_sim"):
        assert names[name].startswith("mcu-nas==")
    assert "calibrate" in pm.commands()


def test_a_third_party_entry_point_is_loaded_with_its_package(site):
    make_dist(
        site,
        "hello",
        """
        import nas

        @nas.hookimpl
        def nas_register_commands():
            return [nas.Command("hello", "[NAME]", "Say hello.", lambda args: 0)]
        """,
    )
    pm = PluginManager()
    assert {p.name: p.package for p in pm.plugins()}["hello"] == "nas-t-hello==0.1"
    assert pm.command_owner("hello") == "hello"


def test_misspelled_hook_names_plugin_and_hook(site):
    make_dist(site, "typo", TYPO)
    with pytest.raises(PluginError) as err:
        PluginManager()
    assert str(err.value) == (
        "plugin 'typo' (nas-t-typo==0.1): unknown hook 'nas_register_backend'; "
        "did you mean 'nas_register_backends'?"
    )


def test_unmarked_hook_function_is_refused(site):
    make_dist(site, "unmarked", UNMARKED)
    with pytest.raises(PluginError, match="plugin 'unmarked'.*'nas_register_backends'.*"
                       "not marked with @nas.hookimpl"):  # fmt: skip
        PluginManager()


def test_wrong_argument_name_is_refused(site):
    make_dist(site, "wrongarg", WRONG_ARGUMENT)
    with pytest.raises(PluginError) as err:
        PluginManager()
    assert str(err.value) == (
        "plugin 'wrongarg' (nas-t-wrongarg==0.1): hook 'nas_observe_trial' asks for "
        "'trial', which the hook does not pass; it passes: trial_number, record"
    )


def test_import_failure_names_the_entry_point(site):
    make_dist(site, "broken", IMPORT_FAILS)
    with pytest.raises(PluginError, match="plugin 'broken' \\(nas-t-broken==0.1\\) failed to "
                       "import nas_t_broken: ModuleNotFoundError: No module named "
                       "'nas_no_such_module_anywhere'"):  # fmt: skip
        PluginManager()


def test_blocked_or_autoload_off_skips_a_broken_plugin(site, monkeypatch):
    make_dist(site, "broken", IMPORT_FAILS)
    monkeypatch.setenv("NAS_DISABLE_PLUGINS", "broken")
    assert "broken" not in {p.name for p in PluginManager().plugins()}
    monkeypatch.delenv("NAS_DISABLE_PLUGINS")
    monkeypatch.setenv("NAS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert PluginManager().plugins() == []


def test_registrar_that_raises_names_the_plugin(site):
    make_dist(site, "nodata", REGISTRAR_RAISES)
    pm = PluginManager()  # registrars run on first use
    with pytest.raises(PluginError) as err:
        pm.validate()
    assert str(err.value) == (
        "plugin 'nodata': nas_register_datasets raised RuntimeError: dataset folder /data/x "
        "is missing"
    )


def test_registrar_must_return_a_list():
    class Plugin:
        @nas.hookimpl
        def nas_register_backends(self):
            return "estimate"

    pm = PluginManager(autoload=False)
    pm.register(Plugin(), name="stringy")
    with pytest.raises(PluginError, match="plugin 'stringy': nas_register_backends must "
                       "return a list, not str"):  # fmt: skip
        pm.registry("backend")


def test_register_in_code_checks_and_leaves_the_manager_usable():
    class Typo:
        @nas.hookimpl
        def nas_observe_trail(self, record):
            pass

    pm = PluginManager(autoload=False)
    with pytest.raises(PluginError, match="unknown hook 'nas_observe_trail'; did you mean "
                       "'nas_observe_trial'"):  # fmt: skip
        pm.register(Typo(), name="typo")
    assert pm.plugins() == []
    pm.register(_DupPlugin(), name="fine")  # the failed plugin left nothing behind
    assert pm.registry("compression") == {"ptq": _Dup}


def test_duplicate_name_refused_naming_both_owners():
    pm = PluginManager()
    pm.register(_DupPlugin(), name="my_plugin")
    with pytest.raises(ConfigError, match="'ptq'.*by plugin 'ptq' and by plugin 'my_plugin'"):
        pm.registry("compression")


def test_block_plugin_by_name(monkeypatch):
    monkeypatch.setenv("NAS_DISABLE_PLUGINS", "ptq")
    pm = PluginManager()
    assert "ptq" not in pm.registry("compression")
    pm.register(_DupPlugin(), name="my_plugin")  # no clash once the built-in is blocked
    assert pm.registry("compression")["ptq"] is _Dup


def test_autoload_off():
    pm = PluginManager(autoload=False)
    assert pm.registry("backend") == {}
    with pytest.raises(ConfigError, match="unknown backend 'estimate'; available: \\(none\\)"):
        pm.get("backend", "estimate")


def test_timm_style_helpers():
    assert nas.list_backends("est*") == ["estimate"]
    assert nas.create_backend("estimate").name == "estimate"
    assert nas.create_dataset("digits", seed=3).config.seed == 3


# --------------------------------------------------------------------------- observers


def test_a_failing_observer_does_not_skip_the_others(caplog):
    calls: list[str] = []

    class Recorder:
        def __init__(self) -> None:
            self.seen: list[tuple[int, dict]] = []

        @nas.hookimpl
        def nas_observe_trial(self, trial_number, record):
            calls.append("recorder")
            record["touched"] = True  # its own copy: nobody else sees this
            self.seen.append((trial_number, dict(record)))

        @nas.hookimpl
        def nas_observe_study(self, run_dir):
            calls.append(f"study {run_dir}")

    class Broken:
        @nas.hookimpl
        def nas_observe_trial(self, record):
            calls.append("broken")
            assert "touched" not in record
            raise RuntimeError("disk full")

        @nas.hookimpl
        def nas_observe_study(self, trials):
            raise ValueError(f"cannot plot {len(trials)} trials")

    pm = PluginManager(autoload=False)
    recorder = Recorder()
    pm.register(recorder, name="recorder")
    pm.register(Broken(), name="broken")  # registered last: called first, as in pluggy
    record = {"acc_int8": 0.9}
    with caplog.at_level(logging.WARNING, logger="nas.plugin_manager"):
        pm.observe_trial(7, record)
        pm.observe_study("runs/x", [1, 2])
    assert calls == ["broken", "recorder", "study runs/x"]
    assert recorder.seen == [(7, {"acc_int8": 0.9, "touched": True})]
    assert record == {"acc_int8": 0.9}
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "plugin 'broken': nas_observe_trial failed: RuntimeError: disk full",
        "plugin 'broken': nas_observe_study failed: ValueError: cannot plot 2 trials",
    ]


# --------------------------------------------------------------------------- commands


COMMAND_PLUGIN = """
    import nas
    from nas.errors import ConfigError

    def greet(args):
        if any("=" not in a for a in args):
            raise ConfigError(f"greet: expected name=VALUE, got {args}")
        print("hello", *args)
        return 0

    @nas.hookimpl
    def nas_register_commands():
        return [nas.Command("greet", "[name=VALUE ...]", "Print a greeting.\\nTwo lines.", greet)]
"""


@pytest.mark.slow
def test_plugin_command_is_listed_and_runs(cli, tmp_path):
    site = tmp_path / "site"
    make_dist(site, "greeter", COMMAND_PLUGIN)
    env = {"PYTHONPATH": str(site)}
    help_text = cli("--help", env=env)
    assert help_text.returncode == 0, help_text.stderr
    assert (
        "plugin commands:\n  calibrate +hw=<profile>" in help_text.stdout
        and "  greet [name=VALUE ...]\n"
        "        Print a greeting.\n"
        "        Two lines.\n"
        "        (plugin greeter)\n"
        in help_text.stdout
    ), help_text.stdout
    run = cli("greet", "name=you", env=env)
    assert run.returncode == 0 and run.stdout == "hello name=you\n", run.stderr
    one_line_error(cli("greet", "you", env=env), "greet: expected name=VALUE")
    valid = "valid: search, list, report, finalize, calibrate, greet"
    one_line_error(cli("gret", env=env), f"unknown command 'gret'; {valid}")


def test_plugin_command_may_not_replace_a_core_command():
    class Plugin:
        @nas.hookimpl
        def nas_register_commands(self):
            return [nas.Command("search", "", "", lambda args: 0)]

    pm = PluginManager(autoload=False)
    pm.register(Plugin(), name="hijack")
    with pytest.raises(PluginError, match="plugin 'hijack': command 'search' is a core command"):
        pm.commands()


@pytest.mark.slow
def test_calibrate_comes_from_the_c_sim_plugin(cli):
    proc = cli("calibrate", "--help")
    assert proc.returncode == 0 and "usage: python -m nas calibrate +hw=NAME" in proc.stdout
    one_line_error(cli("calibrate", "+hw=cortex_m4", "fit=many"), "fit='many' is not an integer")
    one_line_error(
        cli("calibrate", "+hw=cortex_m4", env={"NAS_DISABLE_PLUGINS": "c_sim"}),
        "unknown command 'calibrate'; valid: search, list, report",
    )


# --------------------------------------------------------------------------- the CLI


BROKEN = {  # entry-point name: (module source, what the one line must say)
    "broken": (IMPORT_FAILS, ["plugin 'broken' (nas-t-broken==0.1) failed to import"]),
    "typo": (TYPO, ["plugin 'typo'", "unknown hook 'nas_register_backend'"]),
    "unmarked": (UNMARKED, ["plugin 'unmarked'", "not marked with @nas.hookimpl"]),
    "nodata": (REGISTRAR_RAISES, ["plugin 'nodata': nas_register_datasets raised"]),
    "wrongarg": (WRONG_ARGUMENT, ["plugin 'wrongarg'", "asks for 'trial'"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("ep", sorted(BROKEN))
def test_a_broken_plugin_stops_every_command_with_one_line(cli, tmp_path, ep):
    source, needles = BROKEN[ep]
    site = tmp_path / "site"
    make_dist(site, ep, source)
    err = one_line_error(cli("--help", env={"PYTHONPATH": str(site)}), *needles)
    assert err.startswith("error: plugin '"), err


@pytest.mark.slow
def test_a_broken_plugin_stops_commands_unless_blocked(cli, tmp_path):
    site = tmp_path / "site"
    make_dist(site, "broken", IMPORT_FAILS)
    env = {"PYTHONPATH": str(site)}
    one_line_error(cli("list", "plugins", env=env), "plugin 'broken'", "ModuleNotFoundError")
    blocked = cli("list", "plugins", env={**env, "NAS_DISABLE_PLUGINS": "broken"})
    assert blocked.returncode == 0 and "c_sim" in blocked.stdout, blocked.stderr
