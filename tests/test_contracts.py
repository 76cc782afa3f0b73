"""Every registered compression method and backend keeps the plugin contract."""

from __future__ import annotations

import pytest
from faulty_plugins import FlashOverwrite, SaysFeasible

import nas
from nas.errors import TrialError
from nas.plugin_manager import get_plugin_manager
from nas.testing import check_backend, check_compression_method


@pytest.mark.parametrize("name", nas.list_compression_methods())
def test_compression_method_contract(name):
    check_compression_method(get_plugin_manager().get("compression", name))


@pytest.mark.parametrize(
    "name",
    [  # the c_sim contract runs QEMU: a simulator run, slow
        pytest.param(n, marks=pytest.mark.slow) if n == "c_sim" else n for n in nas.list_backends()
    ],
)
def test_backend_contract(name):
    if name == "c_sim":
        from test_c_sim import arm_tools

        arm_tools()  # the contract runs on a Cortex-M4 profile: QEMU and the cross-compiler
    check_backend(get_plugin_manager().get("backend", name))


def test_the_contract_refuses_metrics_named_like_core_columns():
    """A plugin that returns ``flash_bytes`` or ``feasible`` would rewrite what the search
    measured: the contract check fails, naming the plugin and the key."""
    with pytest.raises(TrialError, match="method 'flash_overwrite' returned core column"):
        check_compression_method(FlashOverwrite)
    with pytest.raises(TrialError, match="backend 'says_feasible' returned core column"):
        check_backend(SaysFeasible)
