"""mcu-nas: hardware-constrained neural architecture search for microcontrollers.

Plugin authors need `hookimpl`, `Command` (for ``nas_register_commands``) and the base
classes; users who script the tool use the registry helpers (``nas.list_backends("t*")``,
``nas.create_backend("estimate")``).
"""

from __future__ import annotations

from typing import Any

from nas.hookspecs import hookimpl
from nas.plugin_manager import Command, create, get_plugin_manager, list_names

__all__ = [
    "hookimpl",
    "Command",
    "get_plugin_manager",
    "list_search_spaces",
    "list_datasets",
    "list_compression_methods",
    "list_backends",
    "create_search_space",
    "create_dataset",
    "create_compression_method",
    "create_backend",
]
__version__ = "0.1.0"


def list_search_spaces(pattern: str = "*") -> list[str]:
    """Registered search-space names matching a shell-style ``pattern``."""
    return list_names("search_space", pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching ``pattern``."""
    return list_names("dataset", pattern)


def list_compression_methods(pattern: str = "*") -> list[str]:
    """Registered compression-method names matching ``pattern``."""
    return list_names("compression", pattern)


def list_backends(pattern: str = "*") -> list[str]:
    """Registered backend names matching ``pattern``."""
    return list_names("backend", pattern)


def create_search_space(name: str, **config: Any) -> Any:
    """An instance of search space ``name`` with ``config`` overriding its defaults."""
    return create("search_space", name, **config)


def create_dataset(name: str, **config: Any) -> Any:
    """An instance of dataset ``name``."""
    return create("dataset", name, **config)


def create_compression_method(name: str, **config: Any) -> Any:
    """An instance of compression method ``name``."""
    return create("compression", name, **config)


def create_backend(name: str, **config: Any) -> Any:
    """An instance of backend ``name``."""
    return create("backend", name, **config)
