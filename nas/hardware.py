"""Hardware profiles: one YAML file per target chip, validated into a `HardwareProfile`.

Profiles live in the repository's ``hardware_profiles/`` folder; users add their own chips
by pointing ``NAS_HARDWARE_PROFILES`` (``os.pathsep``-separated folders) at more YAML files.
A profile file that is malformed fails with one line naming the file and the field.
A profile's file is read only when the profile is selected, and reading is bounded: only
regular files of at most `MAX_PROFILE_BYTES`, no YAML anchors or aliases. A profile's
name is its file's stem (``name:`` must agree), and one name may have one file only: a
user file named like a built-in is refused, not silently preferred.
The fields of `HardwareProfile` are the one schema of a profile file: the validation here
and the Hydra schema of ``hw`` (`nas.config.HardwareConfig`) are derived from them.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from nas.errors import ProfileError

#: The runtimes a profile may name, and the kernel libraries.
RUNTIMES = ("tflm", "c")
KERNEL_LIBRARIES = ("reference", "cmsis_nn")
#: Largest profile file read, in bytes (the built-ins are under 5 KB), and the deepest
#: nesting of mappings and lists (the built-ins use 3 levels).
MAX_PROFILE_BYTES = 64 * 1024
MAX_PROFILE_DEPTH = 16

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


#: The keys of one latency lookup-table entry (the fields of `LatencyEntry`).
LUT_FIELDS = tuple(f.name for f in fields(LatencyEntry))
#: Field metadata: the range a number must lie in, or the values a string may take.
_POSITIVE = {"min": 0, "inclusive": False}
_NON_NEGATIVE = {"min": 0, "inclusive": True}


def _one_of(values: tuple[str, ...]) -> dict[str, Any]:
    """Field metadata: the string must be one of ``values``."""
    return {"one_of": values}


@dataclass(frozen=True)
class HardwareProfile:
    """A target chip: memories, clock, power, runtime overheads and a latency lookup table.

    The fields are the schema of a profile file: fields without a default are required,
    their types and metadata (range, valid values) are what `profile_from_mapping`
    checks, and `nas.config` derives the Hydra schema of ``hw`` from them. ``source_file``
    and ``extra`` (the file's other keys) are filled in by the loader.
    """

    name: str
    board: str
    core: str
    clock_hz: int = field(metadata=_POSITIVE)
    sram_bytes: int = field(metadata=_POSITIVE)
    flash_bytes: int = field(metadata=_POSITIVE)
    active_power_mw: float = field(metadata=_NON_NEGATIVE)
    runtime_ram_bytes: int = field(metadata=_NON_NEGATIVE)
    runtime_flash_bytes: int = field(metadata=_NON_NEGATIVE)
    latency_lut: dict[str, LatencyEntry]
    sources: dict[str, str]
    runtime: str = field(default="tflm", metadata=_one_of(RUNTIMES))
    kernels: str = field(default="cmsis_nn", metadata=_one_of(KERNEL_LIBRARIES))
    cycles_per_instruction: float = field(default=1.0, metadata=_POSITIVE)
    pointer_bytes: int = field(default=4, metadata=_POSITIVE)
    #: The keyword-spotting MFCC front-end's code (flash, besides its tables) and stack,
    #: measured on this core (``python benchmarks/frontend_calibration.py``); 0: not
    #: measured, and a search with a front-end dataset is refused on this chip.
    frontend_code_bytes: int = field(default=0, metadata=_NON_NEGATIVE)
    frontend_stack_bytes: int = field(default=0, metadata=_NON_NEGATIVE)
    #: Flash of each weight decoder's code (``huffman``, ``cluster``) on this core,
    #: measured (``python benchmarks/decoder_calibration.py``); its time per inference is
    #: ``latency_lut.decode_<name>``. A method whose decoder is missing is refused.
    decoder_code_bytes: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    #: Provenance of a latency table fitted by ``python -m nas calibrate`` (tools, date,
    #: command, fit error); empty for hand-written profiles.
    calibration: dict[str, Any] = field(default_factory=dict)
    source_file: str = ""
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


#: Fields of `HardwareProfile` the loader fills in rather than reads from the file.
LOADER_FIELDS = ("source_file", "extra")


def profile_fields() -> list[Field[Any]]:
    """The fields of `HardwareProfile` a profile file holds, in declaration order."""
    return [f for f in fields(HardwareProfile) if f.name not in LOADER_FIELDS]


def field_type(f: Field[Any]) -> Any:
    """The type a `HardwareProfile` field is declared with (annotations are strings)."""
    return _type_hints()[f.name]


@functools.cache
def _type_hints() -> dict[str, Any]:
    return get_type_hints(HardwareProfile)


def is_required(f: Field[Any]) -> bool:
    """Whether a profile file must give the field (it has no default)."""
    return f.default is MISSING and f.default_factory is MISSING


def _accepted(t: Any) -> type | tuple[type, ...]:
    """The Python types a YAML value of declared type ``t`` may have."""
    if get_origin(t) is dict:
        return Mapping
    return (int, float) if t is float else t


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


def _check_rule(where: str, f: Field[Any], value: Any) -> None:
    """The range or set of values the field's metadata allows."""
    rule = f.metadata
    if "one_of" in rule and value not in rule["one_of"]:
        raise ProfileError(f"{where}: field '{f.name}' must be one of {rule['one_of']}")
    if "min" in rule:
        low, inclusive = rule["min"], rule["inclusive"]
        if value < low or (value == low and not inclusive):
            op = ">=" if inclusive else ">"
            raise ProfileError(f"{where}: field '{f.name}' must be {op} {low}, got {value!r}")


def _latency_entry(source: str, where: str, entry: Any) -> LatencyEntry:
    """One validated lookup-table entry (``where``: ``latency_lut.<kind>``)."""
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
    return LatencyEntry(**values)


def _convert(source: str, key: str, t: Any, value: Any) -> Any:
    """A checked YAML value as the field's declared type ``t``."""
    if get_origin(t) is not dict:
        return t(value)
    item = get_args(t)[1]
    if item is LatencyEntry:
        if not value:
            raise ProfileError(
                f"{source}: field '{key}' has no entries; give each operator kind's cost "
                f"({', '.join(LUT_FIELDS)})"
            )
        return {str(k): _latency_entry(source, f"{key}.{k}", v) for k, v in value.items()}
    return {str(k): item(v) if item is str else v for k, v in value.items()}


def profile_from_mapping(data: Any, source: str) -> HardwareProfile:
    """Validate a parsed profile; every error names ``source`` and the offending field."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a hardware profile must be a mapping of fields")
    data = {k: v for k, v in data.items() if k != "source_file"}
    values: dict[str, Any] = {}
    for f in profile_fields():
        value = data.get(f.name)
        if value is None:
            if is_required(f):
                raise ProfileError(f"{source}: missing required field '{f.name}'")
            continue  # the default
        t = field_type(f)
        _check_type(source, f.name, value, _accepted(t))
        _check_rule(source, f, value)
        values[f.name] = _convert(source, f.name, t, value)
    known = {f.name for f in profile_fields()}
    extra = {k: v for k, v in data.items() if k not in known}
    return HardwareProfile(**values, source_file=source, extra=extra)


def profile_dirs() -> list[Path]:
    """Folders searched for ``*.yaml`` profiles: built-ins, then ``NAS_HARDWARE_PROFILES``."""
    dirs = [BUILTIN_DIR]
    for part in os.environ.get("NAS_HARDWARE_PROFILES", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()))
    return dirs


def profile_files() -> dict[str, list[Path]]:
    """Profile name (file stem) -> every file of that name, in folder order (built-ins
    first). Nothing is read: a file is opened only when its profile is selected. A folder
    listed twice counts once."""
    found: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    for d in profile_dirs():
        key = d.resolve()
        if key in seen or not d.is_dir():
            continue
        seen.add(key)
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, []).append(path)
    return dict(sorted(found.items()))


def available_profiles() -> dict[str, Path]:
    """Profile name (file stem) -> its file (the first one found; `profile_path` refuses a
    name that more than one folder defines). Nothing is read."""
    return {name: paths[0] for name, paths in profile_files().items()}


def profile_path(name: str) -> Path:
    """The one file of profile ``name``; an unknown name, or one that two folders define
    (a user file named like a built-in), fails with one line naming the files."""
    files = profile_files()
    if name not in files:
        raise ProfileError(
            f"unknown hardware profile '{name}'; available: {', '.join(files) or '(none found)'}"
        )
    paths = files[name]
    if len(paths) > 1:
        raise ProfileError(
            f"hardware profile '{name}' is defined by more than one file: "
            f"{', '.join(map(str, paths))}; profile names must be unique: rename the file you "
            "added (and its 'name:' field)"
        )
    return paths[0]


class _Refused(Exception):
    """A profile file the loader will not expand; the message names why."""


class _ProfileLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases (no alias bombs: each value is
    written once) and nesting deeper than `MAX_PROFILE_DEPTH`."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise _Refused(
                f"YAML anchors and aliases (&{event.anchor}, *{event.anchor}) are not allowed "
                f"in a hardware profile (line {event.start_mark.line + 1}); write the values out"
            )
        self.depth += 1
        try:
            if self.depth > MAX_PROFILE_DEPTH:
                raise _Refused(
                    f"nested deeper than {MAX_PROFILE_DEPTH} levels "
                    f"(line {event.start_mark.line + 1})"
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, if it is a regular file (symlinks followed) of at most
    `MAX_PROFILE_BYTES`; FIFOs, devices and directories are refused without reading."""
    try:
        kind = _file_kind(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                kind = _file_kind(os.fstat(f.fileno()).st_mode)  # replaced since the stat?
                data = f.read(MAX_PROFILE_BYTES + 1) if kind is None else b""
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read hardware profile ({exc.strerror})") from None
    if kind is not None:
        raise ProfileError(f"{path}: is {kind}, not a regular file; a profile is a YAML file")
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(
            f"{path}: larger than {MAX_PROFILE_BYTES} bytes, the limit for a hardware profile"
        )
    return data


def _file_kind(mode: int) -> str | None:
    """None for a regular file, else what the file is (for the error message)."""
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def read_profile_file(path: Path) -> dict[str, Any]:
    """Parse a profile file into a mapping (not yet validated); errors name the file.

    Bounded whatever the file holds: at most `MAX_PROFILE_BYTES` are read, only from a
    regular file, and anchors and aliases are refused, so nothing expands.
    """
    try:
        data = yaml.load(_read_bytes(path).decode("utf-8"), Loader=_ProfileLoader)  # noqa: S506
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except _Refused as exc:
        raise ProfileError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}: not valid YAML{at}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise ProfileError(f"{path}: not a valid value ({exc})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a hardware profile must be a mapping of fields")
    return data


def read_named_profile(name: str) -> tuple[Path, dict[str, Any], HardwareProfile]:
    """Profile ``name``: its file, the file's mapping and the validated profile. The
    file's stem is the profile's name, so its ``name:`` field must be the same."""
    path = profile_path(name)
    data = read_profile_file(path)
    profile = profile_from_mapping(data, str(path))
    if profile.name != path.stem:
        raise ProfileError(
            f"{path}: field 'name' is '{profile.name}' but the file is '{path.name}'; a "
            f"profile's name must be its file's name: set name: {path.stem} or rename the file"
        )
    return path, data, profile


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load and validate a profile by name (``cortex_m4``) or by path to a YAML file.

    By name, the file comes from `profile_dirs` and its ``name:`` must be its stem; a path
    is read as given."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        return read_named_profile(str(name_or_path))[2]
    return profile_from_mapping(read_profile_file(path), str(path))
