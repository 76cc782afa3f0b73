"""Contract checks every compression method and backend must pass; for plugin authors.

Among them: metrics are JSON-serialisable and named by strings, and none is a core column
(`nas.record.CORE_COLUMNS`: ``flash_bytes``, ``feasible``, ``acc_float``...), which would
overwrite what the search measured; such a plugin fails with a `nas.errors.TrialError`
naming the key, as its trials would. A compression method keeps the cost contract
(`nas.compression`): on random candidates, the cost it predicts before training is never
below the cost it measures after compression (flash, SRAM, MACs, latency).

The project's own tests run them over every registered plugin (``tests/test_contracts.py``).
In a plugin's test suite::

    from nas.testing import check_backend, check_compression_method
    from my_plugin import MyMethod

    def test_my_method_keeps_the_contract():
        check_compression_method(MyMethod)
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from typing import Any

import numpy as np
import torch

from nas.backends import REQUIRED_METRICS, BaseBackend
from nas.compression import (
    STAGES,
    BaseCompressionMethod,
    Candidate,
    Plan,
    measure,
    order,
    predict,
    run_pipeline,
)
from nas.cost import Cost, estimate
from nas.graph import trace
from nas.hardware import load_profile
from nas.int8 import run_float
from nas.plugin_manager import get_plugin_manager
from nas.record import MEASURED_BY_BACKEND, check_plugin_metrics
from nas.train import TrainSettings, accuracy, fit

SPEC = {
    "resolution": 8,
    "stem_channels": 8,
    "s1_width": 16,
    "s1_depth": 1,
    "s1_kernel": 3,
    "s1_expand": 2,
    "s1_stride": 2,
    "s2_width": 16,
    "s2_depth": 1,
    "s2_kernel": 3,
    "s2_expand": 2,
    "s2_stride": 1,
}


@functools.lru_cache(maxsize=1)
def _trained() -> tuple[Any, Any]:
    pm = get_plugin_manager()
    space = pm.get("search_space", "mobilenet")()
    data = pm.get("dataset", "digits")().load()
    torch.manual_seed(0)
    module = space.build(SPEC, data.in_channels, data.num_classes)
    fit(module, data, TrainSettings(epochs=4, batch_size=32, lr=0.01, weight_decay=1e-4, seed=0))
    return module, data


def make_candidate(hw: str = "cortex_m4") -> Candidate:
    """A small MobileNet-like candidate trained on digits (cached), ready for compression."""
    module, data = _trained()
    module = copy.deepcopy(module).eval()
    graph = trace(module, (1, data.in_channels, 8, 8), "contract")
    return Candidate("contract", dict(SPEC), module, graph, data, load_profile(hw))


#: The cost-contract names: what a prediction must bound.
BOUNDED = ("flash_bytes", "sram_bytes", "macs", "latency_ms")


def plan_for(module: torch.nn.Module, hw_name: str = "cortex_m4") -> Plan:
    """The uncompressed plan of an 8 x 8 digits MobileNet-like ``module`` on ``hw_name``,
    as the search makes it (`nas.search.uncompressed_plan`)."""
    from nas.search import uncompressed_plan

    space = get_plugin_manager().get("search_space", "mobilenet")()
    hw = load_profile(hw_name)
    return uncompressed_plan(space, module, (1, 1, 8, 8), "contract", hw, space.cost)


def check_cost_contract(
    methods: list[BaseCompressionMethod], candidates: int = 3, seed: int = 0
) -> list[tuple[Cost, Cost]]:
    """Predict, train, compress and measure ``candidates`` random small MobileNet-like
    networks on digits with ``methods`` (in stage order); assert the prediction bounds the
    measurement. Returns (predicted, measured) per candidate."""
    pm = get_plugin_manager()
    space = pm.get("search_space", "mobilenet")()
    data = pm.get("dataset", "digits")().load()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(candidates):
        spec = dict(SPEC)
        for s in (1, 2):
            spec[f"s{s}_width"] = int(rng.choice([8, 16, 24]))
            spec[f"s{s}_expand"] = int(rng.choice([1, 2, 4]))
            spec[f"s{s}_kernel"] = int(rng.choice([3, 5]))
        torch.manual_seed(seed * 100 + i)
        module = space.build(spec, data.in_channels, data.num_classes)
        predicted = predict(methods, plan_for(module)).cost
        settings = TrainSettings(epochs=1, batch_size=32, lr=0.01, weight_decay=1e-4, seed=i)
        fit(module, data, settings)
        module.eval()
        graph = trace(module, (1, data.in_channels, 8, 8), "contract")
        cand = Candidate(f"contract {i}", spec, module, graph, data, load_profile("cortex_m4"))
        cand.train = settings
        done = run_pipeline(methods, cand)
        assert done.graph is not None
        measured = measure(methods, done, estimate(done.graph, done.hw)).cost
        for name in BOUNDED:
            p, m = getattr(predicted, name), getattr(measured, name)
            assert m <= p * (1 + 1e-9), (
                f"{', '.join(x.name for x in methods)}: measured {name} {m} above the "
                f"prediction {p} (spec {spec})"
            )
        out.append((predicted, measured))
    return out


def _check_class(cls: Any, base: type) -> None:
    assert issubclass(cls, base), f"{cls!r} must subclass {base.__name__}"
    assert isinstance(getattr(cls, "name", None), str) and cls.name, f"{cls!r} needs a name"
    config: Any = cls.Config
    assert dataclasses.is_dataclass(config), f"{cls.name}: Config must be a dataclass"
    cls.Config()  # every option has a default


def _json_metrics(metrics: dict[str, Any], who: str) -> None:
    """Metrics go into the Optuna storage: JSON-serialisable, named by strings."""
    json.dumps(metrics)
    assert all(isinstance(k, str) and k for k in metrics), f"{who}: metric names must be strings"


def check_compression_method(cls: type[BaseCompressionMethod]) -> Candidate:
    """Run ``cls`` on a trained candidate (with ``ptq`` when it is not itself the
    quantization step) and check the result; returns the compressed candidate. The
    pipeline itself refuses metrics named like a core column."""
    _check_class(cls, BaseCompressionMethod)
    assert cls.stage in STAGES, f"{cls.name}: stage must be one of {STAGES}"
    cand = make_candidate()
    float_acc = accuracy(cand.module, cand.data.x_val, cand.data.y_val)
    methods: list[BaseCompressionMethod] = [cls()]
    if cls.stage != "quantization":
        methods.append(get_plugin_manager().get("compression", "ptq")())
    methods = order(methods)
    for m in methods:
        m.check(cand.hw, "tflm", methods)
    check_cost_contract(methods)
    out = run_pipeline(methods, cand)
    assert out.graph is not None
    measure(methods, out, estimate(out.graph, out.hw))  # its metrics too
    assert isinstance(out, Candidate), f"{cls.name}: apply must return a Candidate"
    assert out.qgraph is not None, f"{cls.name}: no int8 model after the pipeline"
    assert out.graph is not None, f"{cls.name}: the candidate lost its graph"
    x = out.data.x_val.transpose(0, 2, 3, 1)
    with torch.no_grad():
        ref = out.module.eval()(torch.from_numpy(out.data.x_val)).numpy()
    np.testing.assert_allclose(
        run_float(out.graph, x).reshape(ref.shape),
        ref,
        atol=1e-3,
        err_msg=f"{cls.name}: graph no longer matches the module",
    )
    estimate(out.graph, out.hw)  # the cost model still reads the graph
    _json_metrics(out.metrics, cls.name)
    new_acc = accuracy(out.module, out.data.x_val, out.data.y_val)
    assert new_acc >= float_acc - 0.15, f"{cls.name}: accuracy fell {float_acc} -> {new_acc}"
    return out


def check_backend(cls: type[BaseBackend]) -> dict[str, Any]:
    """Score a quantized candidate with ``cls`` twice and check the metrics."""
    _check_class(cls, BaseBackend)
    ptq = get_plugin_manager().get("compression", "ptq")()
    cand = run_pipeline([ptq], make_candidate())
    assert cand.graph is not None
    cost = estimate(cand.graph, cand.hw)
    first = cls().score(cand, cost)
    check_plugin_metrics(f"backend '{cls.name}'", first, MEASURED_BY_BACKEND)
    for key in REQUIRED_METRICS:
        assert key in first, f"{cls.name}: score() must return {key}"
        assert 0.0 <= first[key] <= 1.0, f"{cls.name}: {key} = {first[key]} not in [0, 1]"
    assert first["acc_int8"] > 0.5, f"{cls.name}: a trained digits model scores {first}"
    _json_metrics(first, cls.name)
    second = cls().score(run_pipeline([ptq], make_candidate()), cost)
    assert {k: first[k] for k in REQUIRED_METRICS} == {k: second[k] for k in REQUIRED_METRICS}, (
        f"{cls.name}: scores differ between two identical runs"
    )
    return first
