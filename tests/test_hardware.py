from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import MISSING

from nas.config import HardwareConfig, register_configs
from nas.errors import ProfileError
from nas.hardware import BUILTIN_DIR, available_profiles, is_required, load_profile, profile_fields
from nas.search import profile_from_cfg

REQUIRED_PROFILES = {"cortex_m4", "cortex_m7", "cortex_m0plus", "esp32", "arduino_uno"}


def test_builtin_profiles_present_and_valid():
    profiles = available_profiles()
    assert REQUIRED_PROFILES <= set(profiles)
    for name in profiles:
        p = load_profile(name)
        assert p.name == name
        assert p.sram_bytes > 0 and p.flash_bytes > 0 and p.clock_hz > 0
        for key in ("clock_hz", "sram_bytes", "flash_bytes", "active_power_mw", "latency_lut"):
            assert key in p.sources, f"{name}: no source for {key}"
        for kind in (
            "conv2d",
            "pointwise_conv2d",
            "depthwise_conv2d",
            "fully_connected",
            "average_pool2d",
            "add",
            "reshape",
        ):
            p.latency_entry(kind)


def test_cortex_m4_is_a_named_board():
    p = load_profile("cortex_m4")
    assert "L4R5" in p.board and p.sram_bytes == 640 * 1024 and p.clock_hz == 120_000_000


def test_arduino_uno_limits():
    p = load_profile("arduino_uno")
    assert p.sram_bytes == 2048 and p.runtime == "c"


def _write(tmp_path: Path, data: dict, name: str = "chip.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "cortex_m4.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("sram_bytes"), "sram_bytes"),
        (lambda d: d.__setitem__("clock_hz", "fast"), "clock_hz"),
        (lambda d: d.__setitem__("flash_bytes", -1), "flash_bytes"),
        (
            lambda d: d["latency_lut"]["conv2d"].__setitem__("cycles_per_byte", 1),
            "latency_lut.conv2d",
        ),
        (lambda d: d["latency_lut"].__setitem__("add", 3), "latency_lut.add"),
        (lambda d: d.__setitem__("runtime", "zephyr"), "runtime"),
    ],
)
def test_malformed_profile_names_file_and_field(tmp_path, mutate, field):
    data = _base()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    msg = str(err.value)
    assert str(path) in msg and field in msg and "\n" not in msg


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="bad.yaml: not valid YAML"):
        load_profile(path)


def test_unknown_profile_lists_available():
    with pytest.raises(ProfileError, match="available: .*cortex_m4"):
        load_profile("pdp11")


def test_user_profile_folder(tmp_path, monkeypatch):
    data = _base()
    data["name"] = "my_chip"
    _write(tmp_path, data, "my_chip.yaml")
    monkeypatch.setenv("NAS_HARDWARE_PROFILES", str(tmp_path))
    assert load_profile("my_chip").board == data["board"]


def test_the_hydra_schema_is_derived_from_the_profile_fields():
    """One schema: `HardwareProfile`'s fields, required where they have no default."""
    schema = {f.name: f for f in dataclasses.fields(HardwareConfig)}
    assert set(schema) == {f.name for f in profile_fields()} | {"source_file"}
    for f in profile_fields():
        assert (schema[f.name].default == MISSING) == is_required(f), f.name


def test_null_means_the_default_and_extra_keys_are_kept(tmp_path, monkeypatch):
    """``runtime: null`` is the default runtime, like any optional field left null; keys
    the schema does not know go to ``extra``, through the command line's config too."""
    data = _base()
    data.update(name="my_board", runtime=None, notes=None, vendor_url="https://example.com")
    path = _write(tmp_path, data, "my_board.yaml")
    profile = load_profile(path)
    assert (profile.runtime, profile.notes) == ("tflm", "")
    assert profile.extra == {"vendor_url": "https://example.com"}

    monkeypatch.setenv("NAS_HARDWARE_PROFILES", str(tmp_path))
    register_configs()
    with initialize_config_module("nas.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+hw=my_board"])
    assert profile_from_cfg(cfg).extra == {"vendor_url": "https://example.com"}
