"""The one owner of the pluggy `PluginManager`; every other module goes through it.

Plugins are loaded from the ``nas`` entry-point group (built-ins included), minus those
named in ``NAS_DISABLE_PLUGINS`` (comma-separated entry-point names); with
``NAS_DISABLE_PLUGIN_AUTOLOAD=1`` none are loaded and callers `register` their own.

A broken plugin stops the program with one line that names it (`PluginError`, exit 2 on
the command line) instead of a traceback or a silently missing feature. Entry points are
loaded one at a time so that the failing one is known, and every plugin is checked when
it is registered:

- a module that fails to import is reported with the exception it raised;
- a function named ``nas_*`` that is not marked ``@nas.hookimpl`` is refused (pluggy would
  ignore it, and the user would only see "unknown backend ...");
- a hook implementation that asks for an argument its hook does not pass is refused;
- after loading, pluggy's ``check_pending`` finds marked functions that match no hook
  (a misspelled hook name), reported with the closest real hook name.

Registrars are called on first use of a registry, or all at once by `validate`, which the
command line runs before any command; a registrar that raises or returns something other
than a list is reported the same way. Observer hooks are called one implementation at a
time, so one failing observer is logged (naming its plugin) and the others still run.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import inspect
import logging
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from nas import hookspecs
from nas.errors import ConfigError, one_line

log = logging.getLogger(__name__)

#: registry kind -> (registrar hook, what the user types).
KINDS = {
    "search_space": ("nas_register_search_spaces", "search_space"),
    "dataset": ("nas_register_datasets", "dataset"),
    "compression": ("nas_register_compression_methods", "compression"),
    "backend": ("nas_register_backends", "backend"),
}
COMMAND_HOOK = "nas_register_commands"
#: Commands of the core command line (`nas.__main__`); a plugin command may not reuse them.
CORE_COMMANDS = ("search", "list", "report", "finalize")
HOOK_PREFIX = "nas_"


class PluginError(ConfigError):
    """A plugin cannot be loaded or breaks the hook contract; the message names it."""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its registered name and the package it came from."""

    name: str
    module: str
    package: str


@dataclass(frozen=True)
class Command:
    """A subcommand of ``python -m nas``, contributed by a plugin (`nas_register_commands`).

    Attributes:
        name: what users type after ``python -m nas``.
        usage: its arguments on one line, shown after the name in ``--help``
            (``+hw=<profile> [fit=60]``).
        help: what it does, one or a few lines, shown indented under the usage.
        run: called with the arguments after the name; returns the exit status. Raise
            `nas.errors.ConfigError` for a bad argument: the user sees its one line, exit 2.
    """

    name: str
    usage: str
    help: str
    run: Callable[[list[str]], int]


