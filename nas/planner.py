"""TensorFlow Lite Micro's arena planning, re-implemented from its rules.

Sources are files of the TFLM repository (github.com/tensorflow/tflite-micro, under
``tensorflow/lite/micro/``), read, not copied:

- Lifetimes follow ``micro_allocation_info.cc``: graph inputs are created at scope 0, op
  ``i`` is scope ``i + 1`` (its outputs are created there, and it is the last use of its
  inputs and outputs so far), graph outputs live to the end, scratch buffers live for
  their op only.
- Placement follows ``memory_planner/greedy_memory_planner.cc``: buffers sorted largest
  first (equal sizes: higher index first), each put into the first gap, in offset order,
  among the buffers whose lifetimes overlap (touching lifetimes overlap), else after the
  last. Every buffer is rounded up to 16 bytes (``micro_arena_constants.h``).
- The arena is one block (``arena_allocator/single_arena_buffer_allocator.cc``): the
  planned buffers (the *head*) and temporary allocations grow up from its 16-byte-aligned
  start, persistent allocations (the *tail*) grow down from its end, each one placed at
  the next lower multiple of its alignment. `tail_start` and `head_end` replay such
  sequences; `nas.cost.tflm_arena` says which allocations TFLM makes, in which order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an annotation only: importing the planner needs no torch
    from nas.graph import Graph

ALIGN = 16


#: One arena allocation: (bytes, alignment).
Alloc = tuple[int, int]


def align(n: int, to: int = ALIGN) -> int:
    """``n`` rounded up to a multiple of ``to``."""
    return (n + to - 1) // to * to


def tail_start(allocs: Sequence[Alloc], floor: int) -> int:
    """The smallest arena end (bytes from the arena's start) from which the persistent
    allocations ``allocs``, made in this order downwards, each at the next lower multiple
    of its alignment, all stay at or above ``floor``.

    Placing ``n`` bytes below ``p`` gives ``align_down(p - n, a)``, which is at least ``q``
    exactly when ``p >= align(q, a) + n``: replayed from the last allocation back to the
    first, that bound is exact, not an estimate.
    """
    end = floor
    for nbytes, alignment in reversed(allocs):
        end = align(end, alignment) + nbytes
    return end


def head_end(allocs: Sequence[Alloc], start: int) -> int:
    """Where the temporary allocations ``allocs``, made upwards from ``start`` in this
    order, each at the next multiple of its alignment, end."""
    end = start
    for nbytes, alignment in allocs:
        end = align(end, alignment) + nbytes
    return end


@dataclass(frozen=True)
class Buffer:
    """A planned buffer: tensor id (or -1 for scratch), bytes, first and last scope."""

    index: int
    tensor: int
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class Plan:
    buffers: list[Buffer]
    offsets: list[int]
    head_bytes: int

    def live_bytes(self, scope: int) -> int:
        """Sum of aligned buffer sizes live at a scope (a lower bound on the head)."""
        return sum(b.size for b in self.buffers if b.first <= scope <= b.last)


def lifetimes(graph: Graph, scratch: list[int] | None = None) -> list[Buffer]:
    """Buffers of every activation tensor (+ optional per-op scratch bytes) with lifetimes."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in graph.inputs:
        first[t] = 0
        last[t] = 0
    for i, op in enumerate(graph.ops):
        scope = i + 1
        for t in op.outputs:
            first.setdefault(t, scope)
        for t in (*op.inputs, *op.outputs):
            last[t] = max(last.get(t, scope), scope)
    end = len(graph.ops)
    for t in graph.outputs:
        last[t] = max(last.get(t, end), end)
    buffers: list[Buffer] = []
    for tid in sorted(first):
        size = align(graph.tensors[tid].elements)  # int8: one byte per element
        buffers.append(Buffer(len(buffers), tid, size, first[tid], last[tid]))
    for i, nbytes in enumerate(scratch or []):
        if nbytes > 0:
            buffers.append(Buffer(len(buffers), -1, align(nbytes), i + 1, i + 1))
    return buffers


def plan(buffers: list[Buffer]) -> Plan:
    """Greedy first-fit placement, largest first; returns offsets and the head size."""
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, -buffers[i].index))
    offsets = [0] * len(buffers)
    placed: list[int] = []
    for i in order:
        b = buffers[i]
        overlapping = sorted(
            (j for j in placed if buffers[j].first <= b.last and b.first <= buffers[j].last),
            key=lambda j: offsets[j],
        )
        candidate = 0
        for j in overlapping:
            if offsets[j] >= candidate + b.size:
                break
            candidate = max(candidate, offsets[j] + buffers[j].size)
        offsets[i] = candidate
        placed.append(i)
    head = max((offsets[i] + b.size for i, b in enumerate(buffers)), default=0)
    return Plan(buffers, offsets, head)
