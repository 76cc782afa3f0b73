"""``python -m nas calibrate +hw=cortex_m4`` (or ``+hw=arduino_uno``): fit a profile's latency
lookup table from simulator counts of the generated C.

The command is this plugin's (``nas_register_commands``). It asks search spaces, not a
list of names, which models to measure: ``space=NAME``, or by default the first
registered space (by name) that accepts backend ``c_sim`` and whose random int8 models'
C (`nas.backends.CSource`) runs in the simulator of the profile's core (Cortex-M4: QEMU,
``arm``; ATmega328P: simavr, ``avr``). With the built-in spaces: ``mobilenet`` on a
Cortex-M4, ``bonsai`` on the Uno.

1. Random int8 models (the space's `nas.spaces.BaseSearchSpace.random_model`: random
   weights in the state training leaves them) are generated as C and run in the
   simulator with profiling marks (`.sim`, ``profile=True``): every group of ops between
   two marks (`nas.backends.CSource.marks`; one op each for layer graphs, a tree level
   for Bonsai) is one sample of (ops, measured count). MobileNet-like candidates cover
   kernels 3-7, strides 1-2, 1 to 288 channels and 2x2 to 16x16 maps.
2. ``count = a * executed MACs + b * outputs + c`` per op kind, by non-negative least
   squares (`fit`).
3. Other random models (``check``, 50 by default) are run whole; the table's prediction
   is compared with the simulated count.

Written to the output folder: ``<hw>_c.yaml``, the profile of the same board running the
generated C (``runtime: c``, the fitted table, the measured code and stack overheads as
``runtime_flash_bytes`` / ``runtime_ram_bytes``, and a ``calibration`` block with the
tools, date, command and fit error), and ``calibration.md`` with the error distribution.
QEMU counts instructions; ``cycles_per_instruction`` (kept from the source profile, with
its source) converts them to cycles. simavr counts cycles.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import yaml
from scipy.optimize import nnls

from nas import codegen
from nas.backends import CSource
from nas.codegen import as_c
from nas.data import calibration_batch
from nas.errors import ConfigError
from nas.hardware import HardwareProfile, LatencyEntry, load_profile
from nas.int8 import quantize
from nas.plugin_manager import get_plugin_manager

from . import AVR_CORES, QEMU_CORES, sim, sim_target

USAGE = """usage: python -m nas calibrate +hw=NAME [space=NAME] [fit=60] [check=50] [seed=0]
                                  [max_macs=3000000] [out=outputs/calibrate_NAME]

Fit a hardware profile's latency lookup table from instruction (Cortex-M4, QEMU) or cycle
(ATmega328P, simavr) counts of the c_sim backend's generated C.

