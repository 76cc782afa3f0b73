"""Running a ``.tflite`` model in the TensorFlow Lite Micro Python interpreter."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

import numpy as np

from nas.errors import TrialError

# Measured with tflite-micro 0.dev20261023: a 256 B arena crashes the interpreter (SIGSEGV)
# instead of raising; from 1,024 B a too-small arena raises RuntimeError. Never go below:
MIN_ARENA_BYTES = 4096
_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes .*?for (\d+) ")


@dataclass(frozen=True)
class ArenaUsage:
    """What TFLM's RecordingMicroAllocator reports after allocation."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    categories: dict[str, tuple[int, int]]  # name -> (bytes, allocations)


def _capture_fd2(fn) -> str:
    """Run ``fn`` with the C-level stderr redirected; return what it wrote."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def load(model: bytes, arena_size: int):
    """A TFLM interpreter for ``model``; grows the arena until allocation succeeds."""
    from tflite_micro import runtime

    size = max(arena_size, MIN_ARENA_BYTES)
    for _ in range(8):
        try:
            return runtime.Interpreter.from_bytes(model, arena_size=size)
        except RuntimeError as exc:
            last = exc
            size *= 2
    raise TrialError(f"TFLite Micro could not allocate the model: {last}")


def arena_usage(interpreter) -> ArenaUsage:
    text = _capture_fd2(interpreter.print_allocations)
    found = {k: int(v) for k, v in _LINE.findall(text)}
    if set(found) != {"total", "head", "tail"}:
        raise TrialError(f"unexpected TFLite Micro allocation report: {text[:200]!r}")
    cats = {name: (int(b), int(n)) for name, b, n in _CATEGORY.findall(text)}
    return ArenaUsage(found["total"], found["head"], found["tail"], cats)


def invoke_all(interpreter, x_q: np.ndarray) -> np.ndarray:
    """Outputs for each int8 NHWC sample, one ``invoke`` per sample (batch 1)."""
    outs = []
    for k in range(len(x_q)):
        interpreter.set_input(np.ascontiguousarray(x_q[k : k + 1]), 0)
        interpreter.invoke()
        outs.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(outs)