class PluginManager:
    """Typed access to hooks and to the name -> class registries they fill."""

    def __init__(self, autoload: bool | None = None) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._registries: dict[str, dict[str, tuple[Any, str]]] = {}
        self._packages: dict[str, str] = {}  # plugin name -> "project==version"
        if autoload is None:
            autoload = os.environ.get("NAS_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
        for name in blocked():
            self._pm.set_blocked(name)
        if autoload:
            self._load_entry_points()

    # ------------------------------------------------------------------ loading

    def _load_entry_points(self) -> None:
        """Import and register every plugin of the ``nas`` entry-point group."""
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != hookspecs.PROJECT:
                    continue
                # a distribution seen twice on sys.path: the first one wins, as in pluggy
                if self._pm.get_plugin(ep.name) is not None or self._pm.is_blocked(ep.name):
                    continue
                package = f"{dist.metadata['Name']}=={dist.version}"
                try:
                    plugin = ep.load()
                except Exception as exc:
                    raise PluginError(
                        f"plugin '{ep.name}' ({package}) failed to import {ep.value}: "
                        f"{_describe(exc)}"
                    ) from exc
                self._add(plugin, ep.name, package)
        self._check_pending()

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module (tests and embedding applications), with the
        same checks as an entry point."""
        self._add(plugin, name, "(registered in code)")
        try:
            self._check_pending()
        except PluginError:
            self._pm.unregister(plugin)  # leave the manager as it was
            raise

    def _add(self, plugin: Any, name: str | None, package: str) -> None:
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        where = f"plugin '{label}' ({package})"
        self._check_hook_functions(plugin, where)
        try:
            registered = self._pm.register(plugin, name=name)
        except ValueError as exc:  # a name or object registered twice
            raise PluginError(f"{where}: {one_line(exc)}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{where}: {one_line(exc)}") from exc
        if registered is not None:
            self._packages[registered] = package
        self._registries = {}

    def _check_hook_functions(self, plugin: Any, where: str) -> None:
        """Refuse unmarked ``nas_*`` functions and arguments a hook does not pass."""
        for attr in dir(plugin):
            if not attr.startswith(HOOK_PREFIX):
                continue
            func = getattr(plugin, attr, None)
            if not callable(func) or isinstance(func, (type, types.ModuleType)):
                continue
            opts = self._pm.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                raise PluginError(
                    f"{where}: function '{attr}' is named like a hook but not marked with "
                    "@nas.hookimpl (rename it if it is not a hook: the 'nas_' prefix is "
                    "reserved for hooks)"
                )
            hook_name = opts.get("specname") or attr
            caller = getattr(self._pm.hook, hook_name, None)
            if caller is None or caller.spec is None:
                continue  # an unknown hook: check_pending reports it with a suggestion
            extra = [a for a in _argnames(func) if a not in caller.spec.argnames]
            if extra:
                raise PluginError(
                    f"{where}: hook '{hook_name}' asks for {', '.join(map(repr, extra))}, "
                    f"which the hook does not pass; it passes: "
                    f"{', '.join(caller.spec.argnames) or '(no arguments)'}"
                )

    def _check_pending(self) -> None:
        """pluggy's ``check_pending``, turned into one line naming plugin and hook."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self._pm.get_name(exc.plugin) or repr(exc.plugin)
            unknown = self._unknown_hooks(exc.plugin) or ["?"]
            hooks = hook_names()
            close = difflib.get_close_matches(unknown[0], hooks, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"hooks: {', '.join(hooks)}"
            raise PluginError(
                f"plugin '{name}' ({self._packages.get(name, '?')}): unknown hook "
                f"'{unknown[0]}'; {hint}"
            ) from exc

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        found = []
        for attr in dir(plugin):
            opts = self._pm.parse_hookimpl_opts(plugin, attr)
            if opts is not None and not opts.get("optionalhook"):
                hook_name = opts.get("specname") or attr
                caller = getattr(self._pm.hook, hook_name, None)
                if caller is None or not caller.has_spec():
                    found.append(hook_name)
        return found

    # ------------------------------------------------------------------ queries

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin with its source package (``name==version``)."""
        out = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            package = self._packages.get(name, "(registered in code)")
            out.append(PluginInfo(name, getattr(plugin, "__name__", repr(plugin)), package))
        return sorted(out, key=lambda p: p.name)

    def _owner(self, impl: pluggy.HookImpl) -> str:
        return self._pm.get_name(impl.plugin) or repr(impl.plugin)

    def registry(self, kind: str) -> dict[str, Any]:
        """Name -> class for ``kind`` (``search_space``, ``dataset``, ``compression``,
        ``backend``); two classes with one name are refused naming both plugins."""
        return {name: cls for name, (cls, _) in self._collected(KINDS[kind][0]).items()}

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` in ``kind``."""
        return self._collected(KINDS[kind][0])[name][1]

    def commands(self) -> dict[str, Command]:
        """Name -> `Command` contributed by plugins (none may reuse a core command)."""
        found = self._collected(COMMAND_HOOK)
        for name, (cmd, owner) in found.items():
            if name in CORE_COMMANDS:
                raise PluginError(f"plugin '{owner}': command '{name}' is a core command")
            if not isinstance(cmd, Command):
                raise PluginError(f"plugin '{owner}': {cmd!r} is not a nas.Command")
        return {name: cmd for name, (cmd, _) in found.items()}

    def command_owner(self, name: str) -> str:
        """The plugin that contributed command ``name``."""
        return self._collected(COMMAND_HOOK)[name][1]

    def validate(self) -> None:
        """Call every registrar now, so that a broken plugin stops the program before any
        command runs rather than in the middle of one."""
        for kind in KINDS:
            self.registry(kind)
        self.commands()

    def _collected(self, hook_name: str) -> dict[str, tuple[Any, str]]:
        if hook_name not in self._registries:
            self._registries[hook_name] = self._collect(hook_name)
        return self._registries[hook_name]

    def _collect(self, hook_name: str) -> dict[str, tuple[Any, str]]:
        found: dict[str, tuple[Any, str]] = {}
        hook = getattr(self._pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            owner = self._owner(impl)
            try:
                items = impl.function()
            except Exception as exc:
                raise PluginError(
                    f"plugin '{owner}': {hook_name} raised {_describe(exc)}"
                ) from exc
            if items is None:
                continue
            if not isinstance(items, (list, tuple)):
                raise PluginError(
                    f"plugin '{owner}': {hook_name} must return a list, not {type(items).__name__}"
                )
            for item in items:
                name = getattr(item, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin '{owner}': {item!r} has no 'name' attribute")
                if name in found and found[name][0] is not item:
                    raise PluginError(
                        f"{hook_name}: name '{name}' is registered twice, by plugin "
                        f"'{found[name][1]}' and by plugin '{owner}'; block one with "
                        "NAS_DISABLE_PLUGINS"
                    )
                found[name] = (item, owner)
        return dict(sorted(found.items()))

    def get(self, kind: str, name: str) -> Any:
        """The class registered as ``name``, or a one-line error listing valid names."""
        reg = self.registry(kind)
        if name not in reg:
            raise ConfigError(
                f"unknown {KINDS[kind][1]} '{name}'; available: {', '.join(reg) or '(none)'}"
            )
        return reg[name]

    # ------------------------------------------------------------------ observers

    def _observe(self, hook_name: str, **kwargs: Any) -> None:
        """Call each implementation of an observer hook on its own: in pluggy's order (last
        registered first), each with its own copy of mutable arguments; an exception is
        logged naming the plugin, and the next observer still runs."""
        hook = getattr(self._pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):
            args = {a: _copied(kwargs[a]) for a in impl.argnames}
            try:
                impl.function(**args)
            except Exception as exc:  # an observer must not break the search
                owner = self._owner(impl)
                log.warning("plugin '%s': %s failed: %s", owner, hook_name, _describe(exc))

    def observe_trial(self, trial_number: int, record: dict[str, Any]) -> None:
        """Run every ``nas_observe_trial`` implementation (see `_observe`)."""
        self._observe("nas_observe_trial", trial_number=trial_number, record=record)

    def observe_study(self, run_dir: str, trials: Any) -> None:
        """Run every ``nas_observe_study`` implementation (see `_observe`)."""
        self._observe("nas_observe_study", run_dir=run_dir, trials=trials)


def _copied(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def _argnames(func: Callable[..., Any]) -> list[str]:
    """Arguments a hook implementation needs the hook to pass: those without a default,
    less ``self`` / ``cls`` of a method looked up on a class (as pluggy counts them)."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.default is p.empty]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)}"


def hook_names() -> list[str]:
    """Every hook a plugin may implement."""
    return sorted(n for n in dir(hookspecs) if n.startswith(HOOK_PREFIX))


def blocked() -> list[str]:
    """Plugin names blocked through ``NAS_DISABLE_PLUGINS``."""
    return [n.strip() for n in os.environ.get("NAS_DISABLE_PLUGINS", "").split(",") if n.strip()]


_default: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created on first use."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default


def reset_plugin_manager(pm: PluginManager | None = None) -> None:
    """Replace (or drop) the process-wide manager: for tests and embedding applications."""
    global _default
    _default = pm


def list_names(kind: str, pattern: str = "*") -> list[str]:
    return [n for n in get_plugin_manager().registry(kind) if fnmatch.fnmatch(n, pattern)]


def create(kind: str, name: str, **config: Any) -> Any:
    cls = get_plugin_manager().get(kind, name)
    return cls(cls.Config(**config))
