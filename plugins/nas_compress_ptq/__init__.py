"""``ptq``: int8 post-training quantization following the TFLite int8 specification.

Per-channel symmetric int8 weights, asymmetric int8 activations calibrated on the min/max
of ``calibration_samples`` training images, int32 biases and fixed-point requantization
(see `nas.int8`). ``per_channel=false`` gives each convolution one weight scale (per-tensor),
for runtimes that take one requantization scale per layer, such as CMSIS-NN's legacy q7
functions with their one output shift per layer. It can cost accuracy, which ``qat`` wins
back: on one Fashion-MNIST network, per-tensor PTQ lost 2.7 points to float on average
over 10 seeds (13 on the worst), and QAT recovered 2.3 of them
(``benchmarks/results/qat_vs_ptq_per_tensor.md``).

``weight_bits=4`` stores every weight as int4 ([-7, 7], per-channel scales, packed two
per byte in the ``.tflite`` file), which TensorFlow Lite Micro runs: its CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED kernels unpack an int4 filter into a scratch buffer
before the op (bit-exact with `nas.int8`'s reference; ``tests/test_int4.py``). Flash then
shrinks by half the weights, and the arena grows by the largest unpacked filter: both
predicted exactly before training (`nas.cost.estimate`). It needs a TFLM profile and a
backend that runs TFLM flatbuffers (``tflm``, or ``estimate``). The unpacking runs on
every inference: its time (``latency_lut.decode_int4``, measured in QEMU by
``benchmarks/decoder_calibration.py``; about 5.5 instructions per weight on the M4) is
added to the latency, and a profile without it is refused.

Sets ``candidate.qgraph``. Models that are not layer graphs (a space's ``trace`` gives
``None``) quantize themselves with the same calibration batch through their
``quantize_int8`` method (``per_channel`` does not apply to them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from nas import hookimpl
from nas.compression import BaseCompressionMethod, Candidate, Plan, Stored
from nas.cost import WEIGHT_BITS, estimate, weight_storage_bytes
from nas.data import calibration_batch
from nas.errors import ConfigError, check_option
from nas.hardware import HardwareProfile
from nas.int8 import quantize

#: Backends that run the ``.tflite`` flatbuffer's int4 weights (or cost them as TFLM does).
INT4_BACKENDS = ("tflm", "estimate")
#: The latency table entry of unpacking int4 weights (per packed bit, weight and op).
UNPACK_LUT_KIND = "decode_int4"


@dataclass
class PtqConfig:
    calibration_samples: int = 256
    seed: int = 0
    per_channel: bool = True
    weight_bits: int = 8

    def __post_init__(self) -> None:
        check_option(
            "compression.ptq.weight_bits",
            self.weight_bits,
            self.weight_bits in WEIGHT_BITS,
            " or ".join(map(str, WEIGHT_BITS)),
        )
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
            candidate.qgraph = quantize(candidate.graph, calib, c.per_channel, c.weight_bits)
        return candidate

    def check(
        self, hw: HardwareProfile, backend: str, methods: Sequence[BaseCompressionMethod]
    ) -> None:
        if self.config.weight_bits == 8:
            return
        encoders = [m.name for m in methods if m.name in ("cluster", "huffman")]
        if encoders:
            raise ConfigError(
                f"compression.ptq.weight_bits={self.config.weight_bits} cannot be combined "
                f"with {', '.join(encoders)} (they code int8 weights); use "
                "compression.ptq.weight_bits=8 with them"
            )
        if hw.runtime != "tflm" or backend not in INT4_BACKENDS:
            raise ConfigError(
                f"compression.ptq.weight_bits={self.config.weight_bits}: int4 weights run in "
                f"TensorFlow Lite Micro only (backend={' or '.join(INT4_BACKENDS)} and a "
                f"profile with runtime: tflm), not backend={backend} on {hw.name}; "
                "valid here: compression.ptq.weight_bits=8"
            )
        if UNPACK_LUT_KIND not in hw.latency_lut:
            raise ConfigError(
                f"compression.ptq.weight_bits={self.config.weight_bits}: no measured int4 "
                f"unpacking for {hw.name} (latency_lut.{UNPACK_LUT_KIND} in "
                f"{hw.source_file or 'the profile'}); measure it with python "
                "benchmarks/decoder_calibration.py, or use compression.ptq.weight_bits=8"
            )

    def predict(self, plan: Plan) -> Plan:
        return self._int4(plan)

    def measure(self, candidate: Candidate, plan: Plan) -> Plan:
        return self._int4(plan)

    def _int4(self, plan: Plan) -> Plan:
        """``plan`` with int4 weights: flatbuffer and arena as `nas.cost.estimate` gives
        them, and the unpacking's time."""
        bits = self.config.weight_bits
        if bits == 8:
            return plan
        if plan.graph is None:
            raise ConfigError(
                f"compression.ptq.weight_bits={bits}: the search space's models are not "
                "layer graphs; valid for them: 8"
            )
        stored = [
            Stored(s.elements, bits, weight_storage_bytes(s.elements, bits)) for s in plan.stored
        ]
        cost = plan.cost.changed_by(
            estimate(plan.graph, plan.hw), estimate(plan.graph, plan.hw, bits)
        )
        # TFLM unpacks each int4 filter before its op, on every inference
        entry = plan.hw.latency_entry(UNPACK_LUT_KIND)
        ms = sum(
            plan.hw.instructions_to_ms(entry.cycles(bits * s.elements, s.elements)) for s in stored
        )
        cost = replace(
            cost,
            latency_ms=cost.latency_ms + ms,
            energy_uj=cost.energy_uj + ms * plan.hw.active_power_mw,
        )
        return replace(plan, stored=stored, cost=cost)


@hookimpl
def nas_register_compression_methods():
    return [PostTrainingQuantization]
