"""``ptq``: int8 post-training quantization following the TFLite int8 specification.

Per-channel symmetric int8 weights, asymmetric int8 activations calibrated on the min/max
of ``calibration_samples`` training images, int32 biases and fixed-point requantization
(see `nas.int8`). ``per_channel=false`` gives each convolution one weight scale (per-tensor),
for runtimes that take one requantization scale per layer, such as CMSIS-NN's legacy q7
functions with their one output shift per layer. It can cost accuracy, which ``qat`` wins
back: on one Fashion-MNIST network, per-tensor PTQ lost 2.7 points to float on average
over 10 seeds (13 on the worst), and QAT recovered 2.3 of them
(``benchmarks/results/qat_vs_ptq_per_tensor.md``).

Sets ``candidate.qgraph``. Models that are not layer graphs (a space's ``trace`` gives
``None``) quantize themselves with the same calibration batch through their
``quantize_int8`` method (``per_channel`` does not apply to them).
"""

from __future__ import annotations

from dataclasses import dataclass

from nas import hookimpl
from nas.compression import BaseCompressionMethod, Candidate
from nas.data import calibration_batch
from nas.errors import check_option
from nas.int8 import quantize


@dataclass
class PtqConfig:
    calibration_samples: int = 256
    seed: int = 0
    per_channel: bool = True

    def __post_init__(self) -> None:
        check_option(
            "compression.ptq.calibration_samples",
            self.calibration_samples,
            self.calibration_samples >= 1,
            "1 or more",
        )


class PostTrainingQuantization(BaseCompressionMethod):
    """Min/max-calibrated int8 quantization of the traced graph."""

    name = "ptq"
    stage = "quantization"
    Config = PtqConfig

    def apply(self, candidate: Candidate) -> Candidate:
        c = self.config
        calib = calibration_batch(candidate.data.x_train, c.calibration_samples, c.seed)
        if candidate.graph is None:  # not a layer graph (Bonsai): the model quantizes itself
            candidate.qgraph = candidate.module.quantize_int8(calib.transpose(0, 3, 1, 2))
        else:
            candidate.qgraph = quantize(candidate.graph, calib, c.per_channel)
        return candidate


@hookimpl
def nas_register_compression_methods():
    return [PostTrainingQuantization]
