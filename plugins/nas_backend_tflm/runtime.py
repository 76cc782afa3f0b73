"""Running a ``.tflite`` model in the TensorFlow Lite Micro Python interpreter.

Two arena figures come out of it:

- `min_arena_bytes`: the smallest arena, exact to 1 byte, with which the flatbuffer loads,
  allocates and invokes, found by bisection (each try builds a fresh interpreter in a
  forked child process, a few milliseconds; started from the static estimate, two tries
  when that is exact). This is what a chip must provide: while ``AllocateTensors`` runs,
  TFLM needs temporary space on top of what stays allocated (the greedy memory planner's
  arrays and one ``AllocationInfo`` per tensor, or the tensors a kernel's Prepare builds;
  `nas.cost.tflm_arena` models both).
- `arena_usage`: what TFLM's RecordingMicroAllocator reports as allocated once allocation
  has finished (head + tail). It leaves that temporary space out, and its alignment
  padding depends on the arena size it was given.

Every try that may fail runs in a child process: with some arenas that are too small the
interpreter of the ``tflite-micro`` wheel (0.dev20261023) dies with SIGSEGV instead of
raising (below 512 B always; a 13,776 B model crashed at 8,300 B and raised at 9,000 B; a
3,456 B one crashed at the 2,368 B RecordingMicroAllocator reports for it). A crashed try
counts as "does not fit". The search assumes a larger arena never fails where a smaller
one runs; a scan of every 5th or 7th size below the smallest arena of two models found no
try that ran.
"""

from __future__ import annotations

import faulthandler
import os
import re
import resource
import signal
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nas.errors import TrialError

#: Where `load` starts looking for an arena that fits, and where the search gives up.
MIN_ARENA_BYTES = 4096
MAX_ARENA_BYTES = 1 << 30
#: How long one try in a child process may take before it is killed and counted as failed
#: (a try builds an interpreter and invokes it once: milliseconds for MCU-sized models).
CHILD_TIMEOUT_S = 60.0
_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes .*?for (\d+) ")


@dataclass(frozen=True)
class ArenaUsage:
    """What TFLM's RecordingMicroAllocator reports after allocation."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    categories: dict[str, tuple[int, int]]  # name -> (bytes, allocations)


def _capture_fd2(fn: Callable[[], object]) -> str:
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


def _zero_inputs(interpreter) -> None:
    """Fill every input tensor with zeros (what it holds does not change the arena)."""
    index = 0
    while True:
        try:
            detail = interpreter.get_input_details(index)
        except (IndexError, RuntimeError, ValueError):
            return
        interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
        index += 1


def _load_and_invoke(model: bytes, arena_size: int) -> None:
    """Build an interpreter in ``arena_size`` bytes and invoke it once on zeros (raises
    RuntimeError, or crashes, when the arena is too small)."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    _zero_inputs(interpreter)
    interpreter.invoke()


@dataclass(frozen=True)
class Attempt:
    """How a try in a child process went: ``ok``, else TFLM's last words on stderr."""

    ok: bool
    message: str = ""


def _in_child(fn: Callable[[], object]) -> Attempt:
    """Run ``fn`` in a forked child process: ``ok`` when it returns normally (an exception,
    a signal or any other exit is a failure); what the child wrote to stderr comes back."""
    from tflite_micro import runtime  # noqa: F401  (imported here, not in every child)

    with tempfile.TemporaryFile() as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
            pid = os.fork()
        if pid == 0:  # the child: never returns to the caller's code
            code = 1
            try:
                faulthandler.disable()  # a crash here is an answer, not a bug report
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # and no core dump
                os.dup2(err.fileno(), 2)
                fn()
                code = 0
            except BaseException as exc:  # noqa: BLE001 - its text is the answer
                os.write(2, "".join(traceback.format_exception_only(exc)).encode())
            finally:
                os._exit(code)
        status = _wait(pid, CHILD_TIMEOUT_S)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    if status is None:
        return Attempt(False, f"no answer within {CHILD_TIMEOUT_S:g} s (killed)")
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        lines.append(f"killed by signal {-code}")
    return Attempt(code == 0, lines[-1].strip() if lines else f"exit status {code}")


def _wait(pid: int, timeout_s: float) -> int | None:
    """The child's wait status, or None after killing it when it ran past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def try_arena(model: bytes, arena_size: int) -> Attempt:
    """Load ``model`` in an arena of ``arena_size`` bytes and invoke it once on zeros, in a
    child process (a crash is a failure, not the caller's end)."""
    if arena_size <= 0:
        return Attempt(False, "no arena")
    return _in_child(lambda: _load_and_invoke(model, arena_size))


def runs_in(model: bytes, arena_size: int) -> bool:
    """Whether ``model`` loads, allocates and invokes once in ``arena_size`` bytes."""
    return try_arena(model, arena_size).ok


def fitting_arena(model: bytes, arena_size: int) -> int:
    """``arena_size`` (at least `MIN_ARENA_BYTES`), doubled until the model runs in it."""
    size = max(arena_size, MIN_ARENA_BYTES)
    while not (attempt := try_arena(model, size)).ok:
        size *= 2
        if size > MAX_ARENA_BYTES:
            raise TrialError(f"TFLite Micro could not run the model: {attempt.message}")
    return size


def load(model: bytes, arena_size: int, known_to_fit: bool = False):
    """A TFLM interpreter for ``model``, with ``arena_size`` bytes of arena or, where that
    is too small, the first doubling of it (from `MIN_ARENA_BYTES`) that fits.
    ``known_to_fit``: ``arena_size`` already ran in a child (`min_arena_bytes`): no try."""
    from tflite_micro import runtime

    size = arena_size if known_to_fit else fitting_arena(model, arena_size)
    return runtime.Interpreter.from_bytes(model, arena_size=size)


def _bracket(model: bytes, guess: int) -> tuple[int, int]:
    """Sizes ``(lo, hi)`` with the model failing in ``lo`` bytes and running in ``hi``, found
    with steps of 1, 2, 4... bytes away from ``guess`` (two tries when it is exact)."""
    step = 1
    if runs_in(model, guess):
        hi = guess
        while hi - step > 0 and runs_in(model, hi - step):
            hi -= step
            step *= 2
        return max(hi - step, 0), hi
    lo = guess
    while not (attempt := try_arena(model, lo + step)).ok:
        lo += step
        step *= 2
        if step > MAX_ARENA_BYTES:
            raise TrialError(f"TFLite Micro could not run the model: {attempt.message}")
    return lo, lo + step


def min_arena_bytes(model: bytes, guess: int | None = None) -> int:
    """The smallest arena, in bytes and exact to 1 B, with which ``model`` loads, allocates
    and invokes. ``guess``: an estimate of it (`nas.cost.tflm_arena`); the closer, the
    fewer tries (each builds an interpreter in a child process, a few milliseconds).

    A larger arena never fails where a smaller one works (the interpreter's ``new[]`` is
    16-byte aligned; TFLM places the head upwards from its start and aligns tail
    allocations down from its end), so bisection finds the boundary.
    """
    lo, hi = _bracket(model, max(guess or MIN_ARENA_BYTES, 1))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if runs_in(model, mid):
            hi = mid
        else:
            lo = mid
    return hi


def arena_usage(interpreter) -> ArenaUsage:
    """RecordingMicroAllocator's figures once allocation has finished."""
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
