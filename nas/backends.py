"""Backends: score a quantized candidate the way the chip runs it.

A backend has a unique ``name`` and a ``Config`` dataclass; ``score`` returns a flat dict
of metrics with names carrying units. ``acc_int8`` (validation accuracy of the int8
model, the search objective) and ``acc_int8_test`` are required; a backend may add
measured figures (``arena_bytes_measured``, ``latency_ms_measured``...).

Models as C. A backend that compiles models (``c_sim``) generates C itself for the core
int8 model, `nas.int8.QGraph`; any other int8 model kind brings its own C by
implementing `CExportable`: ``to_c()`` returns a `CSource`, ``c_inputs`` turns float
images into the int8 bytes the C reads, ``c_outputs`` computes the bytes the C must
write. The contract of the C itself is in `CSource`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from nas.compression import Candidate
from nas.cost import Cost
from nas.hardware import HardwareProfile

REQUIRED_METRICS = ("acc_int8", "acc_int8_test")


@dataclass
class BackendConfig:
    """Options every backend has."""


class BaseBackend(ABC):
    """A target runtime selectable with ``backend=<name>``."""

    name: ClassVar[str]
    Config: ClassVar[type] = BackendConfig

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        """Metrics of the quantized ``candidate`` (``candidate.qgraph`` is set). Files to
        keep with the trial go into ``candidate.artifacts``."""

    def check(self, hw: HardwareProfile) -> None:  # noqa: B027 - optional hook
        """Raise `nas.errors.ConfigError` before the search starts when this backend cannot
        run on ``hw`` here (a missing compiler or simulator, an unsupported core)."""

    def deploy(self, best_dir: Path) -> None:  # noqa: B027 - optional hook
        """Add what a firmware needs to the best trial's folder (default: nothing)."""


# --------------------------------------------------------------------------- models as C

#: Harnesses a generated model can run in: ``host`` (the build machine's C compiler;
#: every model), ``arm`` (Cortex-M firmware: the input is in RAM) and ``avr`` (ATmega
#: firmware: the input pointer is in flash, read byte by byte through ``NAS_RD8``).
C_TARGETS = ("host", "arm", "avr")


@dataclass(frozen=True)
class CSource:
    """One int8 model as C99, and what a harness needs to build, run and check it.

    The C contract: ``source`` is the translation unit ``nas_model.c``. It includes
    ``"nas_model.h"``, which the backend writes (``<stdint.h>``, ``NAS_INPUT_BYTES``,
    ``NAS_OUTPUT_BYTES``, ``NAS_ARENA_BYTES`` and the prototype), and defines::

        void nas_model_run(const int8_t *input, int8_t *output);

    which reads ``input_bytes`` int8 bytes and writes ``output_bytes`` bytes. It may
    include ``headers`` (written next to it) and the runtime headers `nas.codegen.write`
    adds: ``nas_kernels.h`` (TFLite-exact requantization ``nas_requant``,
    ``nas_clamp``, the int8 kernels, and ``NAS_MARK(i)``, a profiling mark) and
    ``nas_rom.h`` (``NAS_ROM`` puts a constant in flash, ``NAS_RD8`` / ``NAS_RD32`` read
    one, on AVR through ``pgm_read_*``). The code must compile warning-free under
    ``gcc -std=c99 -Wall -Wextra -Werror``.

    Attributes:
        source: the text of ``nas_model.c``.
        input_bytes: int8 bytes of one input.
        output_bytes: bytes of one output.
        arena_bytes: working memory the model plans for its activations.
        headers: extra files, file name -> text (not ``nas_model.h`` or a runtime header).
        output_dtype: how to read the output bytes (``"int8"``, or ``"<i4"`` for
            little-endian int32 scores); the predicted class is the argmax of the values,
            or the sign of a single value (binary task).
        targets: the harnesses the C runs in, from `C_TARGETS`.
        model_bytes: bytes of the model's constants (weights, tables) in flash.
        ops: the operations one inference runs, in order, as the cost model's latency table
            counts them: (table kind, executed MACs, outputs).
        marks: how many of ``ops`` run before each ``NAS_MARK`` in turn (sums to
            ``len(ops)``); a profiling build times each group (``calibrate`` fits the
            latency table from them). Empty: the C marks nothing.
        input_scale, input_zero_point: how a float input ``x`` (the [0, 1] images the
            model was trained on) becomes an input byte: ``clamp(round(x / input_scale) +
            input_zero_point, -128, 127)``.
        input_layout: the order of the input bytes, ``"HWC"`` (channels last, TFLite's)
            or ``"CHW"``.
    """

    source: str
    input_bytes: int
    output_bytes: int
    arena_bytes: int
    headers: Mapping[str, str] = field(default_factory=dict)
    output_dtype: str = "int8"
    targets: tuple[str, ...] = ("host",)
    model_bytes: int = 0
    ops: tuple[tuple[str, int, int], ...] = ()
    marks: tuple[int, ...] = ()
    input_scale: float = 1.0
    input_zero_point: int = 0
    input_layout: str = "HWC"

    def __post_init__(self) -> None:
        unknown = [t for t in self.targets if t not in C_TARGETS]
        if unknown:
            raise ValueError(f"CSource.targets: unknown '{unknown[0]}'; valid: {C_TARGETS}")
        if self.marks and sum(self.marks) != len(self.ops):
            raise ValueError(f"CSource.marks sum to {sum(self.marks)}, not {len(self.ops)}")


@runtime_checkable
class CExportable(Protocol):
    """An int8 model that a C backend can compile and run (see `CSource`)."""

    def to_c(self) -> CSource:
        """The model as C."""
        ...

    def c_inputs(self, x_nchw: np.ndarray) -> np.ndarray:
        """Float NCHW images -> int8 array (batch, ``input_bytes``): what the C reads."""
        ...

    def c_outputs(self, x_q: np.ndarray) -> np.ndarray:
        """The outputs the C must write for ``c_inputs``' result: (batch, values) in
        ``output_dtype``, compared value for value (``bit_exact``)."""
        ...


def c_array(ctype: str, name: str, values: Any, qualifier: str = "") -> str:
    """A ``static const`` C array definition (one zero when ``values`` is empty, since C99
    has no empty arrays); ``qualifier`` goes before the name (e.g. ``NAS_ROM``)."""
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    decl = " ".join(filter(None, ["static const", ctype, qualifier, name]))
    return f"{decl}[{max(len(flat), 1)}] = {{{', '.join(flat) or '0'}}};\n"
