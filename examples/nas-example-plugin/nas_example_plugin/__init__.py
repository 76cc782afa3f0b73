"""Example mcu-nas plugin: one compression method and one backend.

- ``clip``: a structure-stage method that clips each layer's weights to a percentile of
  their magnitude before quantization, so one outlier weight no longer sets the int8 scale.
- ``agreement``: a backend that scores like ``estimate`` and also reports how often the
  int8 model agrees with the float model on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import nas
from nas.backends import BaseBackend
from nas.compression import BaseCompressionMethod, Candidate
from nas.errors import ConfigError
from nas.int8 import predict_int8


@dataclass
class ClipConfig:
    percentile: float = 99.9


class ClipWeights(BaseCompressionMethod):
    """Clip conv/linear weights at a magnitude percentile (per layer)."""

    name = "clip"
    stage = "structure"
    Config = ClipConfig

    def __init__(self, config: ClipConfig | None = None) -> None:
        super().__init__(config)
        # Checked here, when the search builds its components: a bad value stops the run
        # with this one line before any candidate is trained.
        if not 0.0 < self.config.percentile <= 100.0:
            raise ConfigError(
                f"compression.clip.percentile={self.config.percentile}: must be in (0, 100]"
            )

    def apply(self, candidate: Candidate) -> Candidate:
        clipped = 0
        with torch.no_grad():
            for module in candidate.module.modules():
                if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                    w = module.weight
                    limit = float(np.percentile(w.abs().numpy(), self.config.percentile))
                    clipped += int((w.abs() > limit).sum())
                    w.clamp_(-limit, limit)
        candidate.retrace()  # the cost model and the quantizer read the graph, not the module
        candidate.metrics["clip_weights_clipped"] = clipped
        return candidate


@dataclass
class AgreementConfig:
    pass


class AgreementBackend(BaseBackend):
    """int8 accuracy plus agreement between the int8 and the float model."""

    name = "agreement"
    Config = AgreementConfig

    def score(self, candidate, cost):
        d = candidate.data
        x_val, x_test = d.x_val.transpose(0, 2, 3, 1), d.x_test.transpose(0, 2, 3, 1)
        pred_val = predict_int8(candidate.qgraph, x_val)
        pred_test = predict_int8(candidate.qgraph, x_test)
        with torch.no_grad():
            ref = candidate.module(torch.from_numpy(d.x_test)).argmax(1).numpy()
        return {
            "acc_int8": float((pred_val == d.y_val).mean()),
            "acc_int8_test": float((pred_test == d.y_test).mean()),
            "int8_float_agreement": float((pred_test == ref).mean()),
        }


@nas.hookimpl
def nas_register_compression_methods():
    return [ClipWeights]


@nas.hookimpl
def nas_register_backends():
    return [AgreementBackend]
