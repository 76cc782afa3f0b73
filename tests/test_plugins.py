from __future__ import annotations

import pytest

import nas
from nas.compression import BaseCompressionMethod, Candidate
from nas.errors import ConfigError
from nas.plugin_manager import PluginManager


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


def test_builtins_register_through_entry_points():
    pm = PluginManager()
    names = {p.name: p.package for p in pm.plugins()}
    for name in ("mobilenet", "digits", "ptq", "estimate"):
        assert names[name].startswith("mcu-nas==")


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
