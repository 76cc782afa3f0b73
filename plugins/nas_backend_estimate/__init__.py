"""``estimate``: scores the int8 model with the project's own integer reference kernels.

Accuracy comes from running the quantized model (`nas.int8.run_int8`, the arithmetic of
TFLite Micro's reference kernels); memory and latency are the static cost model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas import hookimpl
from nas.backends import BaseBackend
from nas.compression import Candidate
from nas.cost import Cost
from nas.int8 import accuracy_int8


@dataclass
class EstimateConfig:
    pass


class EstimateBackend(BaseBackend):
    """Int8 accuracy from the reference interpreter; cost from the static model."""

    name = "estimate"
    Config = EstimateConfig

    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        d, qg = candidate.data, candidate.qgraph
        assert qg is not None
        return {
            "acc_int8": accuracy_int8(qg, d.x_val, d.y_val),
            "acc_int8_test": accuracy_int8(qg, d.x_test, d.y_test),
        }


@hookimpl
def nas_register_backends():
    return [EstimateBackend]
