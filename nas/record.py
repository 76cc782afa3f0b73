"""The record of a trial: the name of everything a trial stores, in one place.

A trial's results are Optuna user attributes in the storage (the system of record);
`nas.report` turns each trial into one flat row of ``trials.csv``. `nas.search` writes the
attributes and `nas.report` reads them, both by the names below, so a column is named
once. The column names are a contract users rely on: renaming one breaks their scripts.

Plugins add columns of their own: a compression method's ``Candidate.metrics`` and a
backend's ``score`` become attributes under their own names. They may not reuse a core
name (`CORE_COLUMNS`, or one that `is_core_column` recognises): a plugin that returns one
fails its trial with a reason naming the key and the plugin, and the contract checks of
`nas.testing` fail too.
"""

from __future__ import annotations

from collections.abc import Iterable

from nas.cost import COST_FIELDS
from nas.errors import TrialError

# ------------------------------------------------------------ attributes the search writes

#: The architecture choices (the space's spec, a dict); hidden from the row, which has
#: one ``arch_<choice>`` column per choice instead.
ARCH = "arch"
#: (H, W) of a trial's feature map when the data's choices (a searched front-end) set it.
INPUT_HW = "input_hw"
#: The model family of the architecture (`nas.spaces.BaseSearchSpace.family`: the
#: ``family`` choice of the ``families`` and ``reference`` spaces, else the space's name).
FAMILY = "family"
#: True when the static cost fits every limit (SRAM, flash, latency ceiling, MACs floor).
FEASIBLE = "feasible"
#: Why the candidate was rejected before training (empty reason: it fits).
INFEASIBLE_REASON = "infeasible_reason"
#: Why the trial failed (an exception, Ctrl-C, a worker that stopped).
FAIL_REASON = "fail_reason"
#: Why the pruner stopped training (or that the repeated architecture was pruned).
PRUNE_REASON = "prune_reason"
#: A repeated architecture: the number of the trial that trained it.
DUPLICATE_OF = "duplicate_of"
#: Validation accuracy after each epoch (a list), read by `nas.pruner`.
VAL_ACC_CURVE = "val_acc_curve"
#: Seconds of training (0 for candidates never trained).
TRAIN_S = "train_s"
#: Seconds of the compression pipeline after training (distillation, pruning's and
#: clustering's fine-tuning, quantization-aware training, quantization): where a
#: ``finalize`` run spends most of its time.
COMPRESS_S = "compress_s"
#: Float accuracy, validation and test split, of the module quantization starts from
#: (trained, then pruned or distilled where those methods are selected).
ACC_FLOAT = "acc_float"
ACC_FLOAT_TEST = "acc_float_test"
#: The running trial's last heartbeat (Unix time), written by `nas.storage.Heartbeat`.
HEARTBEAT = "heartbeat_unix"
#: A trial queued again after its worker stopped: the number of the abandoned trial.
RETRY_OF = "retry_of"
#: How the trial's ``acc_int8`` was measured: ``supernet`` (inherited weights of the
#: ``supernet`` strategy, int8 validation accuracy only; `nas.supernet`) or the name of
#: the backend that scored the trained model.
SCORED_BY = "scored_by"
#: The ``scored_by`` value of candidates scored with inherited weights.
SUPERNET = "supernet"
#: Seconds a ``supernet`` candidate took to score (extract, recalibrate, quantize, validate).
SCORE_S = "score_s"
#: A finalist of the ``supernet`` strategy: the number of the candidate it was chosen from,
#: and that candidate's inherited int8 validation accuracy.
FINALIST_OF = "finalist_of"
ACC_INT8_INHERITED = "acc_int8_inherited"
#: The static cost's names (`nas.cost.Cost`: ``flash_bytes``, ``latency_ms``...).
COST = COST_FIELDS
#: When compression changes the cost: ``<cost name>_uncompressed`` holds the cost of the
#: uncompressed int8 network (the cost columns themselves hold the prediction, then the
#: measurement after compression).
UNCOMPRESSED_SUFFIX = "_uncompressed"
#: ``<name>_predicted``: the cost the selected compression methods predicted before
#: training (`nas.compression.predict`), which decided feasibility; kept next to the
#: measured figure for these names.
PREDICTED_SUFFIX = "_predicted"
PREDICTED = ("flash_bytes", "sram_bytes", "macs", "latency_ms")
#: Whether the uncompressed network would have fitted too (recorded when compression
#: changes the cost): False marks a candidate that fits only through compression.
FITS_UNCOMPRESSED = "fits_uncompressed"
#: How the reason of a candidate that no longer fits once measured after compression starts.
AFTER_COMPRESSION = "after compression"

# ----------------------------------------------------------- what a backend must return

