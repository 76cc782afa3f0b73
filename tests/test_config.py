"""Every option of every config group composes, and the documented keys override."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import nas
import nas.conf
from nas.compression import order
from nas.config import SAMPLERS, STORAGES, SearchConfig, register_configs
from nas.errors import ConfigError
from nas.hardware import available_profiles
from nas.search import build_components, make_sampler, profile_from_cfg
from nas.storage import open_storage, storage_url
from nas.validate import group_options

register_configs()


def _compose(*overrides: str):
    with initialize_config_module("nas.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("hw", sorted(available_profiles()))
def test_every_profile_composes(hw):
    cfg = _compose(f"+hw={hw}")
    assert profile_from_cfg(cfg).name == hw
    assert cfg.study.name == f"{hw}-mobilenet-digits"


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_every_sampler(sampler):
    cfg = _compose("+hw=cortex_m4", f"sampler={sampler}")
    assert cfg.sampler.name == sampler
    assert make_sampler(cfg) is not None


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_every_storage(storage, tmp_path):
    cfg = _compose("+hw=cortex_m4", f"storage={storage}")
    url = storage_url(cfg.storage.url, tmp_path, cfg.storage.name)
    assert url.startswith("journal://" if storage == "journal" else "sqlite:///")
    assert open_storage(url) is not None


@pytest.mark.parametrize(
    ("group", "names"),
    [
        ("search_space", nas.list_search_spaces()),
        ("dataset", nas.list_datasets()),
        ("backend", nas.list_backends()),
    ],
)
def test_every_plugin_option(group, names):
    assert names
    for name in names:
        cfg = _compose("+hw=cortex_m4", f"{group}={name}")
        assert cfg[group].name == name


@pytest.mark.parametrize("method", nas.list_compression_methods())
def test_every_compression_method(method):
    cfg = _compose("+hw=cortex_m4", f"compression=[{method}]")
    assert list(cfg.compression) == [method]


def test_documented_keys_override():
    cfg = _compose(
        "+hw=cortex_m7",
        "search.n_trials=3",
        "search.timeout_s=60",
        "search.seed=7",
        "search.epochs=2",
        "sampler=random",
        "dataset=digits",
        "search_space=mobilenet",
        "study.name=abc",
        "storage.url=sqlite:///x.db",
        "hw.sram_bytes=1000",
        "search_space.resolutions=[8]",
        "compression.ptq.calibration_samples=10",
    )
    assert (cfg.search.n_trials, cfg.search.timeout_s, cfg.search.seed, cfg.search.epochs) == (
        3,
        60,
        7,
        2,
    )
    assert cfg.study.name == "abc" and cfg.storage.url == "sqlite:///x.db"
    assert profile_from_cfg(cfg).sram_bytes == 1000
    comp = build_components(cfg)
    assert comp.space.config.resolutions == [8]
    assert comp.methods[0].config.calibration_samples == 10
    assert order(comp.methods)[0].name == "ptq"


def test_schema_rejects_wrong_type():
    with pytest.raises(Exception, match="n_trials"):
        _compose("+hw=cortex_m4", "search.n_trials=many")


def test_default_config_is_complete():
    cfg = _compose("+hw=cortex_m4")
    assert not OmegaConf.missing_keys(cfg)
    assert cfg.storage.url is None and cfg.sampler.name == "tpe" and cfg.backend.name == "tflm"


def test_each_schema_has_one_source():
    """Sampler and storage names come from one table each, which the command-line check
    reads too; the search defaults are the schema's, not repeated in the YAML."""
    assert group_options()["sampler"] == list(SAMPLERS) == ["tpe", "nsga2", "random"]
    assert group_options()["storage"] == list(STORAGES) == ["sqlite", "journal"]
    primary = OmegaConf.load(Path(nas.conf.__file__).parent / "config.yaml")
    assert not {"search", "study", "pruner"} & set(primary)
    cfg = _compose("+hw=cortex_m4")
    assert cfg.search == OmegaConf.structured(SearchConfig)


def test_unknown_sampler_is_a_config_error():
    cfg = _compose("+hw=cortex_m4")
    cfg.sampler = {"name": "cmaes"}
    with pytest.raises(ConfigError, match="unknown sampler 'cmaes'; valid: tpe, nsga2, random"):
        make_sampler(cfg)
