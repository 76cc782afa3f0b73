"""Hook specifications: the plugin author's manual.

A plugin is a module (or object) with functions named like the hooks below, marked with
``nas.hookimpl``. It is found through the ``nas`` entry-point group of its package::

    [project.entry-points.nas]
    my_method = "my_package.plugin_module"

The built-in plugins under ``plugins/`` and ``search_spaces/`` register exactly this way.
Hooks are called with keyword arguments only; an implementation may accept any subset of
a hook's arguments, so hooks grow by gaining arguments without breaking old plugins.

Registrar hooks return lists of classes (``nas_register_commands``: of `Command` objects).
Every class carries a unique ``name`` (what users type on the command line, e.g.
``backend=tflm``) and a ``Config`` dataclass whose fields become the validated Hydra
options of that choice (``search_space.widths=[8,16]``). Two classes (or commands) with
the same name are refused with a message naming both plugins. Set
``NAS_DISABLE_PLUGINS=name1,name2`` to block plugins by entry-point name, and
``NAS_DISABLE_PLUGIN_AUTOLOAD=1`` to load none from entry points (tests register their own).

A broken plugin stops every command (``--help`` included) with one line naming it, exit
status 2 (`nas.plugin_manager.PluginError`): a module that fails to import, a marked
function whose name is no hook below (a typo: the message suggests the closest hook), a
function named ``nas_*`` that lacks ``@nas.hookimpl`` (the prefix is reserved for hooks),
an implementation asking for an argument its hook does not pass, and a registrar that
raises or returns something other than a list. Observer hooks are the exception: each
implementation runs on its own, and one that raises is logged with its plugin's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from nas.backends import BaseBackend
    from nas.compression import BaseCompressionMethod
    from nas.data import BaseDataset
    from nas.plugin_manager import Command
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
    Its int8 model may implement `nas.backends.CExportable` (``to_c``, ``c_inputs``,
    ``c_outputs``), so that C backends such as ``c_sim`` can compile and run it, and every
    saved trial gets a firmware project (`nas.firmware`).

    A space whose ``supernet`` returns a `nas.spaces.Supernet` can be searched with
    ``search.strategy=supernet`` (`nas.supernet`). A space whose ``build`` takes
    ``input_hw`` builds for sensor windows too (`nas.data.WINDOWS`: a (T, 1) input, with
    ``k x 1`` kernels); one without it takes square images only, and a windows dataset
    with it is refused in one line.

    :returns: a list of `nas.spaces.BaseSearchSpace` subclasses.
    """


@hookspec
def nas_register_datasets() -> list[type[BaseDataset]]:
    """Return dataset classes to make selectable with ``dataset=<name>``.

    A dataset loads local files (nothing is downloaded at run time) into train, validation
    and test arrays (images scaled to [0, 1], or sensor windows: ``Arrays.kind``), and
    says by which factor (``Arrays.raw_scale``) it scaled the sensor's raw values: the
    firmware's input contract; see `nas.data`.

    :returns: a list of `nas.data.BaseDataset` subclasses.
    """


@hookspec
def nas_register_compression_methods() -> list[type[BaseCompressionMethod]]:
    """Return compression-method classes selectable in ``compression=[a,b,...]``.

    Each method declares its ``stage`` (``structure``, ``training``, ``quantization`` or
    ``encoding``); the pipeline runs selected methods in that order, whatever the order on
    the command line. Exactly one ``quantization`` method must run for a trial to be scored.

    A method that changes the cost keeps the cost contract (`nas.compression`): ``predict``
    says, before any training, how it changes a candidate's flash, SRAM, MACs and latency
    (a `nas.compression.Plan`: structure, cost, how the weights are stored and decoded);
    the search decides feasibility on the composed prediction. ``measure`` gives the cost
    of what it produced, which replaces the prediction; a candidate over a limit once
    measured is recorded infeasible. The prediction must bound the measurement
    (`nas.testing.check_cost_contract`). ``check`` refuses, before anything runs, options
    the target, backend or other methods cannot work with. See ``docs/plugins.md``.

    :returns: a list of `nas.compression.BaseCompressionMethod` subclasses.
    """


@hookspec
def nas_register_backends() -> list[type[BaseBackend]]:
    """Return backend classes selectable with ``backend=<name>``.

    A backend scores a quantized candidate the way a chip runs it and returns a flat dict
    of metrics (``acc_int8`` at least); see `nas.backends`.

    :returns: a list of `nas.backends.BaseBackend` subclasses.
    """


@hookspec
def nas_register_commands() -> list[Command]:
    """Return subcommands of ``python -m nas``, such as ``c_sim``'s ``calibrate``.

    Each is a `nas.plugin_manager.Command` (also ``nas.Command``): a ``name`` (what users
    type after ``python -m nas``), a one-line ``usage`` and a short ``help`` (both shown by
    ``python -m nas --help``, under "plugin commands" with the plugin's name), and
    ``run(args) -> int``, called with the arguments after the name. ``run`` handles
    ``--help`` itself and raises `nas.errors.ConfigError` for a bad argument, which the
    user sees as one line with exit status 2. A command may not reuse a core command's name
    (``search``, ``list``, ``report``) or another plugin's. Import heavy modules inside
    ``run``, not at the top of the plugin: every command, ``--help`` included, loads every
    plugin.

    :returns: a list of `nas.plugin_manager.Command`.
    """


# --------------------------------------------------------------------------- observers


@hookspec
def nas_observe_trial(trial_number: int, record: dict[str, Any]) -> None:
    """Called after every trial with its flat record (the row that ``trials.csv`` gets).

    ``record`` holds ``state`` (Optuna's: ``COMPLETE``, ``PRUNED`` or ``FAIL``), ``feasible``
    (whether the static cost fits the chip; infeasible trials complete without training),
    ``reason``, the static cost, the metrics and the ``arch_`` choices. Use it to log or
    stream results; each implementation gets its own copy. Implementations run one at a
    time: an exception in one is logged as a warning naming its plugin, and the others
    still run; the trial is not affected.

    :param trial_number: the Optuna trial number.
    :param record: the trial's flat record.
    """


@hookspec
def nas_observe_study(run_dir: str, trials: Any) -> None:
    """Called once when a search ends, with its run directory and the trials DataFrame.

    As for `nas_observe_trial`, an exception is logged naming the plugin and the other
    observers still run; do not modify ``trials``.

    :param run_dir: the run directory (holds ``trials.csv``, ``report.md``, ``best/``).
    :param trials: a ``pandas.DataFrame`` with one row per trial.
    """
