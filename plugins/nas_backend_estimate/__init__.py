"""``estimate``: scores the int8 model with the project's own integer reference kernels.

Accuracy comes from running the quantized model (`nas.int8.run_int8`, the arithmetic of
TFLite Micro's reference kernels); memory and latency are the static cost model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nas import hookimpl
from nas.backends import BaseBackend
from nas.compression import Candidate
from nas.cost import Cost
from nas.int8 import predict_int8


@dataclass
class EstimateConfig:
    pass


def int8_accuracy(candidate: Candidate, x_nchw: np.ndarray, y: np.ndarray) -> float:
    assert candidate.qgraph is not None
    pred = predict_int8(candidate.qgraph, x_nchw.transpose(0, 2, 3, 1))
    return float((pred == y).mean())


class EstimateBackend(BaseBackend):
    """Int8 accuracy from the reference interpreter; cost from the static model."""

    name = "estimate"
    Config = EstimateConfig

    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        d = candidate.data
        return {
            "acc_int8": int8_accuracy(candidate, d.x_val, d.y_val),
            "acc_int8_test": int8_accuracy(candidate, d.x_test, d.y_test),
        }


@hookimpl
def nas_register_backends():
    return [EstimateBackend]