arguments:
  +hw=NAME        the profile to calibrate (python -m nas list profiles)
  space=NAME      the search space whose random models are measured (default: the
                  first whose C runs on the profile's simulator)
  fit=N           random models measured to fit the table (default 60)
  check=N         other random models the fitted table is checked on (default 50)
  seed=N          seed of the random models (default 0)
  max_macs=N      skip models with more MACs than this (default 3000000)
  out=DIR         where <profile>_c.yaml and calibration.md go
                  (default outputs/calibrate_<profile>)
  -h, --help      show this help and exit"""
DEFAULTS = {"fit": 60, "check": 50, "seed": 0, "max_macs": 3_000_000}
TEXT_OPTIONS = ("hw", "space", "out")


def parse_args(args: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = dict(DEFAULTS)
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep or key not in (*DEFAULTS, *TEXT_OPTIONS):
            raise ConfigError(
                f"calibrate: unknown argument '{arg}'; valid: +hw=NAME, space=NAME, "
                + ", ".join(f"{k}=N" for k in DEFAULTS)
                + ", out=DIR"
            )
        if key in DEFAULTS:
            try:
                opts[key] = int(value)
            except ValueError:
                raise ConfigError(f"calibrate: {key}={value!r} is not an integer") from None
        else:
            opts[key] = value
    if "hw" not in opts:
        raise ConfigError("calibrate: name the target, e.g. +hw=cortex_m4")
    if opts["fit"] < 1 or opts["check"] < 1:
        raise ConfigError("calibrate: fit and check must be at least 1")
    return opts


Ops = list[tuple[str, int, int]]  # (lut kind, executed MACs, outputs) per operation


@dataclass(frozen=True)
class RandomModel:
    """A random int8 model, its C, and what the static cost model says of it."""

    model: Any  # QGraph, or a space's own int8 model (nas.backends.CExportable)
    source: CSource

    @property
    def ops(self) -> Ops:
        return list(self.source.ops)

    @property
    def phases(self) -> list[Ops]:
        """The ops between the firmware's marks."""
        out, i = [], 0
        for n in self.source.marks:
            out.append(self.ops[i : i + n])
            i += n
        return out


def random_models(
    space_name: str, seed: int, max_macs: int, hw: HardwareProfile
) -> Iterator[RandomModel]:
    """Endless random int8 models of a space with at most ``max_macs`` MACs on ``hw``."""
    space = get_plugin_manager().get("search_space", space_name)()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    rng = np.random.default_rng(seed)
    while True:
        spec = space.sample(sampler.ask())
        torch.manual_seed(int(rng.integers(2**31)))
        module = space.random_model(spec, 1, 10)
        size = space.resolution(spec)
        x = rng.random((32, 1, size, size)).astype(np.float32)
        graph = space.trace(module, (1, 1, size, size), "calibrate")
        if space.cost(module, graph, hw).macs > max_macs:
            continue
        if graph is not None:
            model = quantize(graph, calibration_batch(x, 32, 0))
        else:  # a space whose models are not layer graphs quantizes its own (nas.spaces)
            model = module.quantize_int8(x)
        yield RandomModel(model, as_c(model).to_c())


def pick_space(hw: HardwareProfile, target: str) -> str:
    """The first space (by name) for backend c_sim whose C runs in ``target``, passing
    over spaces of several model kinds (`nas.spaces.BaseSearchSpace.mixed`)."""
    for name, cls in get_plugin_manager().registry("search_space").items():
        if cls.mixed or (cls.backends is not None and "c_sim" not in cls.backends):
            continue
        try:
            first = next(random_models(name, 0, sys.maxsize, hw))
        except ConfigError:
            continue  # its models have no C, or the profile lacks its table entries
        if target in first.source.targets and first.source.marks:
            return name
    raise ConfigError(f"calibrate: no search space generates C that runs on {hw.name}")


def simulate(model: RandomModel, core: str, profile: bool = False) -> sim.SimResult:
    """One inference of ``model`` in the simulator of ``core`` (zero input)."""
    source = model.source
    x_q = np.zeros((1, source.input_bytes), dtype=np.int8)
    with tempfile.TemporaryDirectory(prefix="nas_calibrate_") as tmp:
        codegen.write(source, Path(tmp))
        if core in AVR_CORES:
            return sim.run_avr(Path(tmp), x_q, source.output_bytes, AVR_CORES[core], profile)
        return sim.run_arm(Path(tmp), x_q, source.output_bytes, QEMU_CORES[core], profile)


def fit(samples: list[tuple[Ops, float]]) -> dict[str, LatencyEntry]:
    """Non-negative ``a * MACs + b * outputs + c`` per op kind, from samples of (ops,
    measured count): single ops when the simulator times each op, whole models otherwise.
    Least squares weighted by ``1 / sqrt(count)``, between absolute error (big ops
    dominate) and relative error (small ones do)."""
    kinds = sorted({k for ops, _ in samples for k, _, _ in ops})
    col = {k: 3 * i for i, k in enumerate(kinds)}
    a = np.zeros((len(samples), 3 * len(kinds)))
    y = np.array([max(m, 1.0) for _, m in samples])
    for row, (ops, _) in enumerate(samples):
        for kind, macs, outputs in ops:
            a[row, col[kind] : col[kind] + 3] += (macs, outputs, 1.0)
    w = 1.0 / np.sqrt(y)
    coef, _ = nnls(a * w[:, None], y * w)
    return {k: LatencyEntry(*(float(v) for v in coef[col[k] : col[k] + 3])) for k in kinds}


def predict(ops: Ops, table: dict[str, LatencyEntry]) -> float:
    """The count the table predicts, the way `nas.cost.op_latency_ms` reads it."""
    return sum(table[kind].cycles(macs, outputs) for kind, macs, outputs in ops)


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return "not found"
    return out.splitlines()[0].strip() if out else "unknown"


def run(opts: dict[str, Any]) -> Path:
    hw = load_profile(opts["hw"])
    target = sim_target(hw)
    if target == "arm":
        tools, packages, unit = sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES, "instructions"
    elif target == "avr":
        tools, packages, unit = sim.AVR_TOOLS, sim.AVR_TOOLS_PACKAGES, "cycles"
    else:
        raise ConfigError(
            f"calibrate: profile '{hw.name}' has core '{hw.core}'; the simulators here run "
            f"{', '.join(sorted({**QEMU_CORES, **AVR_CORES}))}"
        )
    if sim.missing(tools):
        raise ConfigError(
            f"calibrate: missing {', '.join(sim.missing(tools))}; apt-get install {packages}"
        )
    space = opts.get("space") or pick_space(hw, target)
    models = random_models(space, opts["seed"], opts["max_macs"], hw)
    first = next(models)
    if target not in first.source.targets or not first.source.marks:
        raise ConfigError(
            f"calibrate: the C of search space '{space}' does not run on {hw.name} "
            f"(harnesses: {', '.join(first.source.targets)}) or has no profiling marks"
        )
    out = Path(opts.get("out") or f"outputs/calibrate_{hw.name}")
    out.mkdir(parents=True, exist_ok=True)
    total = opts["fit"] + opts["check"]
    samples: list[tuple[Ops, float]] = []
    for k in range(opts["fit"]):
        m = first if k == 0 else next(models)
        # one sample per group of ops the firmware marks: each op of a graph, each level
        # of a tree
        samples += zip(m.phases, simulate(m, hw.core, profile=True).op_counts[0], strict=True)
        print(f"\rcalibrate {hw.name}: {k + 1}/{total} models", end="", flush=True)
    table = fit(samples)
    checks: list[tuple[int, float, int]] = []
    flash_extra, ram_extra = 0, 0
    for k in range(opts["fit"], total):
        m = next(models)
        result = simulate(m, hw.core)
        # what the firmware needs beyond the model's constants and planned activations
        flash_extra = max(flash_extra, result.flash_bytes - m.source.model_bytes)
        ram_extra = max(ram_extra, result.ram_bytes - m.source.arena_bytes)
        checks.append((sum(n for _, n, _ in m.ops), predict(m.ops, table), result.counts[0]))
        print(f"\rcalibrate {hw.name}: {k + 1}/{total} models", end="", flush=True)
    print()
    errors = np.array([(p - m) / m for _, p, m in checks])
    stats = {
        "median_abs_error": float(np.median(np.abs(errors))),
        "p90_abs_error": float(np.percentile(np.abs(errors), 90)),
        "max_abs_error": float(np.abs(errors).max()),
        "within_10_percent": f"{int((np.abs(errors) <= 0.10).sum())}/{len(errors)}",
    }
    command = "python -m nas calibrate " + " ".join(sys.argv[2:])
    if unit == "instructions":
        simulator = _version(["qemu-system-arm", "--version"]) + " -M mps2-an386 -icount 0"
        compiler = _version(["arm-none-eabi-gcc", "--version"]) + " -O2"
    else:
        simulator = "simavr (Debian package simavr), Timer1 at the CPU clock"
        compiler = _version(["avr-gcc", "--version"]) + " -Os"
    provenance = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "unit": unit,
        "simulator": simulator,
        "compiler": compiler,
        "space": space,
        "fit_models": opts["fit"],
        "fit_samples": len(samples),
        "check_models": len(checks),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()},
        "runtime_flash_bytes": int(flash_extra),
        "runtime_ram_bytes": int(ram_extra),
    }
    write_profile(hw, table, provenance, out / f"{hw.name}_c.yaml")
    write_report(hw.name, table, samples, checks, provenance, out / "calibration.md")
    return out


