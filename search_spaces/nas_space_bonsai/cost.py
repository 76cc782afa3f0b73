"""Static cost of an int8 Bonsai model on a chip, from its shape alone.

Training keeps exactly ``BonsaiShape.nnz(group)`` entries per matrix, so every size below
is known before training and holds for the trained model.

Flash (``model_bytes``), each matrix stored in the cheaper of two int8 layouts:

- dense: ``rows * cols`` bytes;
- sparse: per stored entry one value byte and one index byte, plus one count byte per
  line. ``Z`` is stored by input feature (lines = features, index = row of the projection),
  so the projection can be accumulated while the input streams in; ``W_k``, ``V_k`` and
  ``theta_k`` by row (lines = rows, index = column). One-byte indices and counts need
  ``proj_dim <= 255`` and at most 255 scores, which the space enforces.

plus the int32 projection bias (4 B per row), a fixed-point multiplier (int32 + int8
shift, 5 B) for ``Z`` and for each ``W_k`` and ``V_k``, and the 256-entry int8 tanh table.

SRAM (``arena_bytes``): int32 projection accumulators (the int8 ``z`` is written over
them), int32 class scores, and the input: one feature at a time when ``stream_input``
(the projection reads each feature once), else the whole int8 input.

MACs and latency follow the worst-case path (every path has the same cost, since every
matrix holds the same number of entries): the projection, ``W_k``, ``V_k`` and the
``u * tanh`` products at ``depth + 1`` nodes, ``theta_k`` at ``depth`` nodes. Sparse
``W``, ``V``, ``theta`` use the profile's ``sparse_fully_connected`` entry, dense ones
``fully_connected``; the projection, accumulated column by column while the input
streams, ``projection`` or ``sparse_projection``; the table look-up and product ``tanh``;
and reading the input once, feature by feature, ``stream_input`` (its ``outputs`` are
the input features).
"""

from __future__ import annotations

from typing import Any

from nas.cost import Cost
from nas.hardware import HardwareProfile

from .model import BonsaiShape

INDEX_BYTES = 1
COUNT_BYTES = 1
MULTIPLIER_BYTES = 5  # int32 Q31 multiplier + int8 shift
BIAS_BYTES = 4
TANH_TABLE_BYTES = 256
OP_KINDS = (
    "fully_connected",
    "sparse_fully_connected",
    "tanh",
    "stream_input",
    "projection",
    "sparse_projection",
)


def cheaper_layout(nnz: int, lines: int, width: int) -> tuple[str, int]:
    """(``dense`` or ``sparse``, bytes) of an int8 matrix of ``lines`` x ``width`` that
    keeps ``nnz`` entries, in whichever layout is smaller."""
    dense = lines * width
    sparse = nnz * (1 + INDEX_BYTES) + lines * COUNT_BYTES
    return ("sparse", sparse) if sparse < dense else ("dense", dense)


def matrix_layout(shape: BonsaiShape, group: str) -> tuple[str, int]:
    """(``dense`` or ``sparse``, bytes) of one matrix of ``group``."""
    rows, cols = shape.matrix_shape(group)
    lines, width = (cols, rows) if group == "Z" else (rows, cols)
    return cheaper_layout(shape.nnz(group), lines, width)


def model_bytes(shape: BonsaiShape) -> int:
    total = TANH_TABLE_BYTES + BIAS_BYTES * shape.proj_dim + MULTIPLIER_BYTES
    for group in ("Z", "W", "V", "theta"):
        total += shape.matrices(group) * matrix_layout(shape, group)[1]
    return total + 2 * MULTIPLIER_BYTES * shape.nodes


def arena_bytes(shape: BonsaiShape, stream_input: bool) -> int:
    inputs = 1 if stream_input else shape.in_features
    return 4 * shape.proj_dim + 4 * shape.num_scores + inputs


def ops(shape: BonsaiShape) -> list[dict[str, Any]]:
    """The operations on the worst-case path: kind, MACs and outputs each."""

    def matmul(group: str, name: str) -> dict[str, Any]:
        layout, _ = matrix_layout(shape, group)
        rows, cols = shape.matrix_shape(group)
        macs = shape.nnz(group) if layout == "sparse" else rows * cols
        # Z's loop runs over input features (column by column), the others row by row
        kind = "projection" if group == "Z" else "fully_connected"
        kind = f"sparse_{kind}" if layout == "sparse" else kind
        return {"op": name, "kind": kind, "macs": macs, "outputs": rows}

    # reading each input feature once (and, sparse, its column's count) costs per feature,
    # whatever Z holds: "outputs" are the features here
    out = [
        {"op": "input", "kind": "stream_input", "macs": 0, "outputs": shape.in_features},
        matmul("Z", "project"),
    ]
    for level in range(shape.depth + 1):
        out += [matmul("W", f"level{level}.W"), matmul("V", f"level{level}.V")]
        out.append(
            {
                "op": f"level{level}.tanh",
                "kind": "tanh",
                "macs": shape.num_scores,
                "outputs": shape.num_scores,
            }
        )
        if level < shape.depth:
            out.append(matmul("theta", f"level{level}.theta"))
    return out


def stored_params(shape: BonsaiShape) -> int:
    """Parameters the chip stores: non-zeros of every matrix plus the bias."""
    total = shape.proj_dim
    for group in ("Z", "W", "V", "theta"):
        total += shape.matrices(group) * shape.nnz(group)
    return total


def per_op(shape: BonsaiShape, hw: HardwareProfile, stream_input: bool) -> list[dict[str, Any]]:
    """`ops` with each op's ``latency_ms`` from the profile's table, and the SRAM in use
    while it runs (the whole arena: it is small and live throughout)."""
    live = arena_bytes(shape, stream_input)
    rows = ops(shape)
    for r in rows:
        cycles = hw.latency_entry(r["kind"]).cycles(r["macs"], r["outputs"])
        r.update(latency_ms=hw.instructions_to_ms(cycles), live_bytes=live, scratch_bytes=0)
    return rows


def estimate(shape: BonsaiShape, hw: HardwareProfile, stream_input: bool = True) -> Cost:
    """Flash, SRAM, MACs, latency and energy of the int8 model on ``hw``."""
    rows = per_op(shape, hw, stream_input)
    latency = sum(r["latency_ms"] for r in rows)
    mbytes, arena = model_bytes(shape), arena_bytes(shape, stream_input)
    return Cost(
        flash_bytes=mbytes + hw.runtime_flash_bytes,
        sram_bytes=arena + hw.runtime_ram_bytes,
        model_bytes=mbytes,
        arena_bytes=arena,
        arena_head_bytes=arena,
        arena_tail_bytes=0,
        macs=sum(r["macs"] for r in rows),
        params=stored_params(shape),
        latency_ms=latency,
        energy_uj=latency * hw.active_power_mw,
    )
