"""Plugins that break the contract by returning a core column (`nas.record.CORE_COLUMNS`)
among their metrics; the search and the contract checks must refuse them."""

from __future__ import annotations

import nas
from nas.backends import BaseBackend
from nas.compression import BaseCompressionMethod


class FlashOverwrite(BaseCompressionMethod):
    """Reports its own ``flash_bytes``, which would replace the static cost's."""

    name = "flash_overwrite"
    stage = "encoding"

    def apply(self, candidate):
        candidate.metrics["flash_bytes"] = 1
        return candidate


class SaysFeasible(BaseBackend):
    """Scores like a backend should, and also claims the candidate ``feasible``."""

    name = "says_feasible"

    def score(self, candidate, cost):
        return {"acc_int8": 0.9, "acc_int8_test": 0.9, "feasible": True}


class FaultyPlugin:
    @staticmethod
    @nas.hookimpl
    def nas_register_compression_methods():
        return [FlashOverwrite]

    @staticmethod
    @nas.hookimpl
    def nas_register_backends():
        return [SaysFeasible]


class Underpredicts(BaseCompressionMethod):
    """Predicts 10 KB less flash than it then measures: breaks the cost contract."""

    name = "underpredict"
    stage = "encoding"

    def apply(self, candidate):
        return candidate

    def predict(self, plan):
        import dataclasses

        cost = dataclasses.replace(plan.cost, flash_bytes=plan.cost.flash_bytes - 10_000)
        return dataclasses.replace(plan, cost=cost)


class UnderpredictPlugin:
    @staticmethod
    @nas.hookimpl
    def nas_register_compression_methods():
        return [Underpredicts]
