"""The one owner of the pluggy `PluginManager`; every other module goes through it.

Plugins are loaded from the ``nas`` entry-point group (built-ins included), minus those
named in ``NAS_DISABLE_PLUGINS`` (comma-separated entry-point names); with
``NAS_DISABLE_PLUGIN_AUTOLOAD=1`` none are loaded and callers `register` their own.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from typing import Any

import pluggy

from nas import hookspecs
from nas.errors import ConfigError

log = logging.getLogger(__name__)

#: registry kind -> (registrar hook, what the user types).
KINDS = {
    "search_space": ("nas_register_search_spaces", "search_space"),
    "dataset": ("nas_register_datasets", "dataset"),
    "compression": ("nas_register_compression_methods", "compression"),
    "backend": ("nas_register_backends", "backend"),
}


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its registered name and the package it came from."""

    name: str
    module: str
    package: str


class PluginManager:
    """Typed access to hooks and to the name -> class registries they fill."""

    def __init__(self, autoload: bool | None = None) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._registries: dict[str, dict[str, tuple[type, str]]] | None = None
        if autoload is None:
            autoload = os.environ.get("NAS_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
        for name in blocked():
            self._pm.set_blocked(name)
        if autoload:
            self._pm.load_setuptools_entrypoints(hookspecs.PROJECT)

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module (tests and embedding applications)."""
        self._pm.register(plugin, name=name)
        self._registries = None

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin with its source package (``name==version``)."""
        dists = {id(p): d for p, d in self._pm.list_plugin_distinfo()}
        out = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            dist = dists.get(id(plugin))
            package = f"{dist.project_name}=={dist.version}" if dist else "(registered in code)"
            out.append(PluginInfo(name, getattr(plugin, "__name__", repr(plugin)), package))
        return sorted(out, key=lambda p: p.name)

    def _owner(self, impl: pluggy.HookImpl) -> str:
        return self._pm.get_name(impl.plugin) or repr(impl.plugin)

    def registry(self, kind: str) -> dict[str, Any]:
        """Name -> class for ``kind`` (``search_space``, ``dataset``, ``compression``,
        ``backend``); two classes with one name are refused naming both plugins."""
        if self._registries is None:
            self._registries = {k: self._collect(hook) for k, (hook, _) in KINDS.items()}
        return {name: cls for name, (cls, _) in self._registries[kind].items()}

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` in ``kind``."""
        self.registry(kind)
        assert self._registries is not None
        return self._registries[kind][name][1]

    def _collect(self, hook_name: str) -> dict[str, tuple[type, str]]:
        found: dict[str, tuple[type, str]] = {}
        hook = getattr(self._pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            owner = self._owner(impl)
            for cls in impl.function() or []:
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"plugin '{owner}': {cls!r} has no 'name' attribute")
                if name in found and found[name][0] is not cls:
                    raise ConfigError(
                        f"{hook_name}: name '{name}' is registered twice, by plugin "
                        f"'{found[name][1]}' and by plugin '{owner}'; block one with "
                        "NAS_DISABLE_PLUGINS"
                    )
                found[name] = (cls, owner)
        return dict(sorted(found.items()))

    def get(self, kind: str, name: str) -> Any:
        """The class registered as ``name``, or a one-line error listing valid names."""
        reg = self.registry(kind)
        if name not in reg:
            raise ConfigError(
                f"unknown {KINDS[kind][1]} '{name}'; available: {', '.join(reg) or '(none)'}"
            )
        return reg[name]

    def observe_trial(self, trial_number: int, record: dict[str, Any]) -> None:
        try:
            self._pm.hook.nas_observe_trial(trial_number=trial_number, record=dict(record))
        except Exception as exc:  # an observer must not break the search
            log.warning("nas_observe_trial hook failed: %s", exc)

    def observe_study(self, run_dir: str, trials: Any) -> None:
        try:
            self._pm.hook.nas_observe_study(run_dir=run_dir, trials=trials)
        except Exception as exc:
            log.warning("nas_observe_study hook failed: %s", exc)


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
