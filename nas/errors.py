"""Errors that reach the user as one clear line (exit code 2, no traceback)."""

from __future__ import annotations


class NasError(Exception):
    """Base class for user-facing errors: the message says what was wrong and what is valid."""


class ConfigError(NasError):
    """A configuration value, name or file is not valid."""


class ProfileError(ConfigError):
    """A hardware profile file is malformed; the message names the file and the field."""


class GraphError(NasError):
    """A candidate network uses an operator or shape the graph description cannot express."""


class TrialError(NasError):
    """A trial failed for a reason worth recording (diverged training, missing quantization)."""


def check_option(option: str, value: object, ok: bool, valid: str) -> None:
    """A plugin option's range check (call it in the ``Config``'s ``__post_init__``, so a
    bad value stops the command before anything runs): one line naming the option."""
    if not ok:
        raise ConfigError(f"{option}={value} is not valid; it must be {valid}")
