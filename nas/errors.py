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
