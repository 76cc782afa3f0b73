"""int4 weights on the real runtime: packed two per byte in the ``.tflite`` file, run by
TensorFlow Lite Micro, bit-exact with the int8 reference, and costed exactly."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from nas_backend_tflm.runtime import invoke_all, load, min_arena_bytes

import nas
from nas.cost import model_bytes, tflm_arena
from nas.graph import trace
from nas.int8 import quantize, run_int8
from nas.tflite import export, pack_int4


def test_int4_packing_puts_the_first_of_each_pair_in_the_low_nibble():
    packed = pack_int4(np.array([1, -1, 7, -8, 3], dtype=np.int8))
    assert packed.tolist() == [0xF1, 0x87, 0x03]


def _random_int4_models(space_name: str, n: int, seed: int):
    space = nas.create_search_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found = 0
    for i in range(50 * n):
        spec = space.sample(study.ask())
        r = spec.get("resolution", 8)
        torch.manual_seed(i)
        g = trace(space.build(spec, 1, 10).eval(), (1, 1, r, r))
        if g.params > 200_000:  # an MCU model, not a 16 M-weight MobileNetV1
            continue
        found += 1
        if found > n:
            return
        x = np.random.default_rng(i).random((24, r, r, 1))
        yield spec, g, quantize(g, x[:8], weight_bits=4), x[8:]


@pytest.mark.parametrize("space_name", ["mobilenet", "reference"])
def test_int4_models_run_in_tflm_as_the_reference_and_cost_exactly(space_name):
    for spec, g, qg, x in _random_int4_models(space_name, 4, seed=5):
        weights = [q.weight for q in qg.ops if q.weight is not None]
        assert all(w.min() >= -7 and w.max() <= 7 for w in weights), spec
        assert all(q.weight_bits == 4 for q in qg.ops if q.weight is not None)
        model = export(qg)
        x_q = qg.input_params.quantize(x)
        smallest = min_arena_bytes(model)
        got = invoke_all(load(model, smallest, known_to_fit=True), x_q).astype(np.int32)
        ref = run_int8(qg, x_q).reshape(len(x), -1).astype(np.int32)
        assert np.array_equal(got, ref), spec  # TFLM's int4 kernels: bit-exact
        # the arena holds each op's unpacked filter while it runs: estimated to the byte
        assert tflm_arena(g, "reference", 8, weight_bits=4).min_bytes == smallest, spec
        # the flatbuffer estimate is off by what it is off for the same int8 model
        int8_model = export(quantize(g, x[:8]))
        miss4, miss8 = len(model) - model_bytes(g, 4), len(int8_model) - model_bytes(g)
        assert abs(miss4 - miss8) <= 8, spec
        saved = sum(w.size - (w.size + 1) // 2 for w in weights)
        assert len(int8_model) - len(model) == pytest.approx(saved, abs=8)


@pytest.mark.slow
def test_an_int4_search_is_scored_in_tflm_and_deployed(cli, tmp_path):
    import pandas as pd

    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "backend=tflm",
        "compression.ptq.weight_bits=4",
        "search.n_trials=2",
        "search.epochs=2",
        "search_space.resolutions=[8]",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = pd.read_csv(run / "trials.csv").query("state == 'COMPLETE' and feasible")
    assert len(done) >= 1
    # the interpreter ran the int4 flatbuffer in the arena the estimate predicted
    assert (done.arena_bytes_measured == done.arena_bytes_estimated).all()
    assert (done.model_bytes < done.model_bytes_uncompressed).all()
    assert (done.tflm_ref_max_diff == 0).all()
    assert (done.flash_bytes == done.flash_bytes_predicted).all()
    assert done.acc_int8.min() > 0.5
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl

    model = tfl.ModelT.InitFromPackedBuf(bytearray((run / "best" / "model.tflite").read_bytes()))
    types = {t.type for t in model.subgraphs[0].tensors if t.name.endswith(b"_weights")}
    assert types == {tfl.TensorType.INT4}