#: Validation accuracy of the int8 model (the search objective) and its test accuracy;
#: every backend returns both (`nas.backends.REQUIRED_METRICS`).
ACC_INT8 = "acc_int8"
ACC_INT8_TEST = "acc_int8_test"
#: The static latency estimate, a `Cost` name; the second objective.
LATENCY_MS = "latency_ms"
#: `Cost` names the end of a search prints for the best model.
SRAM_BYTES = "sram_bytes"
FLASH_BYTES = "flash_bytes"

# ----------------------------------------------------------- columns the report adds

NUMBER = "number"
STATE = "state"
#: On the front of the completed, feasible, trained trials (acc_int8 up, latency_ms down).
PARETO = "pareto"
#: The first of the infeasible, fail and prune reasons, or the repeat's source.
REASON = "reason"
#: ``feasible_<constraint>`` (``feasible_sram``...): whether the trial kept that limit.
FEASIBLE_PREFIX = "feasible_"
#: ``arch_<choice>``: one column per architecture choice (the Optuna parameters).
ARCH_PREFIX = "arch_"
#: Where each row of `nas.report.load` comes from, then what its study searched.
LOAD_COLUMNS = [
    "run",
    "study",
    "storage",
    "hw",
    "search_space",
    "dataset",
    "backend",
    "compression",
]
#: `nas.report.load`: ``pareto`` of the row's own run, and the front over all rows.
PARETO_RUN = "pareto_run"
PARETO_ALL = "pareto_all"

# ----------------------------------------------------------------- the groups

#: The reason attributes, in the order the ``reason`` column takes the first present.
REASONS = (INFEASIBLE_REASON, FAIL_REASON, PRUNE_REASON)
#: Attributes that are not columns of the row.
HIDDEN = (ARCH, VAL_ACC_CURVE, *REASONS)
#: What a repeat does not copy from the trial that trained its architecture.
NOT_REPEATED = frozenset(
    {
        VAL_ACC_CURVE,
        HEARTBEAT,
        TRAIN_S,
        COMPRESS_S,
        PRUNE_REASON,
        FAIL_REASON,
        FINALIST_OF,
        ACC_INT8_INHERITED,
        SCORE_S,
    }
)
#: Cost names a backend may replace with its measurement: the ``tflm`` backend returns
#: the real ``.tflite`` size as ``model_bytes`` (and the estimate as
#: ``model_bytes_estimated``).
MEASURED_BY_BACKEND = frozenset({"model_bytes"})
#: With weights stored encoded (``cluster``, ``huffman``) the backend runs them decoded:
#: its figure for a `MEASURED_BY_BACKEND` name is kept as ``<name>_decoded``.
DECODED_SUFFIX = "_decoded"

#: Every name the core writes into a trial's row; no plugin may return one. Names made
#: of a core prefix (``feasible_<constraint>``, ``arch_<choice>``) are core too: see
#: `is_core_column`.
CORE_COLUMNS = frozenset(
    {
        NUMBER,
        STATE,
        FEASIBLE,
        PARETO,
        REASON,
        ARCH,
        FAMILY,
        DUPLICATE_OF,
        VAL_ACC_CURVE,
        TRAIN_S,
        COMPRESS_S,
        ACC_FLOAT,
        ACC_FLOAT_TEST,
        HEARTBEAT,
        RETRY_OF,
        SCORED_BY,
        SCORE_S,
        FINALIST_OF,
        ACC_INT8_INHERITED,
        *REASONS,
        *COST,
        *(name + UNCOMPRESSED_SUFFIX for name in COST),
        *(name + PREDICTED_SUFFIX for name in PREDICTED),
        FITS_UNCOMPRESSED,
        *LOAD_COLUMNS,
        PARETO_RUN,
        PARETO_ALL,
    }
)
#: Prefixes of the core's families of columns.
CORE_PREFIXES = (FEASIBLE_PREFIX, ARCH_PREFIX)


def is_core_column(name: str) -> bool:
    """Whether ``name`` is a column the core writes (so no plugin may return it)."""
    return name in CORE_COLUMNS or name.startswith(CORE_PREFIXES)


def core_columns_in(names: Iterable[str]) -> list[str]:
    """The core column names among ``names``, in their order."""
    return [name for name in names if is_core_column(name)]


def check_plugin_metrics(
    plugin: str, names: Iterable[str], allowed: frozenset[str] = frozenset()
) -> None:
    """Raise `TrialError` when ``plugin`` (``"backend 'tflm'"``) returned core columns
    among the metric ``names``; ``allowed``: core names this plugin may replace (a
    backend: `MEASURED_BY_BACKEND`)."""
    found = [name for name in core_columns_in(names) if name not in allowed]
    if found:
        keys = ", ".join(f"'{name}'" for name in found)
        column = "core column" if len(found) == 1 else "core columns"
        raise TrialError(
            f"{plugin} returned {column} {keys}; plugins may not overwrite core columns"
        )
