"""Hook specifications: the plugin author's manual.

A plugin is a module (or object) with functions named like the hooks below, marked with
``nas.hookimpl``. It is found through the ``nas`` entry-point group of its package::

    [project.entry-points.nas]
    my_method = "my_package.plugin_module"

The built-in plugins under ``plugins/`` and ``search_spaces/`` register exactly this way.
Hooks are called with keyword arguments only; an implementation may accept any subset of
a hook's arguments, so hooks grow by gaining arguments without breaking old plugins.

Registrar hooks return classes. Every class carries a unique ``name`` (what users type on
the command line, e.g. ``backend=tflm``) and a ``Config`` dataclass whose fields become the
validated Hydra options of that choice (``search_space.widths=[8,16]``). Two classes with
the same name are refused with a message naming both plugins. Set
``NAS_DISABLE_PLUGINS=name1,name2`` to block plugins by entry-point name, and
``NAS_DISABLE_PLUGIN_AUTOLOAD=1`` to load none from entry points (tests register their own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from nas.backends import BaseBackend
    from nas.compression import BaseCompressionMethod
    from nas.data import BaseDataset
    from nas.spaces import BaseSearchSpace

PROJECT = "nas"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- registrars


@hookspec
def nas_register_search_spaces() -> list[type[BaseSearchSpace]]:
    """Return search-space classes to make selectable with ``search_space=<name>``.

    A search space samples an architecture from an Optuna trial (a plain, JSON-serialisable
    dict of choices) and builds a ``torch.nn.Module`` from it; see `nas.spaces`. A space
    whose models are not layer graphs overrides ``trace``, ``cost``, ``layers`` and ``fit``
    and declares the ``backends`` and ``compression`` methods that can handle its models.

    :returns: a list of `nas.spaces.BaseSearchSpace` subclasses.
    """


@hookspec
def nas_register_datasets() -> list[type[BaseDataset]]:
    """Return dataset classes to make selectable with ``dataset=<name>``.

    A dataset loads local files (nothing is downloaded at run time) into train, validation
    and test arrays; see `nas.data`.

    :returns: a list of `nas.data.BaseDataset` subclasses.
    """


@hookspec
def nas_register_compression_methods() -> list[type[BaseCompressionMethod]]:
    """Return compression-method classes selectable in ``compression=[a,b,...]``.

    Each method declares its ``stage`` (``structure``, ``training``, ``quantization`` or
    ``encoding``); the pipeline runs selected methods in that order, whatever the order on
    the command line. Exactly one ``quantization`` method must run for a trial to be scored.
    See `nas.compression`.

    :returns: a list of `nas.compression.BaseCompressionMethod` subclasses.
    """


@hookspec
def nas_register_backends() -> list[type[BaseBackend]]:
    """Return backend classes selectable with ``backend=<name>``.

    A backend scores a quantized candidate the way a chip runs it and returns a flat dict
    of metrics (``acc_int8`` at least); see `nas.backends`.

    :returns: a list of `nas.backends.BaseBackend` subclasses.
    """


# --------------------------------------------------------------------------- observers


@hookspec
def nas_observe_trial(trial_number: int, record: dict[str, Any]) -> None:
    """Called after every trial with its flat record (the row that ``trials.csv`` gets).

    ``record`` holds ``state`` (Optuna's: ``COMPLETE``, ``PRUNED`` or ``FAIL``), ``feasible``
    (whether the static cost fits the chip; infeasible trials complete without training),
    ``reason``, the static cost, the metrics and the ``arch_`` choices. Use it to log or
    stream results; do not modify it. An exception here fails nothing: it is logged.

    :param trial_number: the Optuna trial number.
    :param record: the trial's flat record.
    """


@hookspec
def nas_observe_study(run_dir: str, trials: Any) -> None:
    """Called once when a search ends, with its run directory and the trials DataFrame.

    :param run_dir: the run directory (holds ``trials.csv``, ``report.md``, ``best/``).
    :param trials: a ``pandas.DataFrame`` with one row per trial.
    """
