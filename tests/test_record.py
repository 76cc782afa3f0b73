"""The trial record: one table of names, and the core columns no plugin may return."""

from __future__ import annotations

import pytest

from nas import record, report
from nas.cost import Cost
from nas.errors import TrialError

#: Every metric the built-in backends and compression methods (and the example plugin)
#: return today: none may be reserved, or their trials would fail.
BUILTIN_METRICS = [
    # backends: tflm, estimate, c_sim
    "acc_int8",
    "acc_int8_test",
    "acc_int8_tflm",
    "tflm_ref_identical",
    "tflm_ref_max_diff",
    "arena_bytes_measured",
    "arena_bytes_allocated",
    "arena_head_bytes_measured",
    "arena_tail_bytes_measured",
    "arena_bytes_estimated",
    "model_bytes",
    "model_bytes_estimated",
    "bit_exact",
    "bit_exact_fraction",
    "arm_bit_exact",
    "avr_bit_exact",
    "instructions_measured",
    "instructions_per_mac",
    "cycles_measured",
    "latency_ms_measured",
    "flash_bytes_measured",
    "ram_bytes_measured",
    "stack_bytes_measured",
    # compression methods: huffman, prune, distill, qat; the example plugin
    "huffman_payload_bytes",
    "huffman_table_bytes",
    "huffman_bits_per_weight",
    "flash_bytes_huffman",
    "huffman_decode_bits",
    "huffman_decode_symbols",
    "prune_channels_removed",
    "prune_macs_before",
    "prune_macs_after",
    "prune_params_before",
    "prune_params_after",
    "distill_teacher",
    "distill_teacher_acc",
    "distill_acc_before",
    "distill_acc_after",
    "qat_acc_int8_ptq",
    "qat_acc_int8",
    "clip_weights_clipped",
]


def test_builtin_plugin_metrics_are_not_core_columns():
    assert record.core_columns_in(BUILTIN_METRICS) == list(record.MEASURED_BY_BACKEND)
    record.check_plugin_metrics("backend 'tflm'", BUILTIN_METRICS, record.MEASURED_BY_BACKEND)


def test_only_a_backend_may_replace_a_cost_figure_with_its_measurement():
    with pytest.raises(TrialError, match="compression method 'x' returned core column"):
        record.check_plugin_metrics("compression method 'x'", {"model_bytes": 1})


@pytest.mark.parametrize(
    "name",
    [
        "flash_bytes",
        "latency_ms_uncompressed",
        "model_bytes_uncompressed",
        "feasible",
        "feasible_sram",
        "arch_s1_width",
        "acc_float",
        "acc_float_test",
        "train_s",
        "duplicate_of",
        "reason",
        "pareto_all",
        "hw",
    ],
)
def test_core_columns(name):
    assert record.is_core_column(name)


def test_every_cost_figure_and_core_column_of_the_csv_is_reserved():
    """The static cost (and its ``_uncompressed`` twin) and every column of ``trials.csv``
    that the core writes; the backend's own figures stay free."""
    backend_figures = {record.ACC_INT8, record.ACC_INT8_TEST}
    for name in Cost.__dataclass_fields__:
        assert record.is_core_column(name) == (name not in backend_figures)
        assert record.is_core_column(name + record.UNCOMPRESSED_SUFFIX)
    for name in report.FIRST_COLUMNS:
        assert record.is_core_column(name) == (name not in backend_figures), name


def test_the_error_names_the_plugin_and_every_key():
    record.check_plugin_metrics("backend 'x'", {"acc_int8": 1.0, "cycles": 3})
    with pytest.raises(TrialError) as err:
        record.check_plugin_metrics("backend 'x'", {"acc_int8": 1.0, "sram_bytes": 3, "macs": 1})
    assert str(err.value) == (
        "backend 'x' returned core columns 'sram_bytes', 'macs'; "
        "plugins may not overwrite core columns"
    )
