"""Hardware profiles: one YAML file per target chip, validated into a `HardwareProfile`.

Profiles live in the repository's ``hardware_profiles/`` folder; users add their own chips
by pointing ``NAS_HARDWARE_PROFILES`` (``os.pathsep``-separated folders) at more YAML files.
A profile file that is malformed fails with one line naming the file and the field.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ProfileError

#: Operator kinds a latency lookup table can hold (see `nas.graph.OP_KINDS`).
LUT_FIELDS = ("cycles_per_mac", "cycles_per_output", "cycles_per_op")
RUNTIMES = ("tflm", "c")
KERNEL_LIBRARIES = ("reference", "cmsis_nn")

#: The built-in profiles: the repository's ``hardware_profiles/`` folder, installed as the
#: package ``nas_hardware_profiles`` so that a built wheel carries them.
_spec = importlib.util.find_spec("nas_hardware_profiles")
BUILTIN_DIR = (
    Path(_spec.origin).parent
    if _spec and _spec.origin
    else Path(__file__).resolve().parent.parent / "hardware_profiles"  # not installed
)


@dataclass(frozen=True)
class LatencyEntry:
    """Cost of one operator kind: cycles = per_mac * MACs + per_output * outputs + per_op."""

    cycles_per_mac: float
    cycles_per_output: float = 0.0
    cycles_per_op: float = 0.0

    def cycles(self, macs: int, outputs: int) -> float:
        return self.cycles_per_mac * macs + self.cycles_per_output * outputs + self.cycles_per_op


@dataclass(frozen=True)
class HardwareProfile:
    """A target chip: memories, clock, power, runtime overheads and a latency lookup table."""

    name: str
    board: str
    core: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int
    active_power_mw: float
    runtime_ram_bytes: int
    runtime_flash_bytes: int
    latency_lut: dict[str, LatencyEntry]
    sources: dict[str, str]
    runtime: str = "tflm"
    kernels: str = "cmsis_nn"
    cycles_per_instruction: float = 1.0
    pointer_bytes: int = 4
    source_file: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def instructions_to_ms(self, instructions: float) -> float:
        """Milliseconds that ``instructions`` take: ``cycles_per_instruction`` at the clock."""
        return instructions * self.cycles_per_instruction * 1000.0 / self.clock_hz

    def latency_entry(self, kind: str) -> LatencyEntry:
        """The lookup-table entry for an operator kind, or a clear error naming the file."""
        try:
            return self.latency_lut[kind]
        except KeyError:
            raise ProfileError(
                f"{self.source_file or self.name}: latency_lut has no entry for operator "
                f"'{kind}' (has: {', '.join(sorted(self.latency_lut))})"
            ) from None


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "board": str,
    "core": str,
    "clock_hz": int,
    "sram_bytes": int,
    "flash_bytes": int,
    "active_power_mw": (int, float),
    "runtime_ram_bytes": int,
    "runtime_flash_bytes": int,
    "latency_lut": Mapping,
    "sources": Mapping,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "runtime": str,
    "kernels": str,
    "cycles_per_instruction": (int, float),
    "pointer_bytes": int,
    "notes": str,
}
_POSITIVE = ("clock_hz", "sram_bytes", "flash_bytes", "cycles_per_instruction", "pointer_bytes")
_NON_NEGATIVE = ("active_power_mw", "runtime_ram_bytes", "runtime_flash_bytes")


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", Mapping: "mapping"}
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _check_type(where: str, key: str, value: Any, t: type | tuple[type, ...]) -> None:
    ok = isinstance(value, t) and not isinstance(value, bool)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise ProfileError(f"{where}: field '{key}' must be a {_type_name(t)}, got {value!r}")


def profile_from_mapping(data: Any, source: str) -> HardwareProfile:
    """Validate a parsed profile; every error names ``source`` and the offending field."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a hardware profile must be a mapping of fields")
    data = dict(data)
    data.pop("source_file", None)
    for key, t in _REQUIRED.items():
        if key not in data or data[key] is None:
            raise ProfileError(f"{source}: missing required field '{key}'")
        _check_type(source, key, data[key], t)
    for key, t in _OPTIONAL.items():
        if key in data and data[key] is not None:
            _check_type(source, key, data[key], t)
    for key in _POSITIVE:
        if data.get(key) is not None and data[key] <= 0:
            raise ProfileError(f"{source}: field '{key}' must be > 0, got {data[key]!r}")
    for key in _NON_NEGATIVE:
        if data[key] < 0:
            raise ProfileError(f"{source}: field '{key}' must be >= 0, got {data[key]!r}")
    if data.get("runtime", "tflm") not in RUNTIMES:
        raise ProfileError(f"{source}: field 'runtime' must be one of {RUNTIMES}")
    if data.get("kernels", "cmsis_nn") not in KERNEL_LIBRARIES:
        raise ProfileError(f"{source}: field 'kernels' must be one of {KERNEL_LIBRARIES}")
    lut: dict[str, LatencyEntry] = {}
    for kind, entry in data["latency_lut"].items():
        where = f"latency_lut.{kind}"
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{source}: field '{where}' must be a mapping of {LUT_FIELDS}")
        unknown = set(entry) - set(LUT_FIELDS)
        if unknown:
            raise ProfileError(
                f"{source}: field '{where}' has unknown key(s) {sorted(unknown)}; "
                f"valid: {', '.join(LUT_FIELDS)}"
            )
        if "cycles_per_mac" not in entry:
            raise ProfileError(f"{source}: missing required field '{where}.cycles_per_mac'")
        values = {}
        for f in LUT_FIELDS:
            if f in entry:
                _check_type(source, f"{where}.{f}", entry[f], (int, float))
                if entry[f] < 0:
                    raise ProfileError(f"{source}: field '{where}.{f}' must be >= 0")
                values[f] = float(entry[f])
        lut[str(kind)] = LatencyEntry(**values)
    known = set(_REQUIRED) | set(_OPTIONAL)
    return HardwareProfile(
        name=data["name"],
        board=data["board"],
        core=data["core"],
        clock_hz=int(data["clock_hz"]),
        sram_bytes=int(data["sram_bytes"]),
        flash_bytes=int(data["flash_bytes"]),
        active_power_mw=float(data["active_power_mw"]),
        runtime_ram_bytes=int(data["runtime_ram_bytes"]),
        runtime_flash_bytes=int(data["runtime_flash_bytes"]),
        latency_lut=lut,
        sources={str(k): str(v) for k, v in data["sources"].items()},
        runtime=data.get("runtime") or "tflm",
        kernels=data.get("kernels") or "cmsis_nn",
        cycles_per_instruction=float(data.get("cycles_per_instruction") or 1.0),
        pointer_bytes=int(data.get("pointer_bytes") or 4),
        source_file=source,
        notes=str(data.get("notes") or ""),
        extra={k: v for k, v in data.items() if k not in known},
    )


def profile_dirs() -> list[Path]:
    """Folders searched for ``*.yaml`` profiles: built-ins, then ``NAS_HARDWARE_PROFILES``."""
    dirs = [BUILTIN_DIR]
    for part in os.environ.get("NAS_HARDWARE_PROFILES", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()))
    return dirs


def available_profiles() -> dict[str, Path]:
    """Profile name (file stem) -> file; a later folder overrides an earlier one."""
    found: dict[str, Path] = {}
    for d in profile_dirs():
        if d.is_dir():
            for path in sorted(d.glob("*.yaml")):
                found[path.stem] = path
    return dict(sorted(found.items()))


def read_profile_file(path: Path) -> dict[str, Any]:
    """Parse a profile file into a mapping (not yet validated); errors name the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read hardware profile ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}: not valid YAML{at}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a hardware profile must be a mapping of fields")
    return data


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a profile by name (``cortex_m4``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        profiles = available_profiles()
        if str(name_or_path) not in profiles:
            raise ProfileError(
                f"unknown hardware profile '{name_or_path}'; available: "
                f"{', '.join(profiles) or '(none found)'}"
            )
        path = profiles[str(name_or_path)]
    return profile_from_mapping(read_profile_file(path), str(path))
