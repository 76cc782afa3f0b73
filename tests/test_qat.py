"""Quantization-aware fine-tuning: BN folding is exact, fake quantization matches int8."""

from __future__ import annotations

import numpy as np
import torch
from nas_compress_qat import (
    QatConfig,
    QuantizationAwareTraining,
    fake_quant_weight,
    fold_batchnorm,
)

from nas.int8 import _quantize_weights
from nas.testing import make_candidate


def test_folding_batchnorm_keeps_the_function():
    cand = make_candidate()
    folded = fold_batchnorm(cand.module)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.from_numpy(cand.data.x_val[:32])
    with torch.no_grad():
        torch.testing.assert_close(folded(x), cand.module.eval()(x), atol=1e-4, rtol=1e-4)


def test_fake_quantized_weights_are_the_int8_weights():
    w = torch.randn(6, 3, 3, 3)
    q, scale = _quantize_weights(w.numpy().transpose(0, 2, 3, 1).astype(np.float64), 0)
    fq = fake_quant_weight(w, per_channel=True).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(fq, q * scale.reshape(-1, 1, 1, 1), rtol=1e-5, atol=1e-6)


def test_per_tensor_fake_quantization_is_the_per_tensor_int8_weights():
    w = torch.randn(6, 3, 3, 3) * torch.tensor([1, 1, 1, 1, 1, 20.0]).view(-1, 1, 1, 1)
    q, scale = _quantize_weights(
        w.numpy().transpose(0, 2, 3, 1).astype(np.float64), 0, per_channel=False
    )
    assert np.all(scale == np.float32(w.abs().max() / 127))  # one scale: the widest channel's
    fq = fake_quant_weight(w, per_channel=False).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(fq, q * scale.reshape(-1, 1, 1, 1), rtol=1e-5, atol=1e-6)
    assert len(np.unique(q[0])) < len(np.unique(q[5]))  # narrow channels get fewer levels


def test_qat_reports_both_accuracies_and_sets_the_int8_model():
    out = QuantizationAwareTraining(QatConfig(epochs=2)).apply(make_candidate())
    assert out.qgraph is not None
    assert 0.5 < out.metrics["qat_acc_int8_ptq"] <= 1.0
    assert 0.5 < out.metrics["qat_acc_int8"] <= 1.0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in out.module.modules())


def test_per_tensor_setting_gives_one_scale_per_layer_in_ptq_and_qat():
    from nas_compress_ptq import PostTrainingQuantization, PtqConfig

    for method in (
        PostTrainingQuantization(PtqConfig(per_channel=False)),
        QuantizationAwareTraining(QatConfig(epochs=1, per_channel=False)),
    ):
        qg = method.apply(make_candidate()).qgraph
        assert qg is not None
        scales = [q.weight_scale for q in qg.ops if q.weight_scale is not None]
        assert scales and all(len(set(s.tolist())) == 1 for s in scales), method.name