def write_profile(hw, table, provenance: dict[str, Any], path: Path) -> None:
    data = yaml.safe_load(Path(hw.source_file).read_text())
    lut = dict(data.get("latency_lut", {}))
    for kind, e in table.items():
        lut[kind] = {
            "cycles_per_mac": round(e.cycles_per_mac, 4),
            "cycles_per_output": round(e.cycles_per_output, 3),
            "cycles_per_op": round(e.cycles_per_op, 1),
        }
    data.update(
        name=f"{hw.name}_c",
        runtime="c",
        kernels="reference",
        runtime_flash_bytes=provenance["runtime_flash_bytes"],
        runtime_ram_bytes=provenance["runtime_ram_bytes"],
        latency_lut=lut,
        calibration=provenance,
        notes=(
            f"The board running the c_sim backend's generated C (no interpreter): the table "
            f"entries of the op kinds in calibration.space were fitted on {provenance['unit']} "
            "counted in the simulator; the others are kept from the source profile. "
            + (
                "QEMU counts instructions, so with cycles_per_instruction 1.0 latency is a "
                "lower bound (no pipeline stalls or flash wait states)."
                if provenance["unit"] == "instructions"
                else "simavr counts cycles."
            )
        ),
    )
    sources = dict(data.get("sources", {}))
    sources["latency_lut"] = (
        "instructions of the c_sim backend's generated C, fitted in QEMU "
        f"({provenance['command']}, {provenance['date']}); entries not produced by the C "
        "backend are kept from the source profile"
    )
    sources["runtime_flash_bytes"] = (
        "largest flash of the simulated firmware beyond the model's constants over the check "
        "models (kernels, C runtime, test harness)"
    )
    sources["runtime_ram_bytes"] = (
        "largest RAM of the simulated firmware beyond the planned arena over the check "
        "models (stack high-water mark, C runtime, harness)"
    )
    data["sources"] = sources
    header = (
        f"# {hw.board} running the c_sim backend's generated C; written by "
        f"`{provenance['command']}`.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=99))


def write_report(name, table, samples, checks, provenance, path: Path) -> None:
    lines = [f"# Latency table calibration: {name}", ""]
    lines += [f"- {k}: {v}" for k, v in provenance.items()]
    lines += [
        f"- machine: {platform.machine()}, Python {platform.python_version()}",
        "",
        f"## Fitted table ({provenance['unit']} = a x executed MACs + b x outputs + c)",
        "",
        "| op kind | ops fitted | a (per MAC) | b (per output) | c (per op) |",
        "|---|---|---|---|---|",
    ]
    for kind, e in table.items():
        n = sum(k == kind for ops, _ in samples for k, _, _ in ops)
        lines.append(
            f"| {kind} | {n} | {e.cycles_per_mac:.3f} | {e.cycles_per_output:.1f} | "
            f"{e.cycles_per_op:.0f} |"
        )
    errors = sorted((p - m) / m for _, p, m in checks)
    lines += [
        "",
        f"## Whole models: table vs simulator ({len(checks)} random models not used in the fit)",
        "",
        "| quantile | 0 | 10% | 25% | 50% | 75% | 90% | 100% |",
        "|---|---|---|---|---|---|---|---|",
        "| relative error | "
        + " | ".join(f"{q:+.2%}" for q in np.quantile(errors, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]))
        + " |",
        "",
        f"| executed MACs | predicted {provenance['unit']} | simulated | error |",
        "|---|---|---|---|",
    ]
    for macs, p, m in sorted(checks):
        lines.append(f"| {macs:,} | {p:,.0f} | {m:,} | {(p - m) / m:+.2%} |")
    path.write_text("\n".join(lines) + "\n")


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    out = run(parse_args(args))
    print(f"written: {out}/calibration.md and the fitted profile in {out}")
    return 0
